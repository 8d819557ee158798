"""Time budgets: how much up-time a learner's lab may have in its course run, and what is left of it.

Who sets it: each block opening the lab (``time_budget_hours``), else the site
(``time_budget_seconds``); never on Studio's test labs, which are the course
team's. A lab opened by several blocks (one lab key) has the **smallest** of
their budgets, each block's as of its last launch: raising one block's budget
never lifts another's, and a block without a budget lifts none. Course staff and
operators grant more time per learner (``grant``, logged with their name); the
grants add to that smallest budget.

What counts: a lab is up, and its budget runs, exactly when usage reports count it
up (``labs.usage.UP_STATES``): from its create or resume until it is suspended or
deleted. The row keeps the up-time of its past up periods (``used_seconds``) and
when the current one began (``up_since``). ``count`` moves them by each event that
takes the lab up or down, as the event is written and in its transaction, so they
are the event log's own sum: a reset stops the count while the old stack is deleted
and starts it again with the new one, and never refills the budget. Nothing reads
the log again.

When it ends: ``budget_ends_at``, worked out whenever the lab goes up or its budget
changes, is when an up lab's budget runs out. The periodic pass (``mark_spent``, in
the reconcile and suspend-idle ticks) is one indexed query for rows past it, whatever
the number of labs running; it marks them to be suspended, so the lifecycle suspends
them (their before-suspend scripts first) and never deletes them, whether or not the
learner's page is open. A launch, reset or retry of a lab whose budget is used up is
refused (``refused``), and the learner reads that their lab time is used up.

Whose time it is: a warm pool's stack counts nothing for anyone until a learner claims
it; from the claim on it is the learner's, with what their earlier stack of this lab had
used (``claimed``). A lab a hidden block started ahead of the learner
(``awaiting_learner``) counts from their arrival, their first launch from a block that
shows it (``arrived``): launching ahead never spends a budget before the learner comes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.dispatch import Signal
from django.utils import timezone

from labxblock.conf import get_settings
from labxblock.labs import periodic
from labxblock.labs.specs import is_test_lab
from labxblock.labs.usage import UP_STATES
from labxblock.lifecycle import Desired
from labxblock.models import Lab, LabEvent

WARN_SHARE = 0.8  # the learner is warned once this share of their lab time is used
USED_UP = "time budget used up"  # the reason logged when a budget stops a lab (analytics looks for it)
ACTOR = "budget"
# Sent with ``lab``, ``seconds`` and ``actor`` for every grant, after it is logged: the analytics listen.
time_granted = Signal()
# What the counter reads and writes of a row.
COUNTED = ("used_seconds", "up_since", "budget_limits", "budget_granted_seconds", "budget_ends_at",
           "awaiting_learner")
# What a learner's lab carries of its budget: a claimed pool stack takes it over from their old row.
CARRIED = ("used_seconds", "budget_limits", "budget_granted_seconds", "budget_warned_at")


def _up(state: str) -> bool:
    return state in UP_STATES


def hours(seconds: float) -> str:
    """Seconds as hours for the event log: at most two decimals."""
    return f"{round(seconds / 3600, 2):g}"


@dataclass(frozen=True)
class Budget:
    """A lab's time budget as the learner and staff see it, in seconds."""

    limit_seconds: float  # the smallest of its blocks' budgets, plus the time granted
    used_seconds: float  # up-time so far, the current up period included

    @property
    def left_seconds(self) -> float:
        return max(0.0, self.limit_seconds - self.used_seconds)

    @property
    def exhausted(self) -> bool:
        return self.used_seconds >= self.limit_seconds

    @property
    def warning(self) -> bool:
        """Most of it is used (``WARN_SHARE``), but not all."""
        return not self.exhausted and self.used_seconds >= WARN_SHARE * self.limit_seconds

    def as_json(self) -> dict[str, Any]:
        return {"limit_seconds": round(self.limit_seconds), "used_seconds": round(self.used_seconds),
                "left_seconds": round(self.left_seconds), "warning": self.warning,
                "exhausted": self.exhausted}


def limit_of(lab: Lab) -> float | None:
    """The lab's budget in seconds, grants included; None if no block and not the site sets one."""
    limits = [float(seconds) for seconds in (lab.budget_limits or {}).values()]
    return min(limits) + lab.budget_granted_seconds if limits else None


def view(lab: Lab, now: datetime | None = None) -> Budget | None:
    """The lab's budget now; None if it has none."""
    limit = limit_of(lab)
    if limit is None:
        return None
    now = now or timezone.now()
    running = max(0.0, (now - lab.up_since).total_seconds()) if lab.up_since else 0.0
    return Budget(limit, lab.used_seconds + running)


def ends_at(lab: Lab) -> datetime | None:
    """When an up lab's budget runs out if it stays up; None while it is down or has no budget."""
    limit = limit_of(lab)
    if limit is None or lab.up_since is None:
        return None
    return lab.up_since + timedelta(seconds=limit - lab.used_seconds)


# --- counting from the event log as it is written --------------------------------------------


def count(sender: Any, events: Iterable[LabEvent], **kwargs: Any) -> None:
    """Move each lab's counters by the events taking it up or down (``models.lab_events_saved``).

    One query for the labs of a batch, one statement for their changes; events that keep a lab
    up (or down) cost a glance.
    """
    moves = [e for e in events if e.lab_id is not None and _up(e.from_state) != _up(e.to_state)]
    if not moves:
        return
    labs = {lab.pk: lab for lab in Lab.objects.filter(pk__in={e.lab_id for e in moves}).only("pk", *COUNTED)}
    changed: dict[int, Lab] = {}
    for event in moves:  # in the order written: a pass may take a lab down and up again
        lab = labs.get(event.lab_id)
        if lab is not None and _step(lab, _up(event.to_state), event.at):
            changed[lab.pk] = lab
    if changed:
        Lab.objects.bulk_update(list(changed.values()), ["used_seconds", "up_since", "budget_ends_at"])


