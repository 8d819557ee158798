"""(b) 100 concurrent launches, 2 calls-worker processes, a create request of 5 s, 30 s cloud create time.
Goals: every create reaches the cloud within 5 s of the first request; all ready within 45 s.

    .venv/bin/python benchmarks/concurrent_launches.py [--labs 100] [--create-latency 5] [--create-delay 30]

One warm-up launch first (the blueprint exists, the workers hold a token), as in a running
course. Then ``--clients`` threads make ``--labs`` launch requests at once, each for a fresh
learner, and the labs are watched until READY. The cloud fake holds each create request
``--create-latency`` seconds before the stack exists (Heat validates and stores the template
first: 2-16 s under load) and lists at ~25 ms a stack returned; the create then takes
``--create-delay`` seconds. A thread polls the fake's counters every 50 ms: when each create
request arrived. The fake's timeline says when each stack was done; the lab events when the
engine saw it (``starting``) and when the lab answered (``ready``). The lab events also show
when the last create was decided.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from common import (
    Rig,
    add_common_arguments,
    engine_rows,
    make_parser,
    max_db_connections,
    percentile,
    print_table,
    run,
    state_counts,
    utc_now,
    watch_states,
)

GOAL_SECONDS = 45.0
REACH_GOAL_SECONDS = 5.0  # every create at the cloud this soon after the first request


def parse() -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--labs", type=int, default=100, help="launches made at once")
    parser.add_argument("--clients", type=int, default=25, help="threads making the requests")
    parser.add_argument("--create-delay", type=float, default=30.0, help="cloud create time, seconds")
    parser.add_argument("--create-latency", type=float, default=5.0,
                        help="seconds a create request takes before the cloud answers it")
    parser.add_argument("--timeout", type=float, default=180.0, help="stop watching after this")
    add_common_arguments(parser, reconcile=1, suspend_idle=15, apm=120)
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


class Arrivals(threading.Thread):
    """Polls the fake's counters: when (monotonic) the count of create requests reached each value."""

    def __init__(self, control: Any, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.control, self.interval = control, interval
        self.base = control.counters().get("stack_create", 0)
        self.times: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            count = self.control.counters().get("stack_create", 0) - self.base
            now = time.monotonic()
            self.times.extend([now] * (count - len(self.times)))


def lateness(ids: list[int], timeline: list[dict[str, Any]], to_state: str) -> list[float]:
    """Seconds from each stack's create done at the cloud to its lab's move into ``to_state``."""
    from labxblock.models import Lab, LabEvent

    done = {s["name"]: s["done_at"] for s in timeline if s["action"] == "CREATE"}
    names = dict(Lab.objects.filter(pk__in=ids).values_list("pk", "stack_name"))
    events = LabEvent.objects.filter(lab_id__in=ids, to_state=to_state).values_list("lab_id", "at")
    return [at.timestamp() - done[names[pk]] for pk, at in events if names.get(pk) in done]


def expired_observations(workdir: Any) -> int:
    """Observation messages a worker dropped because they waited in the queue past their lease
    (Celery logs an expired message as revoked)."""
    line = "Discarding revoked task: labxblock.tasks.observe["
    return sum(log.read_text(errors="replace").count(line) for log in workdir.glob("*.log"))


def p_line(values: list[float]) -> str:
    return (f"{percentile(values, 50):.2f} / {percentile(values, 95):.2f} / {percentile(values, 100):.2f} s"
            if values else "-")


def main() -> None:
    args = parse()
    settings = {"reconcile_interval_seconds": args.reconcile_interval,
                "suspend_idle_interval_seconds": args.suspend_idle_interval,
                "state_deadline_seconds": {"requested": 120, "creating": 600, "starting": 120}}
    with Rig(workers=args.workers, concurrency=args.concurrency, keep=args.keep, settings=settings,
             provider={"actions_per_minute": args.actions_per_minute},
             cloud={"delays": {"create": 0.5}, "list_seconds_per_stack": 0.025}) as rig:
        from labxblock import labs

        spec = rig.spec()
        warm, *users = rig.users(args.labs + 1)
        warm_id = labs.request_launch(warm, spec, actor="learner").lab_id
        seen, last = watch_states([warm_id], lambda s: s == "ready", 60)
        if warm_id not in seen:
            raise RuntimeError(f"warm-up launch did not become ready: {last}")
        control = rig.cloud.control
        control.configure(delays={"create": args.create_delay}, create_latency_seconds=args.create_latency)
        before = rig.counters()
        arrivals = Arrivals(control)
        arrivals.start()

        burst_wall, burst = utc_now(), time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            launched = list(pool.map(lambda u: launch(u, spec), users))
        requested_in = time.monotonic() - burst
        ids = [lab_id for lab_id, _ in launched]
        seen, last = watch_states(ids, lambda s: s == "ready", args.timeout, interval=0.1,
                                  stop_on=lambda s: s == "failed")
        arrivals.done.set()
        latencies = [seen[lab_id] - started for lab_id, started in launched if lab_id in seen]
        all_ready = max(seen.values()) - burst if len(seen) == len(ids) else float("inf")
        counters = rig.counters()
        creates = counters.get("stack_create", 0) - before.get("stack_create", 0)
        first_request = min(started for _, started in launched)
        reached = math.inf
        if len(arrivals.times) >= len(ids):
            reached = arrivals.times[len(ids) - 1] - first_request
        timeline = control.timeline()
        seen_late, ready_late = lateness(ids, timeline, "starting"), lateness(ids, timeline, "ready")
        busy_lists = counters.get("stack_list_busy", 0) - before.get("stack_list_busy", 0)
        reads = counters.get("stack_get", 0) - before.get("stack_get", 0)

        rows = [
            *engine_rows(args),
            ("cloud create request / create time",
             f"{args.create_latency:.1f} s / {args.create_delay:.1f} s"),
            ("launches", f"{len(ids)} from {args.clients} threads, requested in {requested_in:.2f} s"),
            ("ready", f"{len(seen)} of {len(ids)}; others: {state_counts(set(ids) - set(seen)) or '-'}"),
            ("stack creates at the cloud", str(creates)),
            ("creates at the cloud after first request", f"all {len(ids)} within {reached:.2f} s "
             f"(half by {arrivals.times[len(ids) // 2] - first_request:.2f} s)" if reached < math.inf else
             f"{len(arrivals.times)} of {len(ids)}"),
            ("stack done -> seen (starting) p50/p95/max", p_line(seen_late)),
            ("stack done -> ready p50/p95/max", p_line(ready_late)),
            ("busy lists / stack reads during the run", f"{busy_lists} / {reads}"),
            ("observations expired in the queue", str(expired_observations(rig.workdir))),
            ("database connections at most", str(max_db_connections())),
            ("last create decided at", f"{last_event(ids, 'creating', burst_wall):.2f} s"),
            ("last stack seen done at", f"{last_event(ids, 'starting', burst_wall):.2f} s"),
            ("request -> ready p50 / p95 / max", f"{percentile(latencies, 50):.2f} / "
             f"{percentile(latencies, 95):.2f} / {percentile(latencies, 100):.2f} s"),
            ("all ready after first request", f"{all_ready:.2f} s"),
        ]
        print_table(f"{len(ids)} concurrent launches", rows, goal=f"all ready <= {GOAL_SECONDS:.0f} s",
                    met=all_ready <= GOAL_SECONDS)
        print_table("creates reaching the cloud", [("last create at the cloud", f"{reached:.2f} s")],
                    goal=f"all within {REACH_GOAL_SECONDS:.0f} s of the first request",
                    met=reached <= REACH_GOAL_SECONDS)


if __name__ == "__main__":
    run(main)
