"""What the lifecycle tests share: the clock, short names, row builders, the validity check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from labxblock.lifecycle import (
    ALLOWED,
    CALLS,
    HOOKED,
    OBSERVABLE,
    OPERATIONS,
    TRANSITIONAL,
    Action,
    Decision,
    Desired,
    LabView,
    Reason,
    State,
    deadline_for,
    settled,
)

S, D, A = State, Desired, Action
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
OBSERVED = sorted(OBSERVABLE, key=lambda s: "" if s is None else s.value)  # None first
ABSENT = (None, S.DELETED)
COUNTED = {r for r in Reason if r.value.endswith(("_failed", "_timeout"))} - {Reason.STACK_FAILED}


def lab(state: State, desired: Desired = D.UP, **kw) -> LabView:
    """A row that entered ``state`` just now (so its deadline is fresh)."""
    kw.setdefault("deadline_at", deadline_for(state, NOW))
    return LabView(desired=desired, state=state, **kw)


def overdue(state: State, desired: Desired = D.UP, **kw) -> LabView:
    return lab(state, desired, deadline_at=NOW - SECOND if state in TRANSITIONAL else None, **kw)


def assert_valid(view: LabView, observed: State | None, d: Decision, now: datetime) -> LabView:
    """Every decision, whatever the inputs: a legal move, a deadline exactly when transitional…"""
    assert isinstance(d.action, Action)
    if d.state is not None:
        assert d.state is not view.state, "an unchanged state is reported as None"
        assert d.state in ALLOWED[view.state], f"{view.state} -> {d.state}"
        assert d.reason is not None, "every state change says why"
    after = view.after(d)
    assert (after.deadline_at is not None) == (after.state in TRANSITIONAL)
    if after.deadline_at is not None:
        assert after.deadline_at.tzinfo is not None
    if d.action in CALLS:
        assert d.next_attempt_at is not None and d.next_attempt_at > now, "a call gets time to land"
        assert d.call_pending_since == now, "a call is in flight from the moment it is issued"
    elif d.state is not None:
        assert d.call_pending_since is None, "a new state starts with no call in flight"
    elif view.state in OPERATIONS and observed is view.state:
        assert d.call_pending_since is None, "the cloud at work shows the call landed"
    else:
        assert d.call_pending_since == view.call_pending_since
    if d.reason is Reason.NOT_ACCEPTED:
        assert d.action in CALLS and d.attempts == view.attempts, "a lost call is no failure of the cloud"
        if d.state is None:
            assert d.deadline_at == view.deadline_at, "the deadline stays the backstop"
    if d.action is A.CREATE:
        assert observed in ABSENT, "never create over an existing stack"
        assert after.state is S.CREATING
    if d.action in {A.SUSPEND, A.RESUME}:
        assert observed not in {*ABSENT, S.DELETING}
    if d.action is A.PROBE:
        assert after.state is S.STARTING and observed is S.READY
    if d.action is A.HOOK:  # scripts run in a lab that answered, for as long as they may take
        assert d.state is None and observed is S.READY and (view.state, view.desired) in HOOKED
        assert view.hook_until is None and d.hook_until == now + timedelta(seconds=view.hook_seconds)
        assert d.reason is Reason.SCRIPTS
    if after.hook_until is not None:
        assert (after.state, after.desired) in HOOKED, "scripts are waited for only where they run"
    running = view.hook_until is not None and now < view.hook_until
    if running and (view.state, view.desired) in HOOKED and observed is S.READY:
        assert (d.action, d.state) == (A.NONE, None), "nothing moves while its scripts may still run"
    if d.action is A.DELETE:
        assert after.state in {S.DELETING, S.FAILED}
    if d.state is S.FAILED:
        assert d.reason in COUNTED | {Reason.STACK_FAILED}
    if d.state is not None and settled(d.state, view.desired):
        assert (d.attempts, d.next_attempt_at) == (0, None), "settling resets the budget"
    if after.state is S.DELETED and d.state is not None:
        assert observed in ABSENT, "DELETED is recorded only when the cloud has no stack"
    assert d.attempts >= view.attempts or d.attempts == 0
    return after
