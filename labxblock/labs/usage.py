"""Usage: how long labs were up, how often they launched, resumed, failed and were checked, and
what that cost, computed from the LabEvent log (and CheckRun rows for checks).

A lab is up (and costs) from the moment it is created or resumed until it is
suspended or deleted: the states in ``UP_STATES``. Time is split at the report's
edges, so a lab up across ``since`` counts from ``since``. Events outlive their lab
and their learner, so a course run's accounting survives both being deleted. Studio's test
labs (``labs.testlabs``) are the course team's, not learners' labs: they are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count

from labxblock.labs.specs import TEST_LAB_PREFIX
from labxblock.lifecycle import State
from labxblock.models import CheckRun, Lab, LabEvent

# A stack costs while it exists and is not suspended.
UP_STATES = frozenset({State.CREATING, State.STARTING, State.READY, State.SUSPENDING, State.RESUMING})
# What is counted, by the state a transition enters.
COUNTED = {State.CREATING: "launches", State.RESUMING: "resumes", State.FAILED: "failures"}
GROUPINGS = ("learner", "lab", "course_run")
CENT = Decimal("0.01")

UsageKey = tuple[int | None, str, str]  # (learner id, course run, lab key)
_RowKey = tuple[int | None, str, str, bool]  # the same, and whether it is a warm pool's time
_EVENT_FIELDS = ("stack_name", "from_state", "to_state", "at", "learner_id", "course_run", "lab_key",
                 "provider", "pool")


@dataclass
class UsageRow:
    """One line of a usage report: a learner's lab, a lab, or a course run, as grouped."""

    course_run: str
    lab_key: str = ""  # empty when grouped by course run
    learner_id: int | None = None  # None when grouped coarser, or the learner was deleted
    username: str = ""
    up_seconds: float = 0.0
    launches: int = 0
    resumes: int = 0
    failures: int = 0
    check_runs: int = 0
    up_by_provider: dict[str, float] = field(default_factory=dict)
    pool: bool = False  # a warm pool's time: its stacks before any learner had them

    def cost(self, prices: Mapping[str, Decimal | None]) -> Decimal | None:
        """Up-hours times each provider's price; None if some of the time is on an unpriced provider."""
        total = Decimal(0)
        for provider, seconds in self.up_by_provider.items():
            price = prices.get(provider)
            if price is None:
                if seconds > 0:
                    return None
                continue
            total += Decimal(str(seconds)) / 3600 * price
        return total.quantize(CENT)


def _events(until: datetime, course_run: str | None, learner_id: int | None,
            stack_names: Iterable[str] | None) -> Iterator[tuple[Any, ...]]:
    # Studio's test labs are the course team's, never a learner's lab: not in usage.
    events = LabEvent.objects.filter(at__lt=until).exclude(lab_key__startswith=TEST_LAB_PREFIX)
    if course_run is not None:
        events = events.filter(course_run=course_run)
    if learner_id is not None:
        events = events.filter(learner_id=learner_id)
    if stack_names is not None:
        events = events.filter(stack_name__in=list(stack_names))
    # Events before ``since`` count too: a lab up since last week is up in this window.
    return events.order_by("stack_name", "at", "id").values_list(*_EVENT_FIELDS).iterator(chunk_size=5000)


def _spans(events: Iterable[tuple[Any, ...]], since: datetime, until: datetime
           ) -> Iterator[tuple[tuple[Any, ...], float]]:
    """Each event with the up seconds within [since, until) until its stack's next event (or ``until``)."""
    previous: tuple[Any, ...] | None = None
    for event in events:
        if previous is not None:
            yield previous, _up(previous, event[3] if event[0] == previous[0] else until, since)
        previous = event
    if previous is not None:
        yield previous, _up(previous, until, since)


def _up(event: tuple[Any, ...], end: datetime, since: datetime) -> float:
    start = max(event[3], since)
    return (end - start).total_seconds() if State(event[2]) in UP_STATES and end > start else 0.0


def _rows(since: datetime, until: datetime, course_run: str | None = None, learner_id: int | None = None
          ) -> dict[_RowKey, UsageRow]:
    """One row per (learner, course run, lab key), and one per lab's warm pool: up-time by provider
    and counted transitions."""
    rows: dict[_RowKey, UsageRow] = {}
    for event, seconds in _spans(_events(until, course_run, learner_id, None), since, until):
        _stack, from_state, to_state, at, learner, run, key, provider, pool = event
        row = rows.setdefault((learner, run, key, pool), UsageRow(run, key, learner, pool=pool))
        if seconds:
            row.up_seconds += seconds
            row.up_by_provider[provider] = row.up_by_provider.get(provider, 0.0) + seconds
        counted = COUNTED.get(State(to_state))
        if counted and from_state != to_state and at >= since:
            setattr(row, counted, getattr(row, counted) + 1)
    return rows


