"""(f) 20 launches at once against real Keystone + Heat, beside Heat alone doing the same 20 creates.
Goals: all ready <= Heat alone's time + 5 s; each lab ready <= 2 s after Heat completed its stack (p95).

    .venv/bin/python benchmarks/heat_launches.py [--labs 20] [--create-secs 20]

Runs the tests' rig (Keystone 30 + Heat 27 from PyPI on loopback, Heat with its API and
engine in one process) with labxblock's workers (MariaDB, Redis, the README's workers and
beat). The lab's server (``LabXBlock::Test::Server``) takes ``--create-secs`` to create.

``--warmup`` labs are launched first and left ready, as in a running course: every worker
then holds a token Heat has already validated.

1. Heat alone: ``--labs`` threads send the same creates at once (the provider's own create,
   a tag labxblock does not follow); the time from the first request until Heat's last
   CREATE COMPLETE event. The stacks are then deleted and the rig left to settle.
2. labxblock: ``--labs`` learners launch at once (a thread each); the time from the first
   request until the last lab is READY, and for each lab the time from Heat's CREATE
   COMPLETE event of its stack to its READY event ("lateness").

Heat's completion times come from its stack events (read from its database, to the
microsecond). ``--order labxblock-first`` swaps the two rounds.
"""

from __future__ import annotations

import argparse
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import (
    Rig,
    add_common_arguments,
    engine_rows,
    make_parser,
    percentile,
    print_table,
    run,
    state_counts,
    watch_states,
)
from heatrig import completed_at, heat_requests, lab_spec, lab_template

MARGIN_SECONDS = 5.0
LATE_GOAL_SECONDS = 2.0


def parse() -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--labs", type=int, default=20, help="launches at once (and creates, Heat alone)")
    parser.add_argument("--create-secs", type=float, default=20.0, help="seconds the lab's server takes")
    parser.add_argument("--order", choices=("heat-first", "labxblock-first"), default="heat-first")
    parser.add_argument("--warmup", type=int, default=4,
                        help="labs launched (and left ready) first, so every worker holds a token Heat knows")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up on a round after this")
    add_common_arguments(parser, reconcile=1, suspend_idle=15, apm=120)
    return parser.parse_args()


def heat_alone(rig: Rig, provider: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The same creates straight to Heat: seconds from the first request to the last completion."""
    from labxblock.lifecycle import State
    from labxblock.providers.base import StackSpec, TemporaryError

    tag = f"bench-alone-{uuid.uuid4().hex[:8]}"
    template = lab_template(rig.lab_port.port, args.create_secs)
    specs = [StackSpec(f"bench-alone-{i:03d}-{uuid.uuid4().hex[:6]}", template, parameters={"run": "x"},
                       tags=(tag,)) for i in range(args.labs)]
    def create(spec: StackSpec) -> Any:
        # Under load Heat can take longer than the 30 s read timeout to answer a create: try again,
        # as labxblock's worker does (the retry gets 409 and adopts the stack the first one made).
        for _ in range(5):
            try:
                return provider.create(spec)
            except TemporaryError:
                time.sleep(1)
        return provider.create(spec)

    first = time.time()
    with ThreadPoolExecutor(args.labs) as pool:
        refs = list(pool.map(create, specs))
    deadline = time.monotonic() + args.timeout
    while provider.list_busy(tag) and time.monotonic() < deadline:  # Heat's own list: what is at work
        time.sleep(1)
    states = {info.ref.name: info.state for info in provider.list(tag)}
    done = completed_at(rig, provider, refs)
    for ref in refs:
        provider.delete(ref)
    while any(info.state is not State.DELETED for info in provider.list(tag)) and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(10)  # let Heat settle before the next round
    failed = [name for name, state in states.items() if state is not State.READY]
    return {"seconds": max(done.values()) - first if len(done) == len(refs) else float("inf"),
            "completed": len(done), "failed": failed}


def launch_at_once(rig: Rig, count: int, create_secs: float) -> list[tuple[int, float]]:
    """``count`` learners launch at once (a thread each): (lab id, epoch time of the request)."""
    from django.db import connection

    from labxblock import labs

    spec = lab_spec(rig.lab_port.port, create_secs)

    def launch(user: Any) -> tuple[int, float]:
        try:
            started = time.time()
            return labs.request_launch(user, spec, actor="learner").lab_id, started
        finally:
            connection.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(launch, rig.users(count, prefix=f"heat{uuid.uuid4().hex[:4]}")))


def warm_up(rig: Rig, args: argparse.Namespace) -> None:
    """A running site's workers hold tokens Heat has validated and cached; fresh ones have not (Heat's
    keystonemiddleware validates a new token with Keystone on each request until it is cached, and
    20 requests at once with new tokens kept Heat from serving anything else for ~25 s)."""
    ids = [lab_id for lab_id, _ in launch_at_once(rig, args.warmup, 0)]
    seen, last = watch_states(ids, lambda s: s == "ready", args.timeout, interval=0.5)
    if len(seen) < len(ids):
        raise RuntimeError(f"warm-up labs not ready: {last}")


def with_labxblock(rig: Rig, provider: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The launches through labxblock: seconds from the first request to the last READY, and lateness."""
    from labxblock.models import Lab, LabEvent

    launched = launch_at_once(rig, args.labs, args.create_secs)
    ids = [lab_id for lab_id, _ in launched]
    first = min(started for _, started in launched)
    seen, _ = watch_states(ids, lambda s: s == "ready", args.timeout, interval=0.1,
                           stop_on=lambda s: s == "failed")
    ready = dict(LabEvent.objects.filter(lab_id__in=ids, to_state="ready").values_list("lab_id", "at"))
    rows = Lab.objects.filter(pk__in=ids).values_list("pk", "stack_name", "provider_state")
    refs = {pk: provider.load_state(name, state) for pk, name, state in rows}
    done = completed_at(rig, provider, refs.values())
    late = [ready[pk].timestamp() - done[ref.name] for pk, ref in refs.items()
            if pk in ready and ref.name in done]
    all_ready = float("inf")
    if len(ready) == len(ids):
        all_ready = max(at.timestamp() for at in ready.values()) - first
    heat_last = max(done.values()) - first if done else float("nan")
    return {"seconds": all_ready, "late": late, "ready": len(seen), "heat_last": heat_last,
            "others": state_counts(set(ids) - set(seen))}


