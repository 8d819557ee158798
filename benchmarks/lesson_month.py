"""(e) What labs cost: billed stack time ÷ learner-active time over a month of lessons.

    .venv/bin/python benchmarks/lesson_month.py [--days 30] [--class-size 200] [--self-paced 10]

Replays a month against the real engine (tick bodies, Celery worker, Redis, MariaDB) and the
HTTP cloud fake on an accelerated clock (``simclock.py``: virtual time stepped a reconcile
interval at a time while anything is in flight, and jumped over quiet spans). Site defaults
throughout (keepalive 30 s, leave grace, suspend timeout 120 s, reconcile 1 s, suspend-idle
15 s, reap 300 s, actions_per_minute 120) unless an option changes one.

- A live class: ``--class-size`` learners, a lesson every day or two at 10:00 of 30-45 min;
  each arrives within the first two minutes and all leave together (within 10 s) at the end.
- Self-paced learners: each has a lesson every day or two at a random time between 08:00 and
  21:00, of 30-45 min.

While in a lesson a learner's page sends a keepalive every 30 s (a launch if it answers that
the lab is not up); arriving it launches the lab; leaving it sends the leave signal (with
``--no-leave`` it does not: the keepalive timeout alone, as before the leave signal).
Learner-active time is arrival to leave; billed time is what the usage report counts (up
from the create or resume call to the end of the suspend). The cloud: create 120 s, resume
20 s, suspend 60 s (``--suspend``), delete 30 s.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from common import Rig, make_parser, print_table, run
from simclock import Quiescence, SimClock, embedded_worker

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
CLASS_RUN, SELF_RUN = "course-v1:Bench+Class+Month", "course-v1:Bench+Self+Month"
KEEPALIVE = timedelta(seconds=30)  # the page's keepalive interval (site default)


def parse() -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--class-size", type=int, default=200)
    parser.add_argument("--self-paced", type=int, default=10, help="self-paced learners")
    parser.add_argument("--suspend", type=float, default=60.0, help="the cloud's suspend time, seconds")
    parser.add_argument("--resume", type=float, default=20.0, help="the cloud's resume time, seconds")
    parser.add_argument("--create", type=float, default=120.0, help="the cloud's create time, seconds")
    parser.add_argument("--actions-per-minute", type=int, default=None, help="default: the site's")
    parser.add_argument("--leave-grace", type=int, default=None, help="leave_grace_seconds (default: site's)")
    parser.add_argument("--no-leave", action="store_true", help="pages send no leave signal")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (service logs)")
    return parser.parse_args()


@dataclass(order=True)
class Event:
    at: datetime
    seq: int
    kind: str = field(compare=False)  # arrive, keepalive, leave
    visit: Visit = field(compare=False)


@dataclass
class Visit:
    population: str
    learner: Any
    spec: Any
    arrive: datetime
    leave: datetime


def schedule(rng: random.Random, args: argparse.Namespace, class_learners: list[Any],
             self_learners: list[Any], specs: dict[str, Any]) -> list[Visit]:
    """Every lesson of the month, as (learner, arrival, leaving)."""
    visits, day = [], 0
    while day < args.days:  # the live class: together, every day or two
        begins = START + timedelta(days=day, hours=10)
        ends = begins + timedelta(minutes=rng.uniform(30, 45))
        visits += [Visit("class", learner, specs["class"], begins + timedelta(seconds=rng.uniform(0, 120)),
                         ends + timedelta(seconds=rng.uniform(0, 10))) for learner in class_learners]
        day += rng.choice((1, 2))
    for learner in self_learners:
        day = rng.choice((0, 1))
        while day < args.days:
            arrive = START + timedelta(days=day, hours=rng.uniform(8, 21))
            visits.append(Visit("self-paced", learner, specs["self"], arrive,
                                arrive + timedelta(minutes=rng.uniform(30, 45))))
            day += rng.choice((1, 2))
    return visits


class Replay:
    """The learners' pages and the beat, on the virtual clock."""

    def __init__(self, clock: SimClock, quiet: Quiescence, visits: list[Visit], send_leave: bool) -> None:
        from labxblock.conf import get_settings

        self.clock, self.quiet, self.send_leave = clock, quiet, send_leave
        self.settings = get_settings()
        self.events: list[Event] = []
        self.seq = 0
        for visit in visits:
            self._push(visit.arrive, "arrive", visit)
        self.steps = self.jumps = 0
        self.resting = False  # this step only hears pages, and nothing is in flight or idle
        self.failed: Counter[str] = Counter()  # refused by the database: ticks, page requests

    def _push(self, at: datetime, kind: str, visit: Visit) -> None:
        self.seq += 1
        heapq.heappush(self.events, Event(at, self.seq, kind, visit))

    def _page(self, event: Event) -> bool:
        """What the learner's page sends; True if it launched (a worker may have work now)."""
        from labxblock import labs

        visit, user, spec = event.visit, event.visit.learner, event.visit.spec
        launched = event.kind == "arrive"
        if event.kind == "keepalive":
            launched = not labs.keepalive(user, spec.course_run, spec.lab_key)  # not up: the page wakes it
        elif event.kind == "leave" and self.send_leave:
            labs.leave(user, spec.course_run, spec.lab_key)
        if launched:
            labs.request_launch(user, spec, actor=f"learner:{user.pk}")
        if event.kind != "leave":
            following = event.at + KEEPALIVE
            self._push(following if following < visit.leave else visit.leave,
                       "keepalive" if following < visit.leave else "leave", visit)
        return launched

    def _heard(self, event: Event) -> bool:
        """The page's request as the LMS answers it: one the database refuses (a deadlock victim) is a
        failed request, and the learner's page (or the learner, pressing Retry) asks again 2 s later."""
        from django.db import OperationalError

        try:
            return self._page(event)
        except OperationalError:
            self.failed["page requests"] += 1
            self._push(event.at + timedelta(seconds=2), event.kind, event.visit)
            return False

    def _ticks(self, before: datetime, now: datetime) -> None:
        """The beat's ticks due in (before, now]: reconcile every step, the others at their period.
        A tick the database refuses (a deadlock victim) fails, as in a worker: the next one runs."""
        from django.db import OperationalError

        from labxblock import tasks

        def crossed(seconds: int) -> bool:
            return math.floor((now - START).total_seconds() / seconds) > math.floor(
                (before - START).total_seconds() / seconds)

        due = [tasks.reconcile]
        if crossed(self.settings.suspend_idle_interval_seconds):
            due.insert(0, tasks.suspend_idle)
        if crossed(self.settings.reap_interval_seconds):
            due.insert(0, tasks.reap)
        for tick in due:
            try:
                tick.run()
            except OperationalError:
                self.failed["ticks"] += 1

    def _busy(self) -> bool:
        from labxblock.labs.engine import UNSETTLED
        from labxblock.models import Lab

        return Lab.objects.filter(UNSETTLED).exists()

    def _up(self) -> bool:
        from labxblock.lifecycle import Desired
        from labxblock.models import Lab

        return Lab.objects.filter(desired=Desired.UP).exists()

    def _next(self, now: datetime) -> datetime:
        """One reconcile interval on while anything is in flight; else the next moment anything can happen."""
        step = now + timedelta(seconds=self.settings.reconcile_interval_seconds)
        if self._busy():
            self.steps += 1
            return step
        from django.db.models import Min

        from labxblock.lifecycle import Desired
        from labxblock.models import Lab

        idle = Lab.objects.filter(desired=Desired.UP).aggregate(at=Min("idle_at"))["at"]
        moments = [m for m in (self.events[0].at if self.events else None, idle) if m is not None]
        if not moments:
            return step
        self.jumps += 1
        upcoming = max(step, min(moments).replace(microsecond=0) + timedelta(seconds=1))  # the tick past it
        # Only pages to hear before any lab goes idle: a tick would find nothing to do.
        self.resting = idle is None or upcoming <= idle
        return upcoming

    def run(self) -> datetime:
        now = ticked = START
        while True:
            self.clock.set(now)
            launched = False
            while self.events and self.events[0].at <= now:
                launched |= self._heard(heapq.heappop(self.events))
            if launched or not self.resting:
                self._ticks(ticked, now)
                self.quiet.wait()
                ticked = now
            self.resting = False
            if not self.events and not self._busy() and not self._up():
                return now  # every lesson done, every lab at rest
            now = self._next(now)


