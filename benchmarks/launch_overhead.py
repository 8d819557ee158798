"""(a) Launch overhead above the cloud's own create time, p50 and p95. Goal: p95 <= 2 s.

    .venv/bin/python benchmarks/launch_overhead.py [--launches 20] [--create-delay 5]

Launches labs one after another (a fresh learner each) with real Redis, Celery workers and
beat, MariaDB, and the HTTP cloud fake taking ``--create-delay`` seconds per create. For
each, overhead = (request -> READY, timed here) - create delay. Launches start at a random
moment within a reconcile interval of the previous one, as clicks do. The lab's events split it
into queue (request -> create decided), tick wait (create decided -> reconciler saw it done,
minus the delay: includes the create call) and probe (-> READY).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import timedelta

from common import (
    Rig,
    add_common_arguments,
    engine_rows,
    make_parser,
    percentile,
    print_table,
    run,
    watch_states,
)

GOAL_SECONDS = 2.0


def parse() -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--launches", type=int, default=20, help="measured launches, one at a time")
    parser.add_argument("--warmup", type=int, default=1, help="launches first, not measured")
    parser.add_argument("--create-delay", type=float, default=5.0, help="cloud create time, seconds")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on one launch after this")
    add_common_arguments(parser, reconcile=1, suspend_idle=15, apm=120)
    return parser.parse_args()


def phases(lab_id: int, delay: float) -> tuple[float, float, float]:
    """(queue, tick wait, probe) seconds of one launch, from its events."""
    from labxblock.models import Lab, LabEvent

    lab = Lab.objects.get(pk=lab_id)
    at = {e.to_state: e.at for e in LabEvent.objects.filter(lab_id=lab_id).order_by("at", "pk")}
    requested = lab.launched_at - timedelta(seconds=lab.launch_seconds or 0)
    creating, starting, ready = at["creating"], at["starting"], at["ready"]
    return ((creating - requested).total_seconds(),
            (starting - creating).total_seconds() - delay,
            (ready - starting).total_seconds())


def main() -> None:
    args = parse()
    settings = {"reconcile_interval_seconds": args.reconcile_interval,
                "suspend_idle_interval_seconds": args.suspend_idle_interval}
    with Rig(workers=args.workers, concurrency=args.concurrency, keep=args.keep, settings=settings,
             provider={"actions_per_minute": args.actions_per_minute},
             cloud={"delays": {"create": args.create_delay}}) as rig:
        from labxblock import labs

        spec = rig.spec()
        users = rig.users(args.warmup + args.launches)
        overheads, engine_overheads, splits = [], [], []
        for i, user in enumerate(users):
            # Learners click at random moments: do not phase-lock the launches to the beat's ticks.
            time.sleep(random.uniform(0, args.reconcile_interval))
            started = time.monotonic()
            lab_id = labs.request_launch(user, spec, actor="learner").lab_id
            seen, last = watch_states([lab_id], lambda s: s == "ready", args.timeout, interval=0.02,
                                      stop_on=lambda s: s == "failed")
            if lab_id not in seen:
                raise RuntimeError(f"launch {i} did not become ready: {last.get(lab_id)}")
            if i < args.warmup:
                continue
            overheads.append(seen[lab_id] - started - args.create_delay)
            from labxblock.models import Lab

            engine_overheads.append(Lab.objects.get(pk=lab_id).launch_seconds - args.create_delay)
            splits.append(phases(lab_id, args.create_delay))
            print(f"  launch {i - args.warmup + 1:>3}: overhead {overheads[-1]:.2f} s", flush=True)

        p50, p95 = percentile(overheads, 50), percentile(overheads, 95)
        queue, wait, probe = (statistics.median(s[k] for s in splits) for k in range(3))
        rows = [
            *engine_rows(args),
            ("cloud create time", f"{args.create_delay:.1f} s"),
            ("launches", f"{len(overheads)} sequential (+{args.warmup} warm-up)"),
            ("overhead p50", f"{p50:.2f} s"),
            ("overhead p95", f"{p95:.2f} s"),
            ("overhead max", f"{max(overheads):.2f} s"),
            ("engine's launch_seconds - delay p50/p95",
             f"{percentile(engine_overheads, 50):.2f} / {percentile(engine_overheads, 95):.2f} s"),
            ("median split: queue / tick wait / probe", f"{queue:.2f} / {wait:.2f} / {probe:.2f} s"),
        ]
        print_table("launch overhead above the cloud's create time", rows,
                    goal=f"p95 <= {GOAL_SECONDS:.0f} s", met=p95 <= GOAL_SECONDS)


if __name__ == "__main__":
    run(main)