def main() -> None:
    args = parse()
    settings = {"reconcile_interval_seconds": args.reconcile_interval,
                "suspend_idle_interval_seconds": args.suspend_idle_interval,
                "suspend_timeout": 86400}
    with Rig(heat=True, workers=args.workers, concurrency=args.concurrency, keep=args.keep, settings=settings,
             provider={"actions_per_minute": args.actions_per_minute}) as rig:
        from labxblock import clouds

        provider = clouds.provider("default")
        provider.list("warm-up")  # the benchmark's own token, before anything is timed
        warm_up(rig, args)
        started = time.time()
        rounds = {}
        for name in (("heat", "labxblock") if args.order == "heat-first" else ("labxblock", "heat")):
            rounds[name] = (heat_alone if name == "heat" else with_labxblock)(rig, provider, args)
        alone, ours = rounds["heat"], rounds["labxblock"]
        late = ours["late"]
        requests = heat_requests(rig, started, time.time())
        rows = [
            *engine_rows(args),
            ("Heat", f"Keystone 30 + Heat 27 (the tests' rig); server create {args.create_secs:.0f} s"),
            ("order", args.order),
            ("Heat alone: last CREATE COMPLETE",
             f"{alone['seconds']:.2f} s after the first request "
             f"({alone['completed']} completed, failed: {alone['failed'] or '-'})"),
            ("labxblock: ready", f"{ours['ready']} of {args.labs}; others: {ours['others'] or '-'}"),
            ("labxblock: Heat's last CREATE COMPLETE", f"{ours['heat_last']:.2f} s after the first request"),
            ("labxblock: last READY", f"{ours['seconds']:.2f} s after the first request"),
            ("Heat complete -> READY p50 / p95 / max",
             f"{percentile(late, 50):.2f} / {percentile(late, 95):.2f} / {percentile(late, 100):.2f} s"),
            ("requests Heat served (whole run)", ", ".join(f"{k} {n}" for k, n in sorted(requests.items()))),
        ]
        print_table(f"{args.labs} launches at once on real Heat", rows,
                    goal=f"all ready <= Heat alone + {MARGIN_SECONDS:.0f} s",
                    met=ours["seconds"] <= alone["seconds"] + MARGIN_SECONDS)
        p95 = percentile(late, 95)
        print_table("each lab after Heat completed its stack", [("p95", f"{p95:.2f} s")],
                    goal=f"p95 <= {LATE_GOAL_SECONDS:.0f} s", met=p95 <= LATE_GOAL_SECONDS)


if __name__ == "__main__":
    run(main)
