"""What the block asks of labs for one learner: launch, status, keepalive, leave, reset, retry, terminal."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from labxblock import lifecycle
from labxblock.conf import get_settings
from labxblock.labs import addressing, budgets, drain, hooks, pools
from labxblock.labs.engine import Job, dispatch, send_after_commit, view_of
from labxblock.labs.specs import DEFAULT_PORTS, LabSpec, LabStatus, TerminalAccess, blueprint_digest
from labxblock.lifecycle import Action, Desired, State
from labxblock.models import SECRET_FIELDS, Blueprint, Lab, LabEvent

ADVANCE_TASK = "labxblock.tasks.advance_lab"
DEADLOCK = 1213  # MariaDB/MySQL: "Deadlock found when trying to get lock; try restarting transaction"
T = TypeVar("T")
ESTIMATE_SAMPLE = 20  # recent launches of the same lab that make an estimate
ESTIMATE_CACHE_SECONDS = 60


def _advance_after_commit(lab_id: int) -> None:
    send_after_commit(ADVANCE_TASK, [[lab_id]], queue=get_settings().queues.calls)


def _blueprint(spec: LabSpec) -> Blueprint:
    content = spec.blueprint()
    digest = blueprint_digest(content)
    blueprint, _ = Blueprint.objects.get_or_create(digest=digest, defaults={"spec": content})
    return blueprint


def _usage_fields(suspend_timeout: int | None, delete_timeout: int | None, now: Any) -> dict[str, Any]:
    """A lab in use is neither idle nor due for deletion: push both moments forward."""
    settings = get_settings()
    suspend = suspend_timeout or settings.suspend_timeout
    delete = delete_timeout or settings.delete_timeout
    return {
        "last_seen_at": now,
        "idle_at": now + timedelta(seconds=suspend),
        "delete_by": now + timedelta(seconds=delete),
    }


def request_launch(user: Any, spec: LabSpec, *, actor: str, ahead: bool = False) -> LabStatus:
    """Make sure the learner's lab is on its way up: claim one from the lab's warm pool, create it,
    resume it, or leave it be.

    ``ahead``: a hidden block starts the lab before the learner comes (``labs.ahead``), so its
    time budget waits for them; any other launch is the learner's arrival, and it counts from then.
    Idempotent: any number of concurrent calls leave one row and start at most one create.
    """
    now = timezone.now()
    blueprint = _blueprint(spec)
    for _ in range(3):
        mine = Lab.objects.filter(learner=user, course_run=spec.course_run, lab_key=spec.lab_key)
        found = mine.values_list("pk", "state").first()
        if found is None or found[1] == State.DELETED:  # no stack of their own: a pool's, if it has one
            claimed = pools.claim(user, spec, blueprint, now, actor, stale_id=found[0] if found else None,
                                  ahead=ahead)
            if found is None and not claimed:
                _create_row(user, spec, blueprint, now, ahead)
        try:
            return retrying_deadlocks(lambda: _want_up(user, spec, blueprint, actor, now, ahead))
        except Lab.DoesNotExist:  # another request of theirs gave the stackless row up for a pool's
            continue
    raise AssertionError(f"no lab row for {spec.lab_key} after three tries")  # never: a row stays once made


def _create_row(user: Any, spec: LabSpec, blueprint: Blueprint, now: Any, ahead: bool) -> None:
    """The learner's new row (``_want_up`` then sets its budget and scripts, and wakes a worker); nothing
    if another request of theirs made it first (the unique key says so).

    In a transaction of its own: an INSERT racing others on the unique key and a row lock in
    one transaction is how MariaDB deadlocks.
    """
    try:
        with transaction.atomic():
            Lab.objects.create(
                learner=user, course_run=spec.course_run, lab_key=spec.lab_key, blueprint=blueprint,
                stack_user=spec.stack_user, protocol=spec.protocol, state_changed_at=now,
                launch_requested_at=now, port=spec.port, awaiting_learner=ahead,
            )
    except IntegrityError:
        pass


def _want_up(user: Any, spec: LabSpec, blueprint: Blueprint, actor: str, now: Any, ahead: bool) -> LabStatus:
    with transaction.atomic():
        lab = Lab.objects.select_for_update().get(
            learner=user, course_run=spec.course_run, lab_key=spec.lab_key
        )
        if ahead and lab.state == State.DELETED:  # a new stack, started before the learner comes
            lab.awaiting_learner = True
        arrival = {"awaiting_learner": True} if lab.awaiting_learner and ahead else budgets.arrived(lab, now)
        # This block's time budget counts from now; one used up keeps the lab down, and the learner is told.
        budget = {**arrival, **budgets.set_limit(lab, spec.block_id, spec.time_budget_seconds)}
        if budgets.refused(lab, now):
            Lab.objects.filter(pk=lab.pk).update(**budget)
            return status_of(lab)
        if lab.desired != Desired.UP and drain.moves_off(lab):
            begin_reset(lab, actor, now, reason=drain.MOVE_REASON)  # rebuilt on another provider
        fields = _usage_fields(spec.suspend_timeout, spec.delete_timeout, now)
        # A changed template reaches the learner at the next create, never by destroying work; changed
        # lifecycle scripts are the ones run from now on.
        fields.update(blueprint=blueprint, stack_user=spec.stack_user, protocol=spec.protocol,
                      hook_seconds=hooks.bounds(spec.hooks), **budget)
        want_up_locked(lab, fields, actor, now)
    return status_of(lab)


def want_up_locked(lab: Lab, fields: dict[str, Any], actor: str, now: Any,
                   reason: str = "launch requested") -> bool:
    """Make ``lab`` desired up with ``fields``, and wake a worker if it has to move; True if it changed.

    Inside a transaction holding the lab's row lock (the learner's launch, an operator's resume).
    """
    wake = lab.desired != Desired.UP or lab.state in (State.REQUESTED, State.DELETED)
    if lab.desired != Desired.UP:
        fields["desired"] = Desired.UP.value
        if lab.state in (State.SUSPENDED, State.SUSPENDING, State.DELETED):
            fields["launch_requested_at"] = now
        LabEvent.record(lab, actor=actor, reason=reason, at=now)
    Lab.objects.filter(pk=lab.pk).update(**fields)
    for name, value in fields.items():
        setattr(lab, name, value)
    if wake:
        _advance_after_commit(lab.pk)
    return wake


def usage_fields(now: Any) -> dict[str, Any]:
    """A lab someone else wakes (an operator) is in use from now, by the site's timeouts."""
    return _usage_fields(None, None, now)


