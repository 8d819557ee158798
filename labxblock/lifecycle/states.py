"""The lifecycle's vocabulary and policy: states, transitions, deadlines, backoff, views.

Pure Python, no clock: ``now`` is always an argument. See the package docstring.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType


class State(enum.StrEnum):
    """Where a lab is, in labxblock's own words (never a cloud's status words)."""

    REQUESTED = "requested"  # row exists; no cloud stack has been asked for yet
    CREATING = "creating"  # the cloud accepted the create and is working
    STARTING = "starting"  # the cloud is done; waiting for the lab to answer
    READY = "ready"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    RESUMING = "resuming"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


class Desired(enum.StrEnum):
    """What a lab should be."""

    UP = "up"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class Action(enum.StrEnum):
    """The one thing the reconciler does for a lab in this pass."""

    NONE = "none"
    CREATE = "create"  # provider.create(spec)
    SUSPEND = "suspend"  # provider.suspend(ref)
    RESUME = "resume"  # provider.resume(ref)
    DELETE = "delete"  # provider.delete(ref); "not found" counts as done
    PROBE = "probe"  # no cloud call: connect to the lab's port, store the answer as probe_ok
    HOOK = "hook"  # no cloud call: run the author's lifecycle scripts in the lab (see ``HOOKED``)


class Phase(enum.StrEnum):
    """What the learner is shown."""

    QUEUED = "queued"
    CREATING = "creating"
    STARTING = "starting"
    READY = "ready"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    RESUMING = "resuming"
    DELETING = "deleting"
    REBUILDING = "rebuilding"  # its stack is being deleted to make a fresh one (recovery, reset)
    DELETED = "deleted"  # no lab now; launching makes a fresh one
    FAILED = "failed"


class Reason(enum.StrEnum):
    """Why a decision changed something: a fixed set, logged in LabEvent, translated by the block."""

    DESIRED = "desired"  # a step towards the desired state
    PROGRESS = "progress"  # the cloud reports our operation done
    ADOPTED = "adopted"  # the cloud is already doing or has done this; follow it
    ANSWERED = "answered"  # the lab answered on its port
    RETRIED = "retried"  # the learner (or an operator) pressed Retry
    VANISHED = "vanished"  # the stack disappeared from the cloud
    OUT_OF_SYNC = "out_of_sync"  # the cloud reports a status no operation of ours explains
    STACK_FAILED = "stack_failed"  # the cloud reports the stack failed outside our operations
    QUEUE_TIMEOUT = "queue_timeout"  # no create was made in time (no capacity, reconciler down)
    CREATE_FAILED = "create_failed"
    CREATE_TIMEOUT = "create_timeout"
    START_TIMEOUT = "start_timeout"  # the stack is up but the lab does not answer on its port
    BAD_ADDRESS = "bad_address"  # the template's outputs name an address or port this site refuses
    SUSPEND_FAILED = "suspend_failed"
    SUSPEND_TIMEOUT = "suspend_timeout"
    RESUME_FAILED = "resume_failed"
    RESUME_TIMEOUT = "resume_timeout"
    DELETE_FAILED = "delete_failed"
    DELETE_TIMEOUT = "delete_timeout"
    NOT_ACCEPTED = "not_accepted"  # no sign of the call in the cloud within the acceptance window: reissued
    SCRIPTS = "scripts"  # the author's lifecycle scripts were sent to run in the lab


class IllegalTransition(ValueError):
    """A state change the lifecycle does not allow: a bug in the caller, never the cloud's fault."""

    def __init__(self, from_state: State, to_state: State) -> None:
        super().__init__(f"illegal lab transition: {from_state} -> {to_state}")
        self.from_state = from_state
        self.to_state = to_state


_S = State
TRANSITIONAL: frozenset[State] = frozenset(
    {_S.REQUESTED, _S.CREATING, _S.STARTING, _S.SUSPENDING, _S.RESUMING, _S.DELETING}
)
STABLE: frozenset[State] = frozenset(State) - TRANSITIONAL
# What a provider may report for a stack; None: not listed. STARTING and REQUESTED are ours alone.
OBSERVABLE: frozenset[State | None] = frozenset(State) - {_S.REQUESTED, _S.STARTING} | {None}
CALLS: frozenset[Action] = frozenset({Action.CREATE, Action.SUSPEND, Action.RESUME, Action.DELETE})
# Our operations: the states in which a call of ours is at work in the cloud. Only in these does the
# lifecycle need to know what the cloud shows now; every other state is decided on the row alone.
OPERATIONS: frozenset[State] = frozenset({_S.CREATING, _S.SUSPENDING, _S.RESUMING, _S.DELETING})

