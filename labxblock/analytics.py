"""Analytics events for the platform's tracking logs, named ``edx.labxblock.<name>``.

Events with a request (launch, reset, check, budget.warning) are published by the block
through its runtime (``runtime.publish``), which adds the platform's own context (user,
course, page). Events that happen with no request (ready, suspend, resume, check_result,
budget.exhausted, budget.granted) are
emitted by the worker through edx-platform's tracker (``compat.emit_tracking_event``)
once the transaction that recorded them has committed: the models signal them
(``connect``, in apps.ready), so neither the models nor the labs import this module. No
event carries a secret, a lab's address or a cloud's own words; README's "Analytics
events" lists the fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction

from labxblock import compat
from labxblock.lifecycle import Reason, State

PREFIX = "edx.labxblock."
# Events of the lab's log published as it enters a state (a transition, not a decision).
ON_ENTER = {State.READY: "ready", State.SUSPENDED: "suspend", State.RESUMING: "resume"}
_REASONS = frozenset(r.value for r in Reason)
# Every event there is (README's table lists each with its fields).
EVENTS = ("launch", "reset", "check", "check_result", *ON_ENTER.values(), "budget.warning",
          "budget.exhausted", "budget.granted")


def publish(block: Any, name: str, data: Mapping[str, Any]) -> None:
    """A block's event, through its runtime (edx-platform adds user, course and page context)."""
    assert name in EVENTS, name
    block.runtime.publish(block, PREFIX + name, dict(data))


def learner_request(block: Any, action: str, status: Any, *, lab_key: str, by_staff: bool) -> None:
    """A learner's launch (when it sets the lab moving: not one its used-up budget refused) or reset, as
    the block's event."""
    data = {"lab_key": lab_key, "usage_id": str(block.scope_ids.usage_id), "by_staff": by_staff}
    if action == "launch" and status is not None and not status.ready and not status.used_up:
        publish(block, "launch", {**data, "phase": str(status.phase)})
    elif action == "reset":
        publish(block, "reset", data)


def check_started(block: Any, run: Any, *, lab_key: str) -> None:
    """A press of the check button: the run's id, its state (running, or failed if the lab was not up)."""
    publish(block, "check", {"lab_key": lab_key, "usage_id": str(block.scope_ids.usage_id), "run_id": run.id,
                             "state": run.state, "reason": run.reason or ""})


def _lab_data(event: Any) -> dict[str, Any]:
    return {
        "course_id": event.course_run, "lab_key": event.lab_key, "lab_id": event.lab_id,
        "user_id": event.learner_id, "provider": event.provider, "from_state": str(event.from_state),
        "to_state": str(event.to_state), "actor": _actor_kind(event.actor),
        # Only our own fixed words: a free text reason may quote a cloud.
        "reason": event.reason if event.reason in _REASONS else "",
    }


def _actor_kind(actor: str) -> str:
    """Who moved it, without ids of staff or operators: learner, staff, operator, or the system part."""
    return actor.split(":", 1)[0]


def connect() -> None:
    """Listen to the models' signals (apps.ready): the lab's moves, scored runs and lab time granted."""
    from labxblock import models
    from labxblock.labs import budgets

    uid = "labxblock.analytics"
    models.lab_events_saved.connect(_on_lab_events, sender=models.LabEvent, dispatch_uid=uid)
    models.check_run_scored.connect(_on_check_run, sender=models.CheckRun, dispatch_uid=uid)
    budgets.time_granted.connect(_on_time_granted, sender=models.Lab, dispatch_uid=uid)


def _on_lab_events(sender: Any, events: Iterable[Any], **_: Any) -> None:
    lab_events_saved(events)


def _on_check_run(sender: Any, run: Any, **_: Any) -> None:
    check_finished(run)


def _on_time_granted(sender: Any, lab: Any, seconds: float, actor: str, **_: Any) -> None:
    budget_granted(lab, seconds, actor)


def lab_events_saved(events: Iterable[Any]) -> None:
    """Called for every LabEvent written: those entering a tracked state, and a budget stopping a lab,
    are emitted after commit. Studio's test labs are the course team's, and a warm pool's stacks
    nobody's yet: they emit nothing.
    """
    from labxblock.labs.budgets import USED_UP  # the labs need Django's apps ready; this module does not
    from labxblock.labs.specs import is_test_lab

    wanted = []
    for e in events:
        if is_test_lab(e.lab_key) or e.pool:
            continue
        if e.from_state != e.to_state and e.to_state in ON_ENTER:
            wanted.append((PREFIX + ON_ENTER[State(e.to_state)], _lab_data(e)))
        elif e.reason == USED_UP:
            wanted.append((PREFIX + "budget.exhausted", _budget_data(e.course_run, e.lab_key, e.lab_id,
                                                                     e.learner_id, e.actor)))
    if wanted:
        transaction.on_commit(lambda: _emit(wanted), robust=True)


def _budget_data(course_run: str, lab_key: str, lab_id: int | None, user_id: int | None, actor: str
                 ) -> dict[str, Any]:
    return {"course_id": course_run, "lab_key": lab_key, "lab_id": lab_id, "user_id": user_id,
            "actor": _actor_kind(actor)}


def budget_warning(block: Any, budget: Any, *, lab_key: str, lab_id: int) -> None:
    """The learner's page warns them that most of their lab time is used (once per lab, labs.budgets)."""
    publish(block, "budget.warning", {"lab_key": lab_key, "usage_id": str(block.scope_ids.usage_id),
                                      "lab_id": lab_id, "limit_hours": round(budget.limit_seconds / 3600, 2),
                                      "left_hours": round(budget.left_seconds / 3600, 2)})


def budget_granted(lab: Any, seconds: float, actor: str) -> None:
    """Course staff or an operator granted a learner's lab more time, emitted after commit."""
    data = {**_budget_data(lab.course_run, lab.lab_key, lab.pk, lab.learner_id, actor),
            "granted_hours": round(seconds / 3600, 2)}
    transaction.on_commit(lambda: _emit([(PREFIX + "budget.granted", data)]), robust=True)


def check_finished(run: Any) -> None:
    """A check run was scored by the worker (``check_result``), emitted after commit (not a test lab's)."""
    from labxblock.labs.specs import is_test_lab

    if is_test_lab(run.lab_key):
        return
    data = {"course_id": run.course_run, "lab_key": run.lab_key, "usage_id": run.usage_id, "run_id": run.pk,
            "user_id": run.learner_id, "score": run.score, "checks": len(run.checks or ()),
            "passed": sum(1 for r in run.results or () if r.get("passed"))}
    transaction.on_commit(lambda: _emit([(PREFIX + "check_result", data)]), robust=True)


def _emit(items: list[tuple[str, dict[str, Any]]]) -> None:
    for name, data in items:
        compat.emit_tracking_event(name, data, course_run=data["course_id"])