def _step(lab: Lab, up: bool, at: datetime) -> bool:
    """The lab went up or down at ``at``; False if the counters already say so (or wait for the learner)."""
    if lab.awaiting_learner:
        return False
    if up and lab.up_since is None:
        lab.up_since = at
    elif not up and lab.up_since is not None:
        lab.used_seconds += max(0.0, (at - lab.up_since).total_seconds())
        lab.up_since = None
    else:
        return False
    lab.budget_ends_at = ends_at(lab)
    return True


def claimed(state: str, earlier: Lab | None, now: datetime, *, ahead: bool) -> dict[str, Any]:
    """The counters of a pool stack (in ``state``) a learner claims now: their ``earlier`` row's (a
    stackless one it replaces), else none used; up from the claim, or from their arrival if ``ahead``."""
    fields: dict[str, Any] = {name: getattr(earlier, name) if earlier is not None else Lab._meta.get_field(
        name).get_default() for name in CARRIED}
    fields.update(awaiting_learner=ahead, up_since=now if _up(state) and not ahead else None)
    return fields


def arrived(lab: Lab, now: datetime) -> dict[str, Any]:
    """The learner reached a lab started ahead of them: its budget counts from now (if it is up).
    Returns the fields to store; inside a transaction holding the lab's row lock."""
    if not lab.awaiting_learner:
        return {}
    lab.awaiting_learner = False
    lab.up_since = now if _up(lab.state) else None
    lab.budget_ends_at = ends_at(lab)
    return {"awaiting_learner": False, "up_since": lab.up_since, "budget_ends_at": lab.budget_ends_at}


def would_refuse(lab: Lab, block_id: str, block_seconds: float | None, now: datetime) -> bool:
    """Would a launch from block ``block_id`` be refused, ``lab``'s budget used up? Changes nothing."""
    probe = Lab(**{name: getattr(lab, name) for name in ("lab_key", "used_seconds", "up_since",
                                                          "budget_granted_seconds")},
                budget_limits=dict(lab.budget_limits or {}))
    set_limit(probe, block_id, block_seconds)
    budget = view(probe, now)
    return budget is not None and budget.exhausted


# --- budgets set, enforced and granted --------------------------------------------------------


def set_limit(lab: Lab, block_id: str, block_seconds: float | None) -> dict[str, Any]:
    """Record the budget of block ``block_id`` (its own, else the site's; None: none) on ``lab``,
    and return the fields to store. Inside a transaction holding the lab's row lock."""
    seconds = block_seconds if block_seconds is not None else get_settings().time_budget_seconds
    limits = dict(lab.budget_limits or {})
    if seconds is None or is_test_lab(lab.lab_key):  # Studio's test labs are the course team's: none
        limits.pop(block_id, None)
    else:
        limits[block_id] = float(seconds)
    lab.budget_limits = limits
    lab.budget_ends_at = ends_at(lab)
    return {"budget_limits": limits, "budget_ends_at": lab.budget_ends_at}


def refused(lab: Lab, now: datetime) -> bool:
    """Is ``lab``'s lab time used up? Then it is kept down: a lab still wanted up is marked to be
    suspended, logged. Inside a transaction holding the lab's row lock."""
    budget = view(lab, now)
    if budget is None or not budget.exhausted:
        return False
    if lab.desired == Desired.UP:
        Lab.objects.filter(pk=lab.pk).update(desired=Desired.SUSPENDED.value)
        lab.desired = Desired.SUSPENDED.value
        LabEvent.record(lab, actor=ACTOR, reason=USED_UP, at=now)
    return True


def mark_spent(now: datetime) -> int:
    """Labs up past the end of their budget are to be suspended (the reconciler acts): one indexed query."""
    total = 0
    while ids := list(
        Lab.objects.filter(desired=Desired.UP, budget_ends_at__lte=now).values_list("pk", flat=True)[
            : periodic.BATCH
        ]
    ):
        total += periodic.mark(ids, Desired.SUSPENDED, USED_UP, ACTOR, now)
    return total


def grant(lab: Lab, actor: str, now: datetime, seconds: int | None) -> str | None:
    """Give ``lab`` ``seconds`` more lab time (an operator action, in its row lock); why not, or None.

    A lab its budget stopped stays suspended: the learner's next launch resumes it.
    """
    if not seconds or seconds <= 0:
        raise ValueError("a grant needs a positive number of seconds")
    if limit_of(lab) is None:
        return "no time budget"
    lab.budget_granted_seconds += seconds
    fields: dict[str, Any] = {"budget_granted_seconds": lab.budget_granted_seconds,
                              "budget_ends_at": ends_at(lab)}
    budget = view(lab, now)
    assert budget is not None
    if lab.budget_warned_at is not None and budget.used_seconds < WARN_SHARE * budget.limit_seconds:
        fields["budget_warned_at"] = None  # warned again when most of the new time is used
    Lab.objects.filter(pk=lab.pk).update(**fields)
    for name, value in fields.items():
        setattr(lab, name, value)
    LabEvent.record(lab, actor=actor, at=now,
                    reason=f"time budget: {hours(seconds)} h granted, {hours(budget.left_seconds)} h left")
    time_granted.send(sender=Lab, lab=lab, seconds=seconds, actor=actor)
    return None


def note_warning(lab_id: int, now: datetime) -> bool:
    """The learner is being warned that most of their lab time is used: True the first time only."""
    return bool(Lab.objects.filter(pk=lab_id, budget_warned_at__isnull=True).update(budget_warned_at=now))