def retrying_deadlocks(operation: Callable[[], T], attempts: int = 4) -> T:
    """Run a transaction again if the database chose it as a deadlock victim (MariaDB 1213)."""
    for attempt in range(attempts):
        try:
            return operation()
        except OperationalError as exc:
            if not exc.args or exc.args[0] != DEADLOCK or attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1) * random.random())  # noqa: S311 - spreading retries only
    raise AssertionError("unreachable")


def get_status(user: Any, course_run: str, lab_key: str) -> LabStatus | None:
    """The learner's lab as the view shows it; None if they never launched it."""
    lab = (
        Lab.objects.filter(learner=user, course_run=course_run, lab_key=lab_key)
        .defer(*SECRET_FIELDS)
        .first()
    )
    return status_of(lab) if lab else None


def status_of(lab: Lab) -> LabStatus:
    state, desired = State(lab.state), Desired(lab.desired)
    reason = None
    if state is State.FAILED:
        # status_reason is "<Reason>: <detail for operators>": only the Reason leaves for the page (the
        # rest may quote a cloud or name this site's own addresses; the admin and the CLI show it).
        word = lab.status_reason.split(":", 1)[0].strip()
        known = {r.value for r in lifecycle.Reason}
        reason = lifecycle.Reason(word) if word in known else lifecycle.Reason.CREATE_FAILED
    return LabStatus(
        lab_id=lab.pk,
        phase=lifecycle.phase(state, desired),
        state=state,
        desired=desired,
        reason=reason,
        since=_since(lab, state, desired),
        estimate_seconds=estimate_seconds(lab.course_run, lab.lab_key),
        ready=state is State.READY and desired is Desired.UP,
        budget=budgets.view(lab),
    )