# Every state change decide() or retry() can make. Anything else is a bug (IllegalTransition).
# Any state may go to DELETING (desired deleted, or someone else deletes the stack); most may go back
# to REQUESTED (the stack vanished or is out of sync: start again from what the cloud has).
ALLOWED: Mapping[State, frozenset[State]] = MappingProxyType(
    {
        _S.REQUESTED: frozenset(State) - {_S.REQUESTED, _S.READY},  # adopts whatever the cloud has
        _S.CREATING: frozenset({_S.STARTING, _S.SUSPENDING, _S.DELETING, _S.REQUESTED, _S.FAILED}),
        _S.STARTING: frozenset({_S.READY, _S.SUSPENDING, _S.DELETING, _S.REQUESTED, _S.FAILED}),
        _S.READY: frozenset({_S.SUSPENDING, _S.DELETING, _S.REQUESTED, _S.FAILED}),
        _S.SUSPENDING: frozenset({_S.SUSPENDED, _S.READY, _S.RESUMING, _S.DELETING, _S.REQUESTED, _S.FAILED}),
        _S.SUSPENDED: frozenset({_S.RESUMING, _S.DELETING, _S.REQUESTED, _S.FAILED}),
        _S.RESUMING: frozenset(
            {_S.STARTING, _S.SUSPENDING, _S.SUSPENDED, _S.DELETING, _S.REQUESTED, _S.FAILED}
        ),
        _S.DELETING: frozenset({_S.DELETED, _S.FAILED}),
        _S.DELETED: frozenset({_S.REQUESTED, _S.DELETING}),
        _S.FAILED: frozenset({_S.REQUESTED, _S.DELETING, _S.DELETED}),
    }
)


def check_transition(from_state: State, to_state: State) -> None:
    """Raise IllegalTransition unless a lab may go from ``from_state`` to ``to_state``."""
    if to_state not in ALLOWED[from_state]:
        raise IllegalTransition(from_state, to_state)


# Where the author's lifecycle scripts run, as (state, desired): before a started lab is called READY
# (setup after its first start, after-resume scripts after a resume) and before a ready lab is suspended.
# The lifecycle only waits for them, never longer than their time allows; the labs layer runs them.
HOOKED: frozenset[tuple[State, Desired]] = frozenset(
    {(_S.STARTING, Desired.UP), (_S.READY, Desired.SUSPENDED)}
)

# Seconds each transitional state may last (keys are State values, as in conf's
# state_deadline_seconds, which overrides them).
DEFAULT_DEADLINES: Mapping[str, float] = MappingProxyType(
    {
        _S.REQUESTED: 120,  # a pass should have made the create call by then
        _S.CREATING: 1200,  # Heat builds nested stacks slowly
        _S.STARTING: 600,  # boot and cloud-init until the lab answers
        _S.SUSPENDING: 600,
        _S.RESUMING: 900,
        _S.DELETING: 1200,
    }
)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (UTC)")


def deadline_for(
    state: State, now: datetime, deadlines: Mapping[str, float] = DEFAULT_DEADLINES
) -> datetime | None:
    """When a lab entering ``state`` at ``now`` is overdue; None for a stable state."""
    _require_aware(now)
    if state not in TRANSITIONAL:
        return None
    return now + timedelta(seconds=deadlines.get(state, DEFAULT_DEADLINES[state]))


def backoff_seconds(
    attempts: int, *, base_seconds: float = 10, cap_seconds: float = 600, jitter: float = 0.0
) -> float:
    """Delay after ``attempts`` failures: base * 2**attempts, capped, shortened by up to a quarter.

    ``jitter`` in [0, 1) is a fixed fraction per lab (e.g. from its id), so the result is
    deterministic and, for one lab, never shrinks as attempts grow; it spreads many labs' retries.
    """
    if attempts < 0 or not 0 <= jitter < 1:
        raise ValueError("attempts must be >= 0 and jitter in [0, 1)")
    delay = min(cap_seconds, base_seconds * 2 ** min(attempts, 64))
    return delay * (1 - jitter / 4)


