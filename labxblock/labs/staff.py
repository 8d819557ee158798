"""What course staff see of and do to one lab's learners (the block's staff panel).

A page of learners costs the same few queries whatever its size: the count, the
page (learner, last check score and time budget joined in), and the page's events
for this month's up-time. Actions are ``labs.operator``'s, limited to the block's own labs
and logged with the staff member as actor; a read-only open is logged too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import OuterRef, Subquery

from labxblock import lifecycle
from labxblock.labs import budgets, operator, usage
from labxblock.labs.checking import STAFF_ACTOR
from labxblock.labs.learner import terminal_access
from labxblock.labs.specs import TerminalAccess
from labxblock.lifecycle import Desired, State
from labxblock.models import SECRET_FIELDS, CheckRun, Lab, LabEvent

PAGE_SIZE = 25
STAFF_ACTIONS = ("suspend", "reset", "extend", "grant")


@dataclass(frozen=True)
class LearnerLab:
    """One row of the staff panel: no secret, no address."""

    lab_id: int
    username: str
    state: str
    phase: str
    last_seen_at: datetime | None
    delete_by: datetime | None
    up_seconds: float  # this calendar month, so far
    score: float | None  # the last finished check run's share of points, 0..1
    can_open: bool  # ready, so a read-only terminal can be opened
    budget: budgets.Budget | None = None  # the lab's time budget, if it has one
    actions: tuple[str, ...] = ()  # the STAFF_ACTIONS that would change this lab (the panel's buttons)

    def _hours(self, seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds / 3600, 2)

    def as_json(self) -> dict[str, Any]:
        return {
            "lab_id": self.lab_id, "username": self.username, "state": self.state, "phase": self.phase,
            "last_seen_at": self.last_seen_at.isoformat() if self.last_seen_at else None,
            "delete_by": self.delete_by.isoformat() if self.delete_by else None,
            "up_hours": round(self.up_seconds / 3600, 2),
            "score": None if self.score is None else round(self.score, 4), "can_open": self.can_open,
            "budget_hours": self._hours(self.budget.limit_seconds if self.budget else None),
            "left_hours": self._hours(self.budget.left_seconds if self.budget else None),
            "actions": list(self.actions),
        }


@dataclass(frozen=True)
class LearnerPage:
    rows: list[LearnerLab]
    page: int
    pages: int
    total: int


def _labs(course_run: str, lab_key: str) -> Any:
    return Lab.objects.filter(course_run=course_run, lab_key=lab_key, learner__isnull=False)  # no pool stacks


def learners(course_run: str, lab_key: str, usage_id: str, *, page: int, now: datetime,
             per_page: int = PAGE_SIZE) -> LearnerPage:
    """One page of the lab's learners, by username, with this month's up-time and last score."""
    total = _labs(course_run, lab_key).count()
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    last_score = CheckRun.objects.filter(
        learner=OuterRef("learner"), usage_id=usage_id, state=CheckRun.State.DONE,
    ).exclude(actor__startswith=STAFF_ACTOR).order_by("-finished_at", "-id").values("score")[:1]
    labs = list(
        _labs(course_run, lab_key).select_related("learner")
        .only("id", "stack_name", "state", "desired", "last_seen_at", "delete_by", "learner__username",
              *budgets.COUNTED)
        .annotate(last_score=Subquery(last_score))
        .order_by("learner__username", "id")[(page - 1) * per_page:page * per_page]
    )
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    up = usage.up_seconds_of(labs, since=month, until=now)
    rows = [_row(lab, up.get(lab.pk, 0.0), now) for lab in labs]
    return LearnerPage(rows, page, pages, total)


def _row(lab: Lab, up_seconds: float, now: datetime) -> LearnerLab:
    budget = budgets.view(lab, now)
    return LearnerLab(
        lab_id=lab.pk, username=lab.learner.username, state=lab.state,
        phase=lifecycle.phase(State(lab.state), Desired(lab.desired)).value,
        last_seen_at=lab.last_seen_at, delete_by=lab.delete_by, up_seconds=up_seconds,
        score=lab.last_score, can_open=lab.state == State.READY and lab.desired == Desired.UP,
        budget=budget, actions=useful_actions(lab, budget),
    )


def useful_actions(lab: Lab, budget: budgets.Budget | None) -> tuple[str, ...]:
    """The staff actions ``labs.operator`` would carry out on ``lab`` rather than answer "unchanged"."""
    if lab.desired == Desired.DELETED:
        return ()
    found = ["suspend"] if lab.desired == Desired.UP else []
    if lab.state not in (State.REQUESTED, State.DELETED):
        found.append("reset")
    found.append("extend")
    if budget is not None:
        found.append("grant")
    return tuple(found)


def act(course_run: str, lab_key: str, lab_id: int, action: str, *, actor: str,
        seconds: int | None = None) -> operator.Outcome | None:
    """A staff member's suspend, reset, extend or grant of one of this lab's labs; None if not one of them."""
    if action not in STAFF_ACTIONS or not _labs(course_run, lab_key).filter(pk=lab_id).exists():
        return None
    return operator.act(action, [lab_id], actor=actor, seconds=seconds)


def open_read_only(course_run: str, lab_key: str, lab_id: int, *, actor: str, port: int | None = None
                   ) -> TerminalAccess | None:
    """What a read-only ticket to a learner's ready lab carries; the open is logged with ``actor``.

    The learner's own terminal access, so the same address checks apply (AddressRefused).
    """
    lab = _labs(course_run, lab_key).filter(pk=lab_id).select_related("learner").defer(*SECRET_FIELDS).first()
    if lab is None:
        return None
    access = terminal_access(lab.learner, course_run, lab_key, port)
    if access is not None:
        LabEvent.record(lab, actor=actor, reason="opened read-only by course staff")
    return access