def _since(lab: Lab, state: State, desired: Desired) -> Any:
    """When what the learner sees began: a wake-up shown ahead of the state began at the request."""
    shown_ahead = lifecycle.phase(state, desired).value != state.value
    if shown_ahead and desired is Desired.UP and lab.launch_requested_at:
        return lab.launch_requested_at
    return lab.state_changed_at or lab.created_at


def estimate_seconds(course_run: str, lab_key: str) -> float | None:
    """Median launch time of this lab's recent launches (cached: it changes slowly)."""
    key = f"labxblock:estimate:{blueprint_digest({'c': course_run, 'k': lab_key})}"
    cached = cache.get(key)
    if cached is not None:
        return cached or None
    recent = list(
        # Learners' launches only: a warm pool's own builds are no learner's wait.
        Lab.objects.filter(course_run=course_run, lab_key=lab_key, launch_seconds__isnull=False,
                           learner__isnull=False)
        .order_by("-launched_at")
        .values_list("launch_seconds", flat=True)[:ESTIMATE_SAMPLE]
    )
    value = statistics.median(recent) if recent else 0.0
    cache.set(key, value, ESTIMATE_CACHE_SECONDS)
    return value or None


def keepalive(
    user: Any,
    course_run: str,
    lab_key: str,
    *,
    suspend_timeout: int | None = None,
    delete_timeout: int | None = None,
) -> bool:
    """The learner is active in their lab: one indexed UPDATE. False if there is no such lab.

    The timeouts are the lab's own (None: the site's), as in its LabSpec. False also when
    the lab was paused or is to be deleted: the page then asks for a launch, which wakes it.
    """
    fields = _usage_fields(suspend_timeout, delete_timeout, timezone.now())
    # Only a lab meant to be up: a paused or reaped one answers False, and the page relaunches it.
    labs = Lab.objects.filter(learner=user, course_run=course_run, lab_key=lab_key, desired=Desired.UP)
    return bool(labs.update(**fields))


def leave(user: Any, course_run: str, lab_key: str) -> bool:
    """The learner's page was hidden or closed: the lab is idle after the site's short grace.

    One indexed UPDATE that only ever brings ``idle_at`` closer, so a lab whose own suspend
    timeout is shorter keeps it. Any keepalive or launch within the grace (the learner came
    back, or another tab or block showing the same lab answered) moves ``idle_at`` forward
    again; otherwise the reconcile tick marks the lab idle and suspends it. False if there
    was nothing to bring forward.
    """
    soon = timezone.now() + timedelta(seconds=get_settings().leave_grace_seconds)
    labs = Lab.objects.filter(
        learner=user, course_run=course_run, lab_key=lab_key, desired=Desired.UP, idle_at__gt=soon
    )
    return bool(labs.update(idle_at=soon))


def _locked(user: Any, spec: LabSpec) -> Lab | None:
    """The learner's lab row, locked until the surrounding transaction ends; None if none."""
    return (
        Lab.objects.select_for_update()
        .filter(learner=user, course_run=spec.course_run, lab_key=spec.lab_key)
        .first()
    )


def request_reset(user: Any, spec: LabSpec, *, actor: str) -> LabStatus:
    """Throw the learner's stack away and build a fresh one (delete, then create)."""
    now = timezone.now()
    with transaction.atomic():
        lab = _locked(user, spec)
        if lab is not None and budgets.refused(lab, now):
            return status_of(lab)  # a reset never refills the budget: the stack stays, suspended
        if lab is not None:
            begin_reset(lab, actor, now)
    return request_launch(user, spec, actor=actor)


