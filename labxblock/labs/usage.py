"""Usage: how long each learner's labs were up, computed from the LabEvent log."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from labxblock.lifecycle import State
from labxblock.models import LabEvent

# A stack costs while it exists and is not suspended.
UP_STATES = frozenset({State.CREATING, State.STARTING, State.READY, State.SUSPENDING, State.RESUMING})

UsageKey = tuple[int | None, str, str]  # (learner id, course run, lab key)


def lab_usage(
    *, since: datetime, until: datetime, course_run: str | None = None, learner_id: int | None = None
) -> dict[UsageKey, timedelta]:
    """Time each lab was up within [since, until), per learner, course run and lab key."""
    events = LabEvent.objects.filter(at__lt=until)
    if course_run is not None:
        events = events.filter(course_run=course_run)
    if learner_id is not None:
        events = events.filter(learner_id=learner_id)
    # Events before ``since`` count too: a lab up since last week is up in this window.
    events = events.order_by("stack_name", "at", "id")
    totals: dict[UsageKey, timedelta] = defaultdict(timedelta)
    current: dict[str, tuple[State, datetime, UsageKey]] = {}
    for event in events.values_list("stack_name", "to_state", "at", "learner_id", "course_run", "lab_key"):
        stack, to_state, at, learner, run, key = event
        _close(totals, current.get(stack), at, since)
        current[stack] = (State(to_state), at, (learner, run, key))
    for open_interval in current.values():
        _close(totals, open_interval, until, since)
    return dict(totals)


def _close(
    totals: dict[UsageKey, timedelta],
    interval: tuple[State, datetime, UsageKey] | None,
    end: datetime,
    since: datetime,
) -> None:
    if interval is None:
        return
    state, start, key = interval
    start = max(start, since)
    if state in UP_STATES and end > start:
        totals[key] += end - start
