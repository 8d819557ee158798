"""The reconciler's rules: what one pass decides for one lab (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from labxblock.lifecycle.states import (
    _S,
    CALLS,
    DEFAULT_POLICY,
    HOOKED,
    OBSERVABLE,
    OPERATIONS,
    TRANSITIONAL,
    Action,
    Decision,
    Desired,
    LabView,
    Policy,
    Reason,
    State,
    _require_aware,
    check_transition,
    deadline_for,
    settled,
)

# How long a probe may be on its way (queued, connecting: up to a few seconds) before the lab is
# probed again; a probe that found the lab down answers sooner and makes the lab due at once.
PROBE_WINDOW = timedelta(seconds=15)


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

    @property
    def pending(self) -> datetime | None:
        """When the call in flight was issued, unless this observation shows the cloud at it."""
        if self.lab.state in OPERATIONS and self.obs is self.lab.state:
            return None
        return self.lab.call_pending_since

    def lost(self) -> bool:
        """Did the call in flight go missing? The cloud shows no sign of it past the acceptance window."""
        since = self.pending
        return since is not None and self.now >= since + self.window

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.policy.acceptance_window_seconds)

    def awaiting(self) -> bool:
        """Is a call still on its way, within its acceptance window? What the cloud shows now may be
        from before it (a failure it is to put right, a deadline it is meant to beat): nothing is
        counted against the lab until it has had its window."""
        since = self.pending
        return since is not None and self.now < since + self.window

    def unheeded(self) -> bool:
        """A delete its worker saw answered, yet past the acceptance window the cloud shows the stack
        neither deleting nor gone: it reached the cloud before the stack did (a reset or stop racing
        the create still in flight: Heat answers "not found" while it validates the create), or the
        cloud dropped it. Made again, or the stack would live on until the deadline."""
        since = self.lab.call_issued_at
        return (self.lab.state is _S.DELETING and self.obs in _NOT_DELETING and since is not None
                and self.now >= since + self.window)

    def wait(self, action: Action = Action.NONE) -> Decision:
        lab = self.lab
        deadline = None
        if lab.state in TRANSITIONAL:  # repair a missing deadline rather than stay stuck
            deadline = lab.deadline_at or deadline_for(lab.state, self.now, self.policy.deadline_seconds)
        # Scripts sent for a step no longer wanted (the learner came back) are forgotten: the next
        # suspend runs its own.
        hooks = lab.hook_until if (lab.state, lab.desired) in HOOKED else None
        return Decision(action, None, deadline, lab.attempts, lab.next_attempt_at, self.pending, None, hooks)

    def after_hooks(self, proceed: Callable[[], Decision]) -> Decision:
        """Run the lifecycle scripts due before ``proceed``; proceed once they ended or their time is up.

        A script that fails or hangs never holds the lab longer than ``hook_seconds``: the wait ends
        then, whatever became of it (a lost job too).
        """
        lab = self.lab
        if lab.hook_until is None and lab.hook_seconds <= 0:
            return proceed()
        if lab.hook_until is None:
            until = self.now + timedelta(seconds=lab.hook_seconds)
            return replace(self.wait(Action.HOOK), reason=Reason.SCRIPTS, hook_until=until)
        return self.wait() if self.now < lab.hook_until else proceed()

    def move(self, state: State, action: Action, reason: Reason, attempts: int | None = None) -> Decision:
        lab = self.lab
        if state is not lab.state:
            check_transition(lab.state, state)
        attempts = lab.attempts if attempts is None else attempts
        next_at = lab.next_attempt_at
        if settled(state, lab.desired):
            attempts, next_at = 0, None
        # A new state starts with no call in flight, unless it makes one.
        pending = self.pending if state is lab.state else None
        if action in CALLS:  # give the call time to land before judging it
            next_at, pending = self.now + self.policy.backoff(attempts, lab.jitter), self.now
        elif action is Action.PROBE:
            next_at = self.now + PROBE_WINDOW
        deadline = deadline_for(state, self.now, self.policy.deadline_seconds)
        return Decision(action, None if state is lab.state else state, deadline, attempts, next_at, pending,
                        reason)

    def probe(self) -> Decision:
        """Probe the lab again, unless the last probe may still be on its way: one sent less than
        ``PROBE_WINDOW`` ago that has not answered (a probe that found the lab down makes it due at
        once). So a lab has one probe in flight, however many passes a backed-up queue lets by."""
        if not self.due():
            return self.wait()
        return replace(self.wait(Action.PROBE), next_attempt_at=self.now + PROBE_WINDOW)

    def reissue(self, state: State, action: Action) -> Decision:
        """Issue a lost call again. No failure is counted, and the state keeps its deadline: a call
        that is lost every time still ends at the deadline (the backstop)."""
        if state is not self.lab.state:
            return self.move(state, action, Reason.NOT_ACCEPTED)
        lab = self.lab
        deadline = lab.deadline_at or deadline_for(state, self.now, self.policy.deadline_seconds)
        next_at = self.now + self.policy.backoff(lab.attempts, lab.jitter)
        return Decision(action, None, deadline, lab.attempts, next_at, self.now, Reason.NOT_ACCEPTED)

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
        action = Action.DELETE if cleanup else Action.NONE
        return Decision(action, _S.FAILED, None, attempts, next_at, self.now if cleanup else None, reason)


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
_NOT_DELETING = _PENDING[_S.DELETING] - {_S.DELETING}  # a stack there, and no delete at work on it
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


def _lost(p: _Pass) -> Decision:
    """The call never showed in the cloud: issue it again, towards what is desired now."""
    moot = _MOOT.get((p.lab.state, p.obs, p.lab.desired))
    if moot is not None:
        return p.move(moot, Action.NONE, Reason.DESIRED)
    return p.reissue(*_reissue(p))


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
    if obs is _S.FAILED:  # counted once the call made to put it right had its window
        return _failure(p, failed_reason) if p.due() and not p.awaiting() else p.wait()
    if obs not in _PENDING[lab.state]:
        return _unexpected(p)
    if p.overdue() and not p.awaiting():  # the backstop; a call that failed for good is made due at once
        moot = _MOOT.get((lab.state, obs, lab.desired))
        return _failure(p, timeout_reason) if moot is None else p.move(moot, Action.NONE, Reason.DESIRED)
    if p.lost() or p.unheeded():  # long before the deadline: a lost call need not cost the whole deadline
        return _lost(p)
    return p.wait()


def _starting(p: _Pass) -> Decision:
    """The stack is up: probe until the lab answers (no need if it is to be suspended anyway)."""
    if p.obs is not _S.READY:
        return _unexpected(p)
    if p.lab.desired is Desired.SUSPENDED:
        return p.move(_S.SUSPENDING, Action.SUSPEND, Reason.DESIRED)
    if p.lab.probe_ok:  # the setup or after-resume scripts run before the learner is told "ready"
        return p.after_hooks(lambda: p.move(_S.READY, Action.NONE, Reason.ANSWERED))
    if p.overdue():
        return _failure(p, Reason.START_TIMEOUT)
    return p.probe()


def _stable(p: _Pass) -> Decision:
    """READY or SUSPENDED: act if the learner wants the other one."""
    if p.obs is not p.lab.state:  # the provider reports READY and SUSPENDED in our words
        return _unexpected(p)
    if (p.lab.state, p.lab.desired) == (_S.READY, Desired.SUSPENDED):  # before-suspend scripts first
        return p.after_hooks(lambda: p.move(_S.SUSPENDING, Action.SUSPEND, Reason.DESIRED))
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