def summary(visits: list[Visit], population: str, course_run: str, until: datetime) -> dict[str, float]:
    """Active and billed hours of one population, and where the overhead went (from the events)."""
    from django.db import models

    from labxblock.labs import usage
    from labxblock.models import LabEvent

    mine = [v for v in visits if v.population == population]
    active = sum((v.leave - v.arrive).total_seconds() for v in mine)
    billed = sum(row.up_seconds for row in usage.report(since=START, until=until, course_run=course_run))
    moves: dict[int, list[tuple[datetime, str]]] = {}
    events = LabEvent.objects.filter(course_run=course_run).exclude(from_state=models.F("to_state"))
    for learner_id, at, to_state in events.values_list("learner_id", "at", "to_state").order_by("at", "id"):
        moves.setdefault(learner_id, []).append((at, to_state))
    to_call, to_done, to_ready = [], [], []
    for v in mine:
        seen = moves.get(v.learner.pk, [])
        call = next((at for at, s in seen if at >= v.leave and s == "suspending"), None)
        done = next((at for at, s in seen if call and at >= call and s == "suspended"), None)
        ready = next((at for at, s in seen if at >= v.arrive and s == "ready"), None)
        if call and done:
            to_call.append((call - v.leave).total_seconds())
            to_done.append((done - call).total_seconds())
        if ready:
            to_ready.append((ready - v.arrive).total_seconds())
    mean = lambda xs: sum(xs) / len(xs) if xs else math.nan  # noqa: E731
    return {"lessons": len(mine), "active": active, "billed": billed, "leave_to_call": mean(to_call),
            "suspend": mean(to_done), "arrive_to_ready": mean(to_ready),
            "ready_active": active - sum(to_ready)}