def begin_reset(lab: Lab, actor: str, now: Any, reason: str = "reset") -> bool:
    """Start deleting ``lab``'s stack to build it afresh; False if it has none.

    Inside a transaction holding the lab's row lock; the caller then wants it up.
    """
    if lab.state in (State.REQUESTED, State.DELETED):
        return False
    lifecycle.check_transition(State(lab.state), State.DELETING)
    settings = get_settings()
    fields = {
        "state": State.DELETING.value,
        "desired": Desired.UP.value,
        "state_changed_at": now,
        "deadline_at": lifecycle.deadline_for(State.DELETING, now, settings.state_deadline_seconds),
        "attempts": 0,
        "next_attempt_at": None,
        "probe_ok": False,
        "launch_requested_at": now,
        "call_issued_at": now,  # the delete below: issued again if it is lost
        "call_accepted_at": None,
    }
    LabEvent.record(lab, actor=actor, reason=reason, to_state=State.DELETING.value, at=now)
    Lab.objects.filter(pk=lab.pk).update(**fields)
    for name, value in fields.items():
        setattr(lab, name, value)
    dispatch([Job(lab.pk, Action.DELETE, State.DELETING, issued=now)])
    return True


def retry(user: Any, spec: LabSpec, *, actor: str) -> LabStatus:
    """The learner's Retry after a failure: a fresh budget of attempts and of providers."""
    now = timezone.now()
    with transaction.atomic():
        lab = _locked(user, spec)
        if lab is not None and budgets.refused(lab, now):
            return status_of(lab)
        if lab is not None:
            begin_retry(lab, actor, now)
    return request_launch(user, spec, actor=actor)


def begin_retry(lab: Lab, actor: str, now: Any) -> bool:
    """Give a failed ``lab`` a fresh budget of attempts and providers; False unless it failed.

    Inside a transaction holding the lab's row lock; the caller then wants it up.
    """
    if lab.state != State.FAILED:
        return False
    decision = lifecycle.retry(view_of(lab), now, get_settings().policy)
    LabEvent.record(lab, actor=actor, reason=str(decision.reason), to_state=decision.state.value, at=now)
    fields = {
        "state": decision.state.value,
        "state_changed_at": now,
        "deadline_at": decision.deadline_at,
        "attempts": decision.attempts,
        "next_attempt_at": decision.next_attempt_at,
        "tried_providers": [],
        "status_reason": "",
        "launch_requested_at": now,
    }
    Lab.objects.filter(pk=lab.pk).update(**fields)
    for name, value in fields.items():
        setattr(lab, name, value)
    return True


@sensitive_variables("lab")
def terminal_access(user: Any, course_run: str, lab_key: str, port: Any = None) -> TerminalAccess | None:
    """What a terminal ticket for the learner's ready lab carries; None unless it is ready.

    ``port``: the author's port the learner chose, if any (else the lab's own). The address
    and port are checked before any secret is decrypted: BadPort or AddressRefused say why
    not (safe to log), and then no ticket can be made.
    """
    lab = Lab.objects.filter(
        learner=user, course_run=course_run, lab_key=lab_key, state=State.READY, desired=Desired.UP
    ).first()
    if lab is None or not lab.ip:
        return None
    port = port if port is not None else lab.port or DEFAULT_PORTS.get(lab.protocol, 22)
    address, port = addressing.check(lab.provider, lab.ip, port)
    return TerminalAccess(
        lab_id=lab.pk,
        stack_name=lab.stack_name,
        protocol=lab.protocol,
        host=address,
        port=port,
        username=lab.stack_user,
        private_key=lab.private_key,
        password=lab.password,
        host_key=str(lab.outputs.get("host_key", "")),
        rdp_cert_fingerprints=str(lab.outputs.get("rdp_cert_fingerprints", "")),
    )
