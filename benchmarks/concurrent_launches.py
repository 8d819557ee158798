"""(b) 100 concurrent launches, 2 worker processes, 30 s cloud create time.
Goal: all ready within 45 s of the first request.

    .venv/bin/python benchmarks/concurrent_launches.py [--labs 100] [--create-delay 30]

One warm-up launch first (the blueprint exists, the workers hold a token), as in a running
course. Then ``--clients`` threads make ``--labs`` launch requests at once, each for a fresh
learner, and the labs are watched until READY. The lab events show when the last create
was decided, when the reconciler saw the last stack done, and when the last lab answered.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
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
    utc_now,
    watch_states,
)

GOAL_SECONDS = 45.0


def parse() -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--labs", type=int, default=100, help="launches made at once")
    parser.add_argument("--clients", type=int, default=25, help="threads making the requests")
    parser.add_argument("--create-delay", type=float, default=30.0, help="cloud create time, seconds")
    parser.add_argument("--timeout", type=float, default=180.0, help="stop watching after this")
    add_common_arguments(parser, workers=2, concurrency=1, reconcile=1, suspend_idle=15, apm=120)
    return parser.parse_args()


def launch(user: Any, spec: Any) -> tuple[int, float]:
    """One learner's click: (lab id, monotonic time of the request)."""
    from django.db import connection

    from labxblock import labs

    started = time.monotonic()
    try:
        return labs.request_launch(user, spec, actor="learner").lab_id, started
    finally:
        connection.close()  # this thread's own connection


def last_event(ids: list[int], to_state: str, since: datetime) -> float:
    """Seconds from ``since`` to the last of the labs' moves into ``to_state``."""
    from django.db.models import Max

    from labxblock.models import LabEvent

    at = LabEvent.objects.filter(lab_id__in=ids, to_state=to_state).aggregate(m=Max("at"))["m"]
    return (at - since).total_seconds() if at else float("nan")


def main() -> None:
    args = parse()
    settings = {"reconcile_interval_seconds": args.reconcile_interval,
                "suspend_idle_interval_seconds": args.suspend_idle_interval,
                "state_deadline_seconds": {"requested": 120, "creating": 600, "starting": 120}}
    with Rig(workers=args.workers, concurrency=args.concurrency, keep=args.keep, settings=settings,
             provider={"actions_per_minute": args.actions_per_minute},
             cloud={"delays": {"create": 0.5}}) as rig:
        from labxblock import labs

        spec = rig.spec()
        warm, *users = rig.users(args.labs + 1)
        warm_id = labs.request_launch(warm, spec, actor="learner").lab_id
        seen, last = watch_states([warm_id], lambda s: s == "ready", 60)
        if warm_id not in seen:
            raise RuntimeError(f"warm-up launch did not become ready: {last}")
        rig.cloud.control.configure(delays={"create": args.create_delay})
        before = rig.counters()

        burst_wall, burst = utc_now(), time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            launched = list(pool.map(lambda u: launch(u, spec), users))
        requested_in = time.monotonic() - burst
        ids = [lab_id for lab_id, _ in launched]
        seen, last = watch_states(ids, lambda s: s == "ready", args.timeout, interval=0.1,
                                  stop_on=lambda s: s == "failed")
        latencies = [seen[lab_id] - started for lab_id, started in launched if lab_id in seen]
        all_ready = max(seen.values()) - burst if len(seen) == len(ids) else float("inf")
        creates = rig.counters().get("stack_create", 0) - before.get("stack_create", 0)

        rows = [
            *engine_rows(args),
            ("cloud create time", f"{args.create_delay:.1f} s"),
            ("launches", f"{len(ids)} from {args.clients} threads, requested in {requested_in:.2f} s"),
            ("ready", f"{len(seen)} of {len(ids)}; others: {state_counts(set(ids) - set(seen)) or '-'}"),
            ("stack creates at the cloud", str(creates)),
            ("last create decided at", f"{last_event(ids, 'creating', burst_wall):.2f} s"),
            ("last stack seen done at", f"{last_event(ids, 'starting', burst_wall):.2f} s"),
            ("request -> ready p50 / p95 / max", f"{percentile(latencies, 50):.2f} / "
             f"{percentile(latencies, 95):.2f} / {percentile(latencies, 100):.2f} s"),
            ("all ready after first request", f"{all_ready:.2f} s"),
        ]
        print_table(f"{len(ids)} concurrent launches", rows, goal=f"all ready <= {GOAL_SECONDS:.0f} s",
                    met=all_ready <= GOAL_SECONDS)


if __name__ == "__main__":
    run(main)