def lab_usage(
    *, since: datetime, until: datetime, course_run: str | None = None, learner_id: int | None = None
) -> dict[UsageKey, timedelta]:
    """Time each lab was up within [since, until), per learner, course run and lab key (not pool time)."""
    rows = _rows(since, until, course_run, learner_id)
    return {key[:3]: timedelta(seconds=row.up_seconds) for key, row in rows.items()
            if row.up_seconds and not row.pool}


def up_seconds_of(labs: Iterable[Lab], *, since: datetime, until: datetime) -> dict[int, float]:
    """Up-time in [since, until) of each of ``labs`` (one query, whatever their number); a stack's time
    in a warm pool, before its learner claimed it, is not theirs."""
    by_stack = {lab.stack_name: lab.pk for lab in labs}
    totals = dict.fromkeys(by_stack.values(), 0.0)
    if by_stack:
        for event, seconds in _spans(_events(until, None, None, by_stack), since, until):
            if not event[-1]:  # the event's ``pool``
                totals[by_stack[event[0]]] += seconds
    return totals


def report(*, since: datetime, until: datetime, course_run: str | None = None,
           learner_id: int | None = None, by: str = "learner") -> list[UsageRow]:
    """Usage per learner's lab (``by="learner"``), per lab, or per course run, sorted.

    Three queries whatever the size: the events, the check runs, the learners' names.
    """
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}")
    rows = _rows(since, until, course_run, learner_id)
    runs = CheckRun.objects.filter(started_at__gte=since, started_at__lt=until).exclude(
        lab_key__startswith=TEST_LAB_PREFIX)
    if course_run is not None:
        runs = runs.filter(course_run=course_run)
    if learner_id is not None:
        runs = runs.filter(learner_id=learner_id)
    for learner, run, key, count in runs.values_list("learner_id", "course_run", "lab_key").annotate(
            n=Count("id")).order_by():
        rows.setdefault((learner, run, key, False), UsageRow(run, key, learner)).check_runs += count
    names = dict(get_user_model().objects.filter(pk__in={k[0] for k in rows if k[0] is not None})
                 .values_list("pk", "username"))
    for row in rows.values():
        row.username = names.get(row.learner_id, "") if row.learner_id is not None else ""
    return sorted(_grouped(rows.values(), by), key=lambda r: (r.course_run, r.lab_key, r.username,
                                                              r.learner_id or 0))


def _grouped(rows: Iterable[UsageRow], by: str) -> list[UsageRow]:
    if by == "learner":
        return list(rows)
    merged: dict[tuple[str, str], UsageRow] = {}
    for row in rows:
        key = (row.course_run, row.lab_key if by == "lab" else "")
        into = merged.setdefault(key, UsageRow(*key))
        into.up_seconds += row.up_seconds
        for name in COUNTED.values():
            setattr(into, name, getattr(into, name) + getattr(row, name))
        into.check_runs += row.check_runs
        for provider, seconds in row.up_by_provider.items():
            into.up_by_provider[provider] = into.up_by_provider.get(provider, 0.0) + seconds
    return [replace(row) for row in merged.values()]


def up_series(*, course_run: str, since: datetime, until: datetime, buckets: int = 48
              ) -> list[tuple[datetime, int]]:
    """Labs of a course run up at once: the peak within each of ``buckets`` equal slices of the period."""
    changes: list[tuple[datetime, int]] = []
    current: dict[str, bool] = {}
    for stack, _f, to_state, at, *_ in _events(until, course_run, None, None):
        up = State(to_state) in UP_STATES
        if up != current.get(stack, False):
            changes.append((at, 1 if up else -1))
        current[stack] = up
    changes.sort(key=lambda change: change[0])
    step = (until - since) / buckets
    series, level, i = [], 0, 0
    for b in range(buckets):
        start, end = since + step * b, since + step * (b + 1)
        while i < len(changes) and changes[i][0] <= start:
            level += changes[i][1]
            i += 1
        peak = level
        while i < len(changes) and changes[i][0] < end:
            level += changes[i][1]
            peak = max(peak, level)
            i += 1
        series.append((start, peak))
    return series


def record_row_deletion(sender: Any, instance: Lab, **kwargs: Any) -> None:
    """A lab row about to go (its learner was deleted): close its up-time with a last event.

    Without it the log's last word would be "ready" and the lab would count as up for ever.
    The event names neither the row nor the learner: both are on their way out.
    """
    if instance.state in (State.DELETED,):
        return
    LabEvent.objects.create(
        lab=None, learner=None, stack_name=instance.stack_name, course_run=instance.course_run,
        lab_key=instance.lab_key, provider=instance.provider, at=_now(), from_state=instance.state,
        to_state=State.DELETED.value, desired=instance.desired, reason="lab row deleted", actor="deletion",
    )


def _now() -> datetime:
    from django.utils import timezone

    return timezone.now()


def site_prices() -> dict[str, Decimal | None]:
    """Each configured provider's price per lab-hour (None: unpriced)."""
    from labxblock.conf import get_settings

    return {name: conf.price_per_hour for name, conf in get_settings().providers.items()}
