"""(e) A site at rest: 2,000 ready labs, nothing changing. What the cloud and the workers see.
Goals: at most 1 cloud request a minute on average outside the audit; workers busy <= 5 %.

    .venv/bin/python benchmarks/steady_state.py [--labs 2000] [--window 600]

Launches ``--labs`` labs through the engine (the cloud fake answering at once while they are
made), waits until every one is READY, then gives the fake the costs measured on Heat: a
list takes ~25 ms a stack it returns, a create request 5 s. Learners keep their labs open
(their suspend timeout is a day), so nothing is to be done. Over ``--window`` seconds the
beat's ticks run as on any site (reconcile every second, suspend-idle every 15 s, reap and
the audit every ``--audit-interval`` seconds, 300 by default) and the script counts:

- the cloud's requests by kind (the fake's counters), and those outside the audit (every
  request but the audit's full-list pages and the reads it makes of labs its list
  contradicts: none at rest);
- the CPU time (user + system, from /proc) of each Celery process and its children over
  the window: the calls worker(s), the observe worker, the ticks worker and beat, as a
  share of one core;
- the sum of the tasks' own run times by task (the workers' "succeeded in" lines).
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
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
    utc_now,
    watch_states,
)

REQUESTS_GOAL = 1.0  # cloud requests a minute outside the audit
BUSY_GOAL = 0.05  # share of one core
AUDIT_KINDS = ("stack_list",)  # the audit's paginated full list (the busy list is stack_list_busy)
_DONE = re.compile(r"^\[(?P<at>[\d-]+ [\d:]+),(?P<ms>\d+): INFO/[\w-]+\] Task (?P<task>[\w.]+)\[[^]]+\] "
                   r"succeeded in (?P<seconds>[\d.e-]+)s")


def parse() -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--labs", type=int, default=2000, help="ready labs at rest")
    parser.add_argument("--window", type=float, default=600.0, help="seconds measured at rest")
    parser.add_argument("--audit-interval", type=int, default=300,
                        help="reap_interval_seconds: the reaper's and the audit's period")
    parser.add_argument("--clients", type=int, default=25, help="threads making the launch requests")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds the labs may take to be ready")
    add_common_arguments(parser, reconcile=1, suspend_idle=15, apm=120)
    return parser.parse_args()


def launch_all(users: list[Any], spec: Any, clients: int) -> list[int]:
    from django.db import connection

    from labxblock import labs

    def one(user: Any) -> int:
        try:
            return labs.request_launch(user, spec, actor="learner").lab_id
        finally:
            connection.close()

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, users))


def task_seconds(logs: list[Path], since: datetime, until: datetime) -> dict[str, tuple[int, float]]:
    """(count, summed run time) of each task the workers finished between ``since`` and ``until``."""
    found: dict[str, tuple[int, float]] = {}
    start, end = since.strftime("%Y-%m-%d %H:%M:%S"), until.strftime("%Y-%m-%d %H:%M:%S")
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            match = _DONE.match(line)
            if match and start <= match["at"] <= end:
                count, seconds = found.get(match["task"], (0, 0.0))
                found[match["task"]] = (count + 1, seconds + float(match["seconds"]))
    return found


def main() -> None:
    args = parse()
    settings = {"reconcile_interval_seconds": args.reconcile_interval,
                "suspend_idle_interval_seconds": args.suspend_idle_interval,
                "reap_interval_seconds": args.audit_interval,
                "suspend_timeout": 86400,  # learners keep their labs open: nothing to suspend
                "state_deadline_seconds": {"requested": 600, "creating": 1200, "starting": 600}}
    fast = {"delays": {"create": 0.3}, "list_seconds_per_stack": 0.0, "create_latency_seconds": 0.0}
    with Rig(workers=args.workers, concurrency=args.concurrency, keep=args.keep, settings=settings,
             provider={"actions_per_minute": args.actions_per_minute}, cloud=fast) as rig:
        from labxblock.models import Lab

        started = time.monotonic()
        ids = launch_all(rig.users(args.labs), rig.spec(), args.clients)
        seen, _ = watch_states(ids, lambda s: s == "ready", args.timeout, interval=1.0,
                               stop_on=lambda s: s == "failed")
        if len(seen) < len(ids):
            raise RuntimeError(f"not every lab became ready: {state_counts(ids)}")
        print(f"{len(ids)} labs ready in {time.monotonic() - started:.0f} s", flush=True)
        rig.cloud.control.configure(list_seconds_per_stack=0.025, create_latency_seconds=5.0)
        time.sleep(5)  # the last observation and probes finish

        control = rig.cloud.control
        before, since = control.counters(), utc_now()
        meter = CpuMeter(rig.worker_pids()).start()
        time.sleep(args.window)
        used = meter.stop()
        until, after = utc_now(), control.counters()
        counts = Counter({k: after.get(k, 0) - before.get(k, 0) for k in after})
        requests = {k: n for k, n in counts.items()
                    if n and not k.startswith(("status_", "stacks_listed", "injected_"))}
        audit = sum(requests.get(k, 0) for k in AUDIT_KINDS)
        outside = sum(requests.values()) - audit
        per_minute = outside / (meter.seconds / 60)
        busy = meter.share()
        tasks = task_seconds(sorted(rig.workdir.glob("*.log")), since, until)
        still = Lab.objects.filter(pk__in=ids, state="ready").count()

        rows = [
            *engine_rows(args),
            ("audit interval", f"{args.audit_interval} s"),
            ("labs at rest", f"{still} of {len(ids)} ready at the end; {state_counts(ids)}"),
            ("window", f"{meter.seconds:.0f} s"),
            ("cloud requests by kind", ", ".join(f"{k} {n}" for k, n in sorted(requests.items())) or "none"),
            ("stacks listed (the audit's pages)", f"{counts.get('stacks_listed', 0)} in {audit} request(s)"),
            ("requests outside the audit", f"{outside} ({per_minute:.2f} a minute)"),
            *[(f"CPU {name}", f"{seconds:.1f} s ({seconds / meter.seconds:.2%} of a core)")
              for name, seconds in sorted(used.items())],
            ("CPU of all workers and beat", f"{sum(used.values()):.1f} s ({busy:.2%} of a core)"),
            *[(f"task {name.rsplit('.', 1)[-1]}", f"{n} runs, {seconds:.1f} s in all")
              for name, (n, seconds) in sorted(tasks.items())],
        ]
        print_table(f"{len(ids)} ready labs at rest", rows,
                    goal=f"<= {REQUESTS_GOAL:.0f} request a minute outside the audit",
                    met=per_minute <= REQUESTS_GOAL)
        print_table("workers at rest", [("busy", f"{busy:.2%} of a core")],
                    goal=f"workers busy <= {BUSY_GOAL:.0%}", met=busy <= BUSY_GOAL)


if __name__ == "__main__":
    run(main)
