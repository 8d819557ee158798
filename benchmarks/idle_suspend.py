"""(c) 200 labs going idle at the same moment. Goal: all suspended within 30 s of their timeout.

    .venv/bin/python benchmarks/idle_suspend.py [--labs 200] [--actions-per-minute 1200]

Launches ``--labs`` labs through the engine and waits until all are READY. Then one UPDATE
sets every lab's ``idle_at`` (last keepalive + suspend timeout) to the same moment T, a
random moment a little ahead, so T falls anywhere in the suspend-idle tick's period. The
suspend-idle tick marks them, the reconcile tick suspends them within the provider's rate
budget (``actions_per_minute``), and the next list shows them suspended. Times are the
engine's own (``suspended_at``, and the events' ``at``), relative to T.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import datetime, timedelta

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

GOAL_SECONDS = 30.0


def parse() -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--labs", type=int, default=200, help="labs going idle together")
    parser.add_argument("--suspend-delay", type=float, default=2.0, help="cloud suspend time, seconds")
    parser.add_argument("--timeout", type=float, default=180.0, help="stop watching after this")
    add_common_arguments(parser, reconcile=1, suspend_idle=15, apm=1200)
    return parser.parse_args()


def since(ids: list[int], t: datetime, **event: str) -> tuple[float, float]:
    """(first, last) seconds from ``t`` to the labs' events matching ``event``."""
    from django.db.models import Max, Min

    from labxblock.models import LabEvent

    agg = LabEvent.objects.filter(lab_id__in=ids, at__gte=t - timedelta(seconds=60), **event).aggregate(
        first=Min("at"), last=Max("at"))
    if agg["first"] is None:
        return float("nan"), float("nan")
    return (agg["first"] - t).total_seconds(), (agg["last"] - t).total_seconds()


def main() -> None:
    args = parse()
    settings = {"reconcile_interval_seconds": args.reconcile_interval,
                "suspend_idle_interval_seconds": args.suspend_idle_interval,
                "state_deadline_seconds": {"requested": 120, "creating": 300, "starting": 120,
                                           "suspending": 120}}
    with Rig(workers=args.workers, concurrency=args.concurrency, keep=args.keep, settings=settings,
             provider={"actions_per_minute": args.actions_per_minute},
             cloud={"delays": {"create": 0.5, "suspend": args.suspend_delay}}) as rig:
        from labxblock import labs
        from labxblock.models import Lab

        spec = rig.spec(suspend_timeout=3600)
        started = time.monotonic()
        ids = [labs.request_launch(u, spec, actor="learner").lab_id for u in rig.users(args.labs)]
        seen, _ = watch_states(ids, lambda s: s == "ready", args.timeout, interval=0.2,
                               stop_on=lambda s: s == "failed")
        if len(seen) != len(ids):
            raise RuntimeError(f"set-up: not all labs became ready: {state_counts(ids)}")
        setup = time.monotonic() - started
        before = rig.counters()

        t_idle = utc_now() + timedelta(seconds=2 + random.uniform(0, args.suspend_idle_interval))
        Lab.objects.filter(pk__in=ids).update(idle_at=t_idle)
        seen, _ = watch_states(ids, lambda s: s == "suspended", args.timeout, interval=0.2,
                               stop_on=lambda s: s == "failed")
        suspended_at = Lab.objects.filter(pk__in=seen).values_list("suspended_at", flat=True)
        delays = [(at - t_idle).total_seconds() for at in suspended_at]
        done = percentile(delays, 100) if len(seen) == len(ids) else float("inf")
        suspends = rig.counters().get("stack_suspend", 0) - before.get("stack_suspend", 0)
        marked = since(ids, t_idle, reason="idle")
        decided = since(ids, t_idle, to_state="suspending")

        rows = [
            *engine_rows(args),
            ("cloud suspend time", f"{args.suspend_delay:.1f} s"),
            ("labs", f"{len(ids)} (set-up: all ready in {setup:.1f} s)"),
            ("suspended", f"{len(seen)} of {len(ids)}; others: {state_counts(set(ids) - set(seen)) or '-'}"),
            ("stack suspends at the cloud", str(suspends)),
            ("marked idle (first / last) after T", f"{marked[0]:.2f} / {marked[1]:.2f} s"),
            ("suspend decided (first / last) after T", f"{decided[0]:.2f} / {decided[1]:.2f} s"),
            ("suspended after T p50 / p95 / max", f"{percentile(delays, 50):.2f} / "
             f"{percentile(delays, 95):.2f} / {percentile(delays, 100):.2f} s"),
        ]
        print_table(f"{len(ids)} labs idle at the same moment T", rows,
                    goal=f"all suspended <= {GOAL_SECONDS:.0f} s after T", met=done <= GOAL_SECONDS)


if __name__ == "__main__":
    run(main)
