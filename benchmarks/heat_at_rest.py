"""(g) 200 stacks at rest on real Heat: the CPU Heat spends because of labxblock.
Goal: <= 0.05 of a core above Heat's own baseline (labxblock's beat stopped).

    .venv/bin/python benchmarks/heat_at_rest.py [--labs 200] [--window 300]

Runs the tests' rig (Keystone 30 + Heat 27 from PyPI on loopback) with labxblock's workers
and beat, launches ``--labs`` labs through the engine, ``--batch`` at a time, each batch
READY before the next. Learners keep their labs open (a day's suspend timeout), so the site
is at rest. Then two windows of ``--window`` seconds each (by default the audit's
period, so each holds one audit):

1. labxblock running as on any site: every tick, the observer (idle: nothing in flight)
   and the audit (the full list of the 200 stacks, in pages of 100);
2. the baseline: labxblock's beat stopped (no tick, no observation, no audit), Heat alone
   with its 200 stacks.

Heat's CPU time (user + system of its one process, API and engine) in each window, from
/proc, and the requests Heat served (its access log). The figure is window 1 minus window 2.
"""

from __future__ import annotations

import argparse
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import (
    CpuMeter,
    Rig,
    add_common_arguments,
    engine_rows,
    make_parser,
    print_table,
    run,
    state_counts,
    watch_states,
)
from heatrig import heat_requests, lab_spec

GOAL_CORES = 0.05


def parse() -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--labs", type=int, default=200, help="stacks at rest")
    parser.add_argument("--window", type=float, default=300.0, help="seconds of each measured window")
    parser.add_argument("--audit-interval", type=int, default=300, help="reap_interval_seconds")
    parser.add_argument("--batch", type=int, default=20, help="launches at a time (each batch ready first)")
    parser.add_argument("--create-secs", type=float, default=1.0, help="seconds the lab's server takes")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds the labs may take to be ready")
    add_common_arguments(parser, reconcile=1, suspend_idle=15, apm=120)
    return parser.parse_args()


def launch_all(rig: Rig, args: argparse.Namespace) -> list[int]:
    """The labs, ``--batch`` at a time, each batch ready before the next (the rig's one Heat process
    makes about 20 stacks at once in good time)."""
    from django.db import connection

    from labxblock import labs

    spec = lab_spec(rig.lab_port.port, args.create_secs)

    def one(user: Any) -> int:
        try:
            return labs.request_launch(user, spec, actor="learner").lab_id
        finally:
            connection.close()

    users, ids = rig.users(args.labs, prefix=f"rest{uuid.uuid4().hex[:4]}"), []
    for start in range(0, len(users), args.batch):
        with ThreadPoolExecutor(args.batch) as pool:
            batch = list(pool.map(one, users[start:start + args.batch]))
        seen, _ = watch_states(batch, lambda s: s == "ready", args.timeout, interval=1.0,
                               stop_on=lambda s: s == "failed")
        if len(seen) < len(batch):
            raise RuntimeError(f"not every lab became ready: {state_counts(batch)}")
        ids += batch
        print(f"  {len(ids)} labs ready", flush=True)
    return ids


def window(rig: Rig, seconds: float) -> tuple[float, dict[str, int], float]:
    """(Heat's cores used on average, the requests it served, the window's length)."""
    meter = CpuMeter({"heat": rig.heat.heat_pid}).start()
    since = time.time()
    time.sleep(seconds)
    meter.stop()
    return meter.share("heat"), heat_requests(rig, since, time.time()), meter.seconds


def listing(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"


def main() -> None:
    args = parse()
    settings = {"reconcile_interval_seconds": args.reconcile_interval,
                "suspend_idle_interval_seconds": args.suspend_idle_interval,
                "reap_interval_seconds": args.audit_interval, "suspend_timeout": 86400,
                "state_deadline_seconds": {"requested": 1800, "creating": 1800, "starting": 600}}
    with Rig(heat=True, workers=args.workers, concurrency=args.concurrency, keep=args.keep, settings=settings,
             provider={"actions_per_minute": args.actions_per_minute}) as rig:
        started = time.monotonic()
        ids = launch_all(rig, args)
        print(f"{len(ids)} labs ready on Heat in {time.monotonic() - started:.0f} s", flush=True)
        time.sleep(10)  # the last probes and observations finish

        busy, served, length = window(rig, args.window)
        rig.procs.beat.stop()  # the baseline: nothing of labxblock's reaches Heat any more
        time.sleep(5)  # a tick or audit already sent finishes
        idle, served_idle, _ = window(rig, args.window)
        figure = busy - idle
        rows = [
            *engine_rows(args),
            ("Heat", f"Keystone 30 + Heat 27 (the tests' rig), {len(ids)} stacks, all ready"),
            ("audit interval", f"{args.audit_interval} s"),
            ("window", f"{length:.0f} s each"),
            ("Heat's CPU, labxblock running", f"{busy:.4f} core; requests: {listing(served)}"),
            ("Heat's CPU, beat stopped", f"{idle:.4f} core; requests: {listing(served_idle)}"),
            ("labxblock's share of Heat's CPU", f"{figure:.4f} core"),
        ]
        print_table(f"{len(ids)} stacks at rest on real Heat", rows,
                    goal=f"<= {GOAL_CORES} core above the baseline", met=figure <= GOAL_CORES)


if __name__ == "__main__":
    run(main)
