"""(f) A learner's first launch with a warm pool: request → READY. Goal: p95 ≤ cloud's resume time + 2 s.

    .venv/bin/python benchmarks/pool_claim.py [--launches 20] [--resume 5] [--create 30]
    .venv/bin/python benchmarks/pool_claim.py --heat [--launches 6]    # the real Keystone + Heat rig

A pool of ``--launches`` stacks (kept suspended, or ``--keep-running``) is filled through the
engine (its template learned from a staff member's launch); then fresh learners launch one
after another, each at a random moment within a reconcile interval, and each claims a pool
stack, which is resumed. Real Redis, Celery workers and beat, MariaDB; the cloud is the HTTP
cloud fake (create ``--create`` s, resume ``--resume`` s) or, with ``--heat``, the project's
Keystone + Heat rig (``tests/services/openstack_rig.py``), whose ``LabXBlock::Test::Server``
takes ``--resume`` seconds to resume (Heat itself polls about every 1.4 s). The cloud's own
resume time is measured apart, on a stack of the same template resumed through the provider
directly (no engine), and the goal is taken from it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

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

SLACK_SECONDS = 2.0


def parse() -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--launches", type=int, default=None, help="pool size and claims (20; 6 with --heat)")
    parser.add_argument("--resume", type=float, default=5.0, help="the cloud's resume time, seconds")
    parser.add_argument("--create", type=float, default=30.0, help="the cloud's create time, seconds")
    parser.add_argument("--keep-running", action="store_true", help="a pool kept running, not suspended")
    parser.add_argument("--heat", action="store_true", help="the real Keystone + Heat rig, not the fake")
    parser.add_argument("--fill-timeout", type=float, default=600.0, help="seconds to wait for a full pool")
    add_common_arguments(parser, workers=2, concurrency=2, reconcile=1, suspend_idle=15, apm=120)
    args = parser.parse_args()
    args.launches = args.launches or (6 if args.heat else 20)
    return args


def fill(rig: Rig, spec, args: argparse.Namespace) -> float:
    """Configure the pool, teach it the template, wait until it is full; return the seconds it took."""
    from labxblock import labs
    from labxblock.labs import pools
    from labxblock.models import Lab
    from tests.engine_harness import wait_for

    keep = "running" if args.keep_running else "suspended"
    pools.configure(course_run=spec.course_run, lab_key=spec.lab_key, size=args.launches, keep=keep)
    started = time.monotonic()
    labs.request_launch(rig.users(1, "staff")[0], spec, actor="staff")
    resting = "ready" if args.keep_running else "suspended"
    wait_for(f"{args.launches} pool stacks {resting}", lambda: Lab.objects.filter(
        learner__isnull=True, state=resting).exclude(desired="deleted").count() == args.launches,
        args.fill_timeout, interval=0.5)
    return time.monotonic() - started


def cloud_resume_seconds(spec, samples: int) -> list[float]:
    """The cloud's own resume time, without the engine: a stack of the same template made, suspended and
    resumed through the provider directly, read every 50 ms until it is up again (then deleted)."""
    from labxblock import clouds
    from labxblock.labs.jobs import install_tag
    from labxblock.lifecycle import State
    from labxblock.providers.base import StackSpec
    from tests.engine_harness import wait_for_stack

    provider = clouds.provider("default")
    template = spec.providers[0].template
    ref = provider.create(StackSpec(name=f"lab-bench-resume-{random.randrange(16**8):08x}", template=template,
                                    environment=None, parameters={"run": spec.course_run},
                                    tags=(install_tag(),)))
    try:
        wait_for_stack(provider, ref, State.READY, timeout=600)
        seconds = []
        for _ in range(samples):
            provider.suspend(ref)
            wait_for_stack(provider, ref, State.SUSPENDED, timeout=120)
            started = time.monotonic()
            provider.resume(ref)
            wait_for_stack(provider, ref, State.READY, timeout=120)
            seconds.append(time.monotonic() - started)
        return seconds
    finally:
        provider.delete(ref)


def main() -> None:
    args = parse()
    settings = {"reconcile_interval_seconds": args.reconcile_interval,
                "suspend_idle_interval_seconds": args.suspend_idle_interval}
    cloud = {"delays": {"create": args.create, "resume": args.resume, "suspend": 1.0, "delete": 1.0}}
    with Rig(workers=args.workers, concurrency=args.concurrency, keep=args.keep, settings=settings,
             heat=args.heat, provider={"actions_per_minute": args.actions_per_minute}, cloud=cloud) as rig:
        from labxblock import labs
        from labxblock.labs import ProviderChoice, pools
        from labxblock.models import Lab
        from tests.engine_harness import rig_lab_template

        spec = rig.spec()
        if args.heat:
            template = rig_lab_template(rig.lab_port.port, args.create, args.resume)
            spec = type(spec)(**{**spec.__dict__, "providers": (ProviderChoice("default", None, template),)})
        filled = fill(rig, spec, args)
        learners = rig.users(args.launches)
        waits = []
        for user in learners:
            time.sleep(random.uniform(0, args.reconcile_interval))  # clicks are not phase-locked to ticks
            started = time.monotonic()
            lab_id = labs.request_launch(user, spec, actor="learner").lab_id
            seen, last = watch_states([lab_id], lambda s: s == "ready", 120, interval=0.02,
                                      stop_on=lambda s: s == "failed")
            if lab_id not in seen:
                raise RuntimeError(f"claimed lab {lab_id} did not become ready: {last.get(lab_id)}")
            waits.append(seen[lab_id] - started)
        claimed = Lab.objects.filter(learner__in=learners, events__reason=pools.CLAIMED).count()
        resume = cloud_resume_seconds(spec, samples=3)
        report(args, filled, waits, claimed, statistics.median(resume))


def report(args: argparse.Namespace, filled: float, waits: list[float], claimed: int, resume: float) -> None:
    goal = (0.0 if args.keep_running else resume) + SLACK_SECONDS
    p95 = percentile(waits, 95)
    print_table("warm pool: a learner's first launch", [
        ("cloud", "Keystone + Heat rig" if args.heat else "HTTP cloud fake"),
        *engine_rows(args),
        ("pool", f"{args.launches} stacks kept {'running' if args.keep_running else 'suspended'}; "
                 f"full after {filled:.1f} s (create {args.create:g} s)"),
        ("claims", f"{claimed} of {len(waits)} launches got a pool stack"),
        ("request → ready", f"p50 {statistics.median(waits):.2f} s, p95 {p95:.2f} s, max {max(waits):.2f} s"),
        ("cloud's resume time", f"{resume:.2f} s (median of 3, read every 50 ms; the template asks "
                                f"{args.resume:g} s)"),
    ], goal=f"p95 ≤ {goal:g} s", met=p95 <= goal)


if __name__ == "__main__":
    run(main)
