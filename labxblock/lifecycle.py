"""The lab state machine: our own provider-neutral states, transitions, deadlines.

Pure Python: imports nothing of the project and reads no clock (``now`` is an argument).

A lab row holds what should be (``Desired``) and what is (``State``: our memory of what we last saw
or asked for). Each reconcile pass, the provider's one ``list`` says what the cloud has (``observed``:
a provider ``State``, or None when the stack is not listed). ``decide`` compares the three and returns
one ``Decision``: at most one ``Action`` (one cloud call, or a probe of the lab's port), the state to
record, and the bookkeeping to store. It is level-triggered: only what the row and the cloud say *now*
matters, so a lost task, a crashed worker or a missed tick is repaired by the next pass.

- The cloud is believed. An operation it reports done advances the row; a stack it is already working
  on is adopted; a stack that vanished is recreated (through REQUESTED); a status no operation of ours
  explains sends the row back to REQUESTED, which adopts whatever the cloud has.
- Every transitional state has a deadline. Past it, or when the cloud reports FAILED during one of our
  operations, the pass counts a failure and reissues the operation; after ``max_attempts`` failures the
  lab is FAILED with a ``Reason``. Every call sets ``next_attempt_at`` (exponential backoff): no failure
  is judged and no retry made before it, so a call that has not landed yet is not taken for a failure.
- A failed create deletes its stack before creating again, so nothing leaks. A stack the cloud reports
  FAILED outside our operations is kept (it may hold the learner's work) and the lab turns FAILED.
- FAILED is sticky: ``retry`` (the learner's Retry button) is the only way back up. Desired DELETED is
  still carried out from FAILED, retried at the capped backoff for as long as it takes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
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
    SUSPEND_FAILED = "suspend_failed"
    SUSPEND_TIMEOUT = "suspend_timeout"
    RESUME_FAILED = "resume_failed"
    RESUME_TIMEOUT = "resume_timeout"
    DELETE_FAILED = "delete_failed"
    DELETE_TIMEOUT = "delete_timeout"


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
    reason: Reason | None = None  # set whenever the state changes or a failure is counted


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
    return Decision(Action.NONE, _S.REQUESTED, deadline, 0, None, Reason.RETRIED)


@dataclass(frozen=True)
class _Pass:
    """One decide() call: the inputs and the ways of answering."""

    lab: LabView
    obs: State | None  # None: the cloud has no such stack (not listed, or reported DELETED)
    now: datetime
    policy: Policy

    def due(self) -> bool:
        """May a failure be judged or a retry made? Not before next_attempt_at."""
        return self.lab.next_attempt_at is None or self.now >= self.lab.next_attempt_at

    def overdue(self) -> bool:
        deadline = self.lab.deadline_at
        return deadline is not None and self.now >= deadline and self.due()

    def wait(self, action: Action = Action.NONE) -> Decision:
        lab = self.lab
        deadline = None
        if lab.state in TRANSITIONAL:  # repair a missing deadline rather than stay stuck
            deadline = lab.deadline_at or deadline_for(lab.state, self.now, self.policy.deadline_seconds)
        return Decision(action, None, deadline, lab.attempts, lab.next_attempt_at)

    def move(self, state: State, action: Action, reason: Reason, attempts: int | None = None) -> Decision:
        lab = self.lab
        if state is not lab.state:
            check_transition(lab.state, state)
        attempts = lab.attempts if attempts is None else attempts
        next_at = lab.next_attempt_at
        if settled(state, lab.desired):
            attempts, next_at = 0, None
        if action in CALLS:  # give the call time to land before judging it
            next_at = self.now + self.policy.backoff(attempts, lab.jitter)
        deadline = deadline_for(state, self.now, self.policy.deadline_seconds)
        return Decision(action, None if state is lab.state else state, deadline, attempts, next_at, reason)

    def arrive(self, state: State, reason: Reason) -> Decision:
        """Enter ``state`` now the cloud got there; a stack that is up is probed unless unwanted."""
        if state is not _S.STARTING:
            return self.move(state, Action.NONE, reason)
        if self.lab.desired is Desired.SUSPENDED:
            return self.move(_S.SUSPENDING, Action.SUSPEND, Reason.DESIRED)
        return self.move(_S.STARTING, Action.PROBE, reason)

    def fail(self, reason: Reason, attempts: int) -> Decision:
        """Turn FAILED. A failed create's stack holds no work: delete it so it does not leak."""
        check_transition(self.lab.state, _S.FAILED)
        cleanup = self.lab.state is _S.CREATING and self.obs not in {None, _S.DELETING}
        next_at = self.now + self.policy.backoff(attempts, self.lab.jitter)
        return Decision(Action.DELETE if cleanup else Action.NONE, _S.FAILED, None, attempts, next_at, reason)