@dataclass(frozen=True)
class Policy:
    """The tunables; conf.py builds one from settings (same field names)."""

    deadline_seconds: Mapping[str, float] = field(default_factory=lambda: DEFAULT_DEADLINES)
    max_attempts: int = 5  # failures per convergence before the lab is FAILED
    retry_backoff_seconds: float = 10
    retry_backoff_max_seconds: float = 600
    acceptance_window_seconds: float = 45  # a call the cloud shows no sign of by then is issued again

    def backoff(self, attempts: int, jitter: float = 0.0) -> timedelta:
        base, cap = self.retry_backoff_seconds, self.retry_backoff_max_seconds
        return timedelta(seconds=backoff_seconds(attempts, base_seconds=base, cap_seconds=cap, jitter=jitter))


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Decision:
    """One pass's verdict. The reconciler stores every field (``state`` None: unchanged), then acts."""

    action: Action
    state: State | None  # the new state, or None to keep the current one
    deadline_at: datetime | None  # None exactly when the resulting state is stable
    attempts: int
    next_attempt_at: datetime | None
    call_pending_since: datetime | None  # when the call in flight was issued; None once the cloud took it
    # Set whenever the state changes, a failure is counted, a call is reissued or scripts are sent.
    reason: Reason | None = None
    hook_until: datetime | None = None  # lifecycle scripts are running: the lab waits for them until then


@dataclass(frozen=True)
class LabView:
    """What decide() needs of a Lab row."""

    desired: Desired
    state: State
    deadline_at: datetime | None = None
    attempts: int = 0  # failures since the lab last settled
    next_attempt_at: datetime | None = None
    probe_ok: bool = False  # the lab answered a probe since entering the current state
    jitter: float = 0.0  # a fixed fraction in [0, 1) per lab, spreads retries
    # When the last call was issued, if nobody has seen the cloud take it yet (the worker's answer,
    # or the cloud showing the operation under way): past the acceptance window it was lost.
    call_pending_since: datetime | None = None
    # When the last call was issued (or its worker started or retried it), taken or not: a delete its
    # worker saw answered that the cloud still does not show past the acceptance window is made again.
    call_issued_at: datetime | None = None
    # The author's lifecycle scripts due before the next step (see ``HOOKED``): the longest they may take,
    # 0 when none are due. ``hook_until``: once sent, when the wait for them ends (their worker brings it
    # forward to the moment they finished); None while none were sent in this state.
    hook_seconds: float = 0.0
    hook_until: datetime | None = None

    def __post_init__(self) -> None:  # the DB hands us plain strings; decide() compares members
        object.__setattr__(self, "desired", Desired(self.desired))
        object.__setattr__(self, "state", State(self.state))

    def after(self, decision: Decision) -> LabView:
        """The row once ``decision`` is stored; a new state forgets the probe result."""
        moved = decision.state is not None
        return replace(
            self,
            state=decision.state if decision.state is not None else self.state,
            deadline_at=decision.deadline_at,
            attempts=decision.attempts,
            next_attempt_at=decision.next_attempt_at,
            call_pending_since=decision.call_pending_since,
            call_issued_at=decision.call_pending_since if decision.action in CALLS else self.call_issued_at,
            hook_until=decision.hook_until,
            probe_ok=self.probe_ok and not moved,
        )


_SETTLED = frozenset(
    {
        (_S.READY, Desired.UP),
        (_S.SUSPENDED, Desired.SUSPENDED),
        (_S.DELETED, Desired.SUSPENDED),
        (_S.DELETED, Desired.DELETED),
    }
)


def settled(state: State, desired: Desired) -> bool:
    """Is there nothing left to do? (A lab that should be suspended but has no stack is settled.)"""
    return (state, desired) in _SETTLED


# A stable state the learner wants out of is shown as the move about to happen.
_PHASE_AHEAD = {
    (_S.READY, Desired.SUSPENDED): Phase.SUSPENDING,
    (_S.SUSPENDED, Desired.UP): Phase.RESUMING,
    (_S.DELETED, Desired.UP): Phase.QUEUED,
    # Deleting a lab that is wanted up is making it afresh (automatic recovery, or a reset).
    (_S.DELETING, Desired.UP): Phase.REBUILDING,
}


def phase(state: State, desired: Desired) -> Phase:
    """The word the learner sees for a lab."""
    if desired is Desired.DELETED and state not in {_S.DELETED, _S.FAILED}:
        return Phase.DELETING
    if state is _S.REQUESTED:
        return Phase.QUEUED
    return _PHASE_AHEAD.get((state, desired), Phase(state.value))


def retry(lab: LabView, now: datetime, policy: Policy = DEFAULT_POLICY) -> Decision:
    """The Retry button: a FAILED lab starts again from REQUESTED with a fresh budget of attempts."""
    if lab.state is not _S.FAILED:
        raise IllegalTransition(lab.state, _S.REQUESTED)
    deadline = deadline_for(_S.REQUESTED, now, policy.deadline_seconds)
    return Decision(Action.NONE, _S.REQUESTED, deadline, 0, None, None, Reason.RETRIED)