def settings_for(args: argparse.Namespace, cloud: Any) -> dict[str, Any]:
    """The site's defaults, but for what the options change."""
    from tests.engine_harness import TEST_SECRET_KEYS, TEST_TICKET_KEYS

    provider = {"type": "openstack", **cloud.provider_config}
    if args.actions_per_minute:
        provider["actions_per_minute"] = args.actions_per_minute
    settings = {"install_id": "bench", "providers": {"default": provider}, "secret_keys": TEST_SECRET_KEYS,
                "ticket_keys": TEST_TICKET_KEYS, "terminal_mode": "console", "gateway_url": "ws://127.0.0.1:8765/"}
    if args.leave_grace:
        settings["leave_grace_seconds"] = args.leave_grace
    return settings


def main() -> None:
    args = parse()
    with Rig(engine=False, keep=args.keep) as rig:
        from labxblock.conf import get_settings
        from labxblock.labs import LabSpec, ProviderChoice
        from tests.cloudfake.server import CloudFake
        from tests.engine_harness import LabPort, active_lab_settings, lab_template

        cloud = CloudFake(delays={"create": args.create, "resume": args.resume, "suspend": args.suspend,
                                  "delete": 30.0}, list_seconds_per_stack=0.0, token_ttl_seconds=10 * 86400)
        cloud.start()
        port = LabPort()
        try:
            template = lab_template(port.port)
            choice = (ProviderChoice("default", None, template),)
            specs = {name: LabSpec(course_run=run_key, lab_key="lab", providers=choice)
                     for name, run_key in (("class", CLASS_RUN), ("self", SELF_RUN))}
            learners = rig.users(args.class_size, "class"), rig.users(args.self_paced, "self")
            visits = schedule(random.Random(args.seed), args, *learners, specs)
            with active_lab_settings(settings_for(args, cloud)), SimClock(START) as clock:
                cloud.cloud.clock = clock.seconds
                quiet = Quiescence()
                replay = Replay(clock, quiet, visits, send_leave=not args.no_leave)
                began = time.monotonic()
                queues = get_settings().queues  # every task the ticks cause, observations and probes too
                with embedded_worker(queues.calls, queues.observe, queues.checks):
                    until = replay.run()
                wall = time.monotonic() - began
                report(args, visits, until, replay, wall)
        finally:
            port.close()
            cloud.stop()


def report(args: argparse.Namespace, visits: list[Visit], until: datetime, replay: Replay,
           wall: float) -> None:
    from labxblock.conf import get_settings

    settings = get_settings()
    apm = settings.providers["default"].actions_per_minute
    print_table("setup", [
        ("days replayed", f"{args.days} (to {until - START}: {replay.steps} ticks, {replay.jumps} jumps)"),
        ("wall time", f"{wall:.0f} s"),
        ("deadlock victims", f"{replay.failed['ticks']} ticks, {replay.failed['page requests']} page "
                             "requests (each tried again: the next tick, the page 2 s later)"),
        ("cloud", f"create {args.create:.0f} s, resume {args.resume:.0f} s, suspend {args.suspend:.0f} s"),
        ("leave signal", "no (keepalive timeout only)" if args.no_leave else
         f"yes, grace {settings.leave_grace_seconds} s"),
        ("suspend timeout", f"{settings.suspend_timeout} s"),
        ("actions_per_minute", str(apm)),
    ])
    for population, course_run, goal in (("self-paced", SELF_RUN, 1.05), ("class", CLASS_RUN, 1.06)):
        figures = summary(visits, population, course_run, until)
        if not figures["lessons"]:
            continue
        ratio = figures["billed"] / figures["active"]
        print_table(f"{population} ({figures['lessons']} lessons)", [
            ("learner-active", f"{figures['active'] / 3600:.1f} h (arrival to leave)"),
            ("billed", f"{figures['billed'] / 3600:.1f} h"),
            ("billed ÷ active", f"{ratio:.4f}"),
            ("billed ÷ active once ready", f"{figures['billed'] / figures['ready_active']:.4f}"),
            ("arrival → ready (mean)", f"{figures['arrive_to_ready']:.1f} s"),
            ("leave → suspend call (mean)", f"{figures['leave_to_call']:.1f} s"),
            ("suspend call → suspended (mean)", f"{figures['suspend']:.1f} s"),
        ], goal=f"≤ {goal}", met=ratio <= goal)


if __name__ == "__main__":
    run(main)