# Our operations: (state, observed) that means done, and what means "still at it / not landed yet".
_DONE: Mapping[tuple[State, State | None], State] = {
    (_S.CREATING, _S.READY): _S.STARTING,
    (_S.RESUMING, _S.READY): _S.STARTING,
    (_S.SUSPENDING, _S.SUSPENDED): _S.SUSPENDED,
    (_S.DELETING, None): _S.DELETED,
}
_PENDING: Mapping[State, frozenset[State | None]] = {
    _S.CREATING: frozenset({_S.CREATING, None}),
    _S.SUSPENDING: frozenset({_S.SUSPENDING, _S.READY, _S.RESUMING}),
    _S.RESUMING: frozenset({_S.RESUMING, _S.SUSPENDED, _S.SUSPENDING}),
    _S.DELETING: OBSERVABLE - {None, _S.DELETED, _S.FAILED},
}
_REASONS: Mapping[State, tuple[Reason, Reason]] = {  # (cloud reports failed, deadline passed)
    _S.CREATING: (Reason.CREATE_FAILED, Reason.CREATE_TIMEOUT),
    _S.SUSPENDING: (Reason.SUSPEND_FAILED, Reason.SUSPEND_TIMEOUT),
    _S.RESUMING: (Reason.RESUME_FAILED, Reason.RESUME_TIMEOUT),
    _S.DELETING: (Reason.DELETE_FAILED, Reason.DELETE_TIMEOUT),
}
# Overdue, and the cloud never moved, but it already is what the learner now wants: no failure.
_MOOT: Mapping[tuple[State, State | None, Desired], State] = {
    (_S.SUSPENDING, _S.READY, Desired.UP): _S.READY,
    (_S.RESUMING, _S.SUSPENDED, Desired.SUSPENDED): _S.SUSPENDED,
}


def _reissue(p: _Pass) -> tuple[State, Action]:
    """What to try again after a failure, towards what is desired now."""
    state, up = p.lab.state, p.lab.desired is Desired.UP
    if state is _S.CREATING:  # a stuck or failed stack is deleted first, never created over
        return (_S.CREATING, Action.CREATE) if p.obs is None else (_S.DELETING, Action.DELETE)
    if state in {_S.SUSPENDING, _S.RESUMING}:
        return (_S.RESUMING, Action.RESUME) if up else (_S.SUSPENDING, Action.SUSPEND)
    return {
        _S.REQUESTED: (_S.REQUESTED, Action.NONE),  # keep waiting for a create to be made
        _S.STARTING: (_S.STARTING, Action.PROBE),
        _S.DELETING: (_S.DELETING, Action.DELETE),
    }[state]


def _failure(p: _Pass, reason: Reason) -> Decision:
    """Count a failure: reissue the operation, or turn FAILED once attempts run out."""
    attempts = p.lab.attempts + 1
    if attempts >= p.policy.max_attempts:
        return p.fail(reason, attempts)
    state, action = _reissue(p)
    return p.move(state, action, reason, attempts)


def _unexpected(p: _Pass) -> Decision:
    """The cloud reports what nothing of ours explains."""
    if p.obs is None:
        return p.move(_S.REQUESTED, Action.NONE, Reason.VANISHED)
    if p.obs is _S.DELETING:
        return p.move(_S.DELETING, Action.NONE, Reason.ADOPTED)
    if p.obs is _S.FAILED:
        return p.fail(Reason.STACK_FAILED, p.lab.attempts)
    return p.move(_S.REQUESTED, Action.NONE, Reason.OUT_OF_SYNC)


def _towards_deleted(p: _Pass) -> Decision:
    """Desired deleted, from any state but DELETING (whose own rules finish the job)."""
    state = p.lab.state
    if p.obs is None and state in {_S.REQUESTED, _S.FAILED, _S.DELETED}:
        return p.wait() if state is _S.DELETED else p.move(_S.DELETED, Action.NONE, Reason.DESIRED)
    if p.obs is _S.DELETING:
        return p.move(_S.DELETING, Action.NONE, Reason.ADOPTED)
    if state is _S.FAILED and not p.due():  # a delete that keeps failing is retried at the backoff
        return p.wait()
    # Also with nothing listed: an in-flight create may still land, and delete is idempotent.
    return p.move(_S.DELETING, Action.DELETE, Reason.DESIRED)


