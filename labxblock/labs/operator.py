"""What operators (the admin, the commands) and course staff do to labs, by id.

Every action takes the lifecycle's path, as a learner's request does: it sets what
the lab should be (or starts a reset or a retry with the very functions a learner's
click uses), appends an event naming who asked, and leaves every cloud call to the
workers. Suspend and delete only mark rows: the reconciler's next pass acts on them
at the provider's rate limit, so suspending a whole course run cannot flood a cloud.
Resume, reset and retry wake a worker at once, as a learner's launch does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from labxblock.labs import budgets, drain
from labxblock.labs.learner import begin_reset, begin_retry, usage_fields, want_up_locked
from labxblock.lifecycle import Desired, State
from labxblock.models import SECRET_FIELDS, Lab, LabEvent

BATCH = 500  # rows locked per transaction: bounded locks whatever the selection
COMMAND_ACTOR = "operator:command"


def actor_of(user: Any) -> str:
    """The event log's name for an operator signed in to the admin."""
    return f"operator:{user.pk}"


@dataclass
class Outcome:
    """What an action did: the labs it changed, and those it left as they were (and why)."""

    action: str
    changed: list[int] = field(default_factory=list)
    unchanged: dict[int, str] = field(default_factory=dict)


def _suspend(lab: Lab, actor: str, now: datetime, seconds: int | None) -> str | None:
    if lab.desired != Desired.UP:
        return "not meant to be up"
    return _mark(lab, Desired.SUSPENDED, "suspend requested", actor, now)


def _delete(lab: Lab, actor: str, now: datetime, seconds: int | None) -> str | None:
    if lab.desired == Desired.DELETED:
        return "already to be deleted"
    return _mark(lab, Desired.DELETED, "delete requested", actor, now)


def _mark(lab: Lab, desired: Desired, reason: str, actor: str, now: datetime) -> None:
    Lab.objects.filter(pk=lab.pk).update(desired=desired.value)
    lab.desired = desired.value
    LabEvent.record(lab, actor=actor, reason=reason, at=now)


def _resume(lab: Lab, actor: str, now: datetime, seconds: int | None) -> str | None:
    if lab.desired != Desired.SUSPENDED:
        return "not suspended" if lab.desired == Desired.UP else "to be deleted"
    if budgets.refused(lab, now):
        return budgets.USED_UP
    want_up_locked(lab, usage_fields(now), actor, now, reason="resume requested")
    return None


def _reset(lab: Lab, actor: str, now: datetime, seconds: int | None) -> str | None:
    if budgets.refused(lab, now):  # a reset never refills the budget
        return budgets.USED_UP
    if lab.desired == Desired.DELETED or not begin_reset(lab, actor, now):
        return "no stack to reset"
    want_up_locked(lab, usage_fields(now), actor, now)
    return None


def _retry(lab: Lab, actor: str, now: datetime, seconds: int | None) -> str | None:
    if budgets.refused(lab, now):
        return budgets.USED_UP
    if not begin_retry(lab, actor, now):
        return "not failed"
    want_up_locked(lab, usage_fields(now), actor, now)
    return None


def _extend(lab: Lab, actor: str, now: datetime, seconds: int | None) -> str | None:
    if lab.desired == Desired.DELETED:
        return "already to be deleted"
    if not seconds or seconds <= 0:
        raise ValueError("extend needs a positive number of seconds")
    delete_by = max(lab.delete_by or now, now) + timedelta(seconds=seconds)
    Lab.objects.filter(pk=lab.pk).update(delete_by=delete_by)
    lab.delete_by = delete_by
    LabEvent.record(lab, actor=actor, reason=f"delete date extended to {delete_by:%Y-%m-%d %H:%M} UTC",
                    at=now)
    return None


ACTIONS: dict[str, Callable[[Lab, str, datetime, int | None], str | None]] = {
    "suspend": _suspend,
    "resume": _resume,
    "delete": _delete,
    "reset": _reset,
    "retry": _retry,
    "extend": _extend,
    "grant": budgets.grant,  # ``seconds`` more lab time
}


def act(action: str, lab_ids: Iterable[int], *, actor: str, seconds: int | None = None,
        now: datetime | None = None) -> Outcome:
    """Do ``action`` to each lab that it applies to; ``seconds`` is how far ``extend`` moves delete_by,
    or how much lab time ``grant`` gives."""
    operation = ACTIONS[action]
    now = now or timezone.now()
    outcome, ids = Outcome(action), sorted(set(lab_ids))
    for start in range(0, len(ids), BATCH):
        with transaction.atomic():
            rows = Lab.objects.select_for_update().filter(pk__in=ids[start:start + BATCH])
            for lab in rows.defer(*SECRET_FIELDS).order_by("pk"):
                why = operation(lab, actor, now, seconds)
                if why is None:
                    outcome.changed.append(lab.pk)
                else:
                    outcome.unchanged[lab.pk] = why
    return outcome


def drain_provider(provider: str, *, moves: bool, actor: str, now: datetime | None = None) -> Outcome:
    """No new launches on ``provider``; every lab meant to be up there is suspended (and, with
    ``moves``, rebuilt on another provider of its blueprint at its next launch)."""
    now = now or timezone.now()
    with transaction.atomic():
        drain.set_flag(provider, draining=True, moves=moves, now=now)
    ids = Lab.objects.filter(provider=provider, desired=Desired.UP).exclude(state=State.DELETED)
    outcome = act("suspend", list(ids.values_list("pk", flat=True)), actor=actor, now=now)
    outcome.action = "drain"
    return outcome


def undrain_provider(provider: str, *, now: datetime | None = None) -> drain.DrainFlag:
    """Launches may be placed on ``provider`` again; its suspended labs wait for their learners."""
    with transaction.atomic():
        return drain.set_flag(provider, draining=False, moves=False, now=now or timezone.now())