def _requested(p: _Pass) -> Decision:
    """No operation of ours yet: start from whatever the cloud has."""
    up = p.lab.desired is Desired.UP
    if p.overdue():
        return _failure(p, Reason.QUEUE_TIMEOUT)
    if p.obs is None and up:
        return p.move(_S.CREATING, Action.CREATE, Reason.DESIRED)
    if p.obs is None:  # nothing to suspend: a lab wanted suspended need not exist
        return p.move(_S.DELETED, Action.NONE, Reason.DESIRED)
    if p.obs is _S.FAILED:  # never reuse a failed stack: delete it, then create afresh
        return p.move(_S.DELETING, Action.DELETE, Reason.STACK_FAILED)
    if p.obs is _S.READY:
        return p.arrive(_S.STARTING, Reason.ADOPTED)
    if p.obs is _S.SUSPENDED and up:
        return p.move(_S.RESUMING, Action.RESUME, Reason.DESIRED)
    return p.move(p.obs, Action.NONE, Reason.ADOPTED)


def _operation(p: _Pass) -> Decision:
    """CREATING, SUSPENDING, RESUMING, DELETING: wait for the cloud, retry, or fail."""
    lab, obs = p.lab, p.obs
    done = _DONE.get((lab.state, obs))
    if done is not None:
        return p.arrive(done, Reason.PROGRESS)
    failed_reason, timeout_reason = _REASONS[lab.state]
    if obs is _S.FAILED:
        return _failure(p, failed_reason) if p.due() else p.wait()
    if obs not in _PENDING[lab.state]:
        return _unexpected(p)
    if not p.overdue():
        return p.wait()
    moot = _MOOT.get((lab.state, obs, lab.desired))
    return _failure(p, timeout_reason) if moot is None else p.move(moot, Action.NONE, Reason.DESIRED)


def _starting(p: _Pass) -> Decision:
    """The stack is up: probe until the lab answers (no need if it is to be suspended anyway)."""
    if p.obs is not _S.READY:
        return _unexpected(p)
    if p.lab.desired is Desired.SUSPENDED:
        return p.move(_S.SUSPENDING, Action.SUSPEND, Reason.DESIRED)
    if p.lab.probe_ok:
        return p.move(_S.READY, Action.NONE, Reason.ANSWERED)
    if p.overdue():
        return _failure(p, Reason.START_TIMEOUT)
    return p.wait(Action.PROBE)


def _stable(p: _Pass) -> Decision:
    """READY or SUSPENDED: act if the learner wants the other one."""
    if p.obs is not p.lab.state:  # the provider reports READY and SUSPENDED in our words
        return _unexpected(p)
    if (p.lab.state, p.lab.desired) == (_S.READY, Desired.SUSPENDED):
        return p.move(_S.SUSPENDING, Action.SUSPEND, Reason.DESIRED)
    if (p.lab.state, p.lab.desired) == (_S.SUSPENDED, Desired.UP):
        return p.move(_S.RESUMING, Action.RESUME, Reason.DESIRED)
    return p.wait()


def _deleted(p: _Pass) -> Decision:
    """No stack: relaunch if wanted up; adopt a stack that turned up."""
    if p.obs is None:
        up = p.lab.desired is Desired.UP
        return p.move(_S.REQUESTED, Action.NONE, Reason.DESIRED) if up else p.wait()
    if p.obs is _S.DELETING:
        return p.move(_S.DELETING, Action.NONE, Reason.ADOPTED)
    return p.move(_S.REQUESTED, Action.NONE, Reason.OUT_OF_SYNC)  # REQUESTED sorts it out


_HANDLERS: Mapping[State, Callable[[_Pass], Decision]] = {
    _S.REQUESTED: _requested,
    _S.CREATING: _operation,
    _S.STARTING: _starting,
    _S.READY: _stable,
    _S.SUSPENDING: _operation,
    _S.SUSPENDED: _stable,
    _S.RESUMING: _operation,
    _S.DELETING: _operation,
    _S.DELETED: _deleted,
    _S.FAILED: _Pass.wait,  # sticky until retry(): the learner sees why and decides
}


def decide(lab: LabView, observed: State | None, now: datetime, policy: Policy = DEFAULT_POLICY) -> Decision:
    """The reconciler's one step for one lab, given what the cloud's list said this pass."""
    _require_aware(now)
    if observed not in OBSERVABLE:
        raise ValueError(f"a provider never reports {observed!r}")
    obs = None if observed is None or observed == _S.DELETED else State(observed)
    p = _Pass(lab, obs, now, policy)
    if lab.desired is Desired.DELETED and lab.state is not _S.DELETING:
        return _towards_deleted(p)
    return _HANDLERS[lab.state](p)
