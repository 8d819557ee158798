"""The reconciler's decisions, exhaustive and table-driven, and convergence over time."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labxblock.lifecycle import (
    ALLOWED,
    CALLS,
    DEFAULT_POLICY,
    STABLE,
    TRANSITIONAL,
    Action,
    Decision,
    Desired,
    LabView,
    Policy,
    Reason,
    State,
    backoff_seconds,
    deadline_for,
    decide,
    retry,
    settled,
)
from labxblock.lifecycle.rules import PROBE_WINDOW
from tests.unit.lifecycle_cases import (
    COUNTED,
    NOW,
    OBSERVED,
    SECOND,
    A,
    D,
    S,
    assert_valid,
    lab,
    overdue,
)

# --- decide: exhaustive ------------------------------------------------------------------------

# Timing and bookkeeping variants applied to every (desired, state, observed).
VARIANTS = {
    "fresh": {},
    "overdue": {"deadline_at": NOW - SECOND},
    "gated": {"deadline_at": NOW - SECOND, "next_attempt_at": NOW + SECOND, "attempts": 2},
    "last_attempt": {"deadline_at": NOW - SECOND, "attempts": DEFAULT_POLICY.max_attempts - 1},
    "probe_ok": {"probe_ok": True},
    "no_deadline": {"deadline_at": None},
    "call_lost": {"call_pending_since": NOW - 60 * SECOND},
    "call_in_flight": {"call_pending_since": NOW - 10 * SECOND},
    "call_answered_long_ago": {"call_issued_at": NOW - 60 * SECOND},
    "scripts_due": {"probe_ok": True, "hook_seconds": 30},
    "scripts_running": {"probe_ok": True, "hook_seconds": 30, "hook_until": NOW + SECOND},
    "scripts_done": {"probe_ok": True, "hook_seconds": 30, "hook_until": NOW},
}


def test_every_combination_has_a_valid_decision():
    seen_actions, seen_moves, checked = set(), set(), 0
    for desired, state, observed, variant in itertools.product(Desired, State, OBSERVED, VARIANTS):
        kw = dict(VARIANTS[variant])
        if state in STABLE:
            kw["deadline_at"] = None
        view = lab(state, desired, **kw)
        d = decide(view, observed, NOW)
        assert_valid(view, observed, d, NOW)
        seen_actions.add(d.action)
        seen_moves.add((state, d.state))
        checked += 1
    assert checked == 3 * 10 * 9 * len(VARIANTS)
    assert seen_actions == set(Action)
    # Every allowed transition is one decide() really makes, except Retry (the labs layer's).
    allowed = {(a, b) for a, targets in ALLOWED.items() for b in targets}
    assert allowed - seen_moves == {(S.FAILED, S.REQUESTED)}


@pytest.mark.parametrize("observed", [S.REQUESTED, S.STARTING, "starting", "CREATE_COMPLETE"])
def test_decide_refuses_what_no_provider_reports(observed):
    with pytest.raises(ValueError, match="never reports"):
        decide(lab(S.READY), observed, NOW)


# --- decide: the cases that matter, one row each ----------------------------------------------

CASES = [
    # desired, state, observed, lab extras, -> action, new state, reason
    (D.UP, S.REQUESTED, None, {}, A.CREATE, S.CREATING, Reason.DESIRED),
    (D.UP, S.CREATING, None, {}, A.NONE, None, None),  # the create may not have landed yet
    (D.UP, S.CREATING, S.CREATING, {}, A.NONE, None, None),
    (D.UP, S.CREATING, S.READY, {}, A.PROBE, S.STARTING, Reason.PROGRESS),
    (D.SUSPENDED, S.CREATING, S.CREATING, {}, A.NONE, None, None),  # finish creating first
    (D.SUSPENDED, S.CREATING, S.READY, {}, A.SUSPEND, S.SUSPENDING, Reason.DESIRED),
    (D.UP, S.STARTING, S.READY, {}, A.PROBE, None, None),
    (D.UP, S.STARTING, S.READY, {"probe_ok": True}, A.NONE, S.READY, Reason.ANSWERED),
    (D.SUSPENDED, S.STARTING, S.READY, {}, A.SUSPEND, S.SUSPENDING, Reason.DESIRED),
    (D.UP, S.READY, S.READY, {}, A.NONE, None, None),
    (D.SUSPENDED, S.READY, S.READY, {}, A.SUSPEND, S.SUSPENDING, Reason.DESIRED),
    (D.SUSPENDED, S.SUSPENDING, S.READY, {}, A.NONE, None, None),  # suspend not landed yet
    (D.SUSPENDED, S.SUSPENDING, S.SUSPENDED, {}, A.NONE, S.SUSPENDED, Reason.PROGRESS),
    (D.UP, S.SUSPENDING, S.SUSPENDED, {}, A.NONE, S.SUSPENDED, Reason.PROGRESS),  # then resume
    (D.UP, S.SUSPENDED, S.SUSPENDED, {}, A.RESUME, S.RESUMING, Reason.DESIRED),
    # lifecycle scripts: sent, waited for until they end or their time is up, never failing the lab
    (D.UP, S.STARTING, S.READY, {"probe_ok": True, "hook_seconds": 30}, A.HOOK, None, Reason.SCRIPTS),
    (D.UP, S.STARTING, S.READY, {"probe_ok": True, "hook_seconds": 30, "hook_until": NOW + SECOND}, A.NONE,
     None, None),
    (D.UP, S.STARTING, S.READY, {"probe_ok": True, "hook_seconds": 30, "hook_until": NOW}, A.NONE, S.READY,
     Reason.ANSWERED),
    (D.UP, S.STARTING, S.READY, {"probe_ok": True, "hook_seconds": 30, "hook_until": NOW + SECOND,
                                 "deadline_at": NOW - SECOND}, A.NONE, None, None),  # not a start timeout
    (D.UP, S.STARTING, S.READY, {"hook_seconds": 30}, A.PROBE, None, None),  # scripts once it answers
    (D.SUSPENDED, S.STARTING, S.READY, {"probe_ok": True, "hook_seconds": 30}, A.SUSPEND, S.SUSPENDING,
     Reason.DESIRED),  # never ready for the learner: no setup before a suspend
    (D.SUSPENDED, S.READY, S.READY, {"hook_seconds": 30}, A.HOOK, None, Reason.SCRIPTS),
    (D.SUSPENDED, S.READY, S.READY, {"hook_seconds": 30, "hook_until": NOW + SECOND}, A.NONE, None, None),
    (D.SUSPENDED, S.READY, S.READY, {"hook_seconds": 30, "hook_until": NOW}, A.SUSPEND, S.SUSPENDING,
     Reason.DESIRED),
    (D.DELETED, S.READY, S.READY, {"hook_seconds": 30}, A.DELETE, S.DELETING, Reason.DESIRED),  # no script
    (D.UP, S.READY, S.SUSPENDED, {"hook_seconds": 30}, A.NONE, S.REQUESTED, Reason.OUT_OF_SYNC),
    (D.SUSPENDED, S.SUSPENDED, S.SUSPENDED, {}, A.NONE, None, None),
    (D.UP, S.RESUMING, S.SUSPENDED, {}, A.NONE, None, None),  # resume not landed yet
    (D.UP, S.RESUMING, S.READY, {}, A.PROBE, S.STARTING, Reason.PROGRESS),
    (D.SUSPENDED, S.RESUMING, S.READY, {}, A.SUSPEND, S.SUSPENDING, Reason.DESIRED),
    # the stack vanished: start again (and recreate) if still wanted
    (D.UP, S.READY, None, {}, A.NONE, S.REQUESTED, Reason.VANISHED),
    (D.UP, S.READY, S.DELETED, {}, A.NONE, S.REQUESTED, Reason.VANISHED),
    (D.UP, S.SUSPENDED, None, {}, A.NONE, S.REQUESTED, Reason.VANISHED),
    (D.SUSPENDED, S.REQUESTED, None, {}, A.NONE, S.DELETED, Reason.DESIRED),  # nothing to suspend
    # the cloud does what we did not ask: follow it
    (D.UP, S.READY, S.DELETING, {}, A.NONE, S.DELETING, Reason.ADOPTED),
    (D.UP, S.READY, S.SUSPENDED, {}, A.NONE, S.REQUESTED, Reason.OUT_OF_SYNC),
    (D.UP, S.READY, S.FAILED, {}, A.NONE, S.FAILED, Reason.STACK_FAILED),  # keep the stack
    (D.UP, S.REQUESTED, S.READY, {}, A.PROBE, S.STARTING, Reason.ADOPTED),
    (D.UP, S.REQUESTED, S.SUSPENDED, {}, A.RESUME, S.RESUMING, Reason.DESIRED),
    (D.SUSPENDED, S.REQUESTED, S.SUSPENDED, {}, A.NONE, S.SUSPENDED, Reason.ADOPTED),
    (D.UP, S.REQUESTED, S.CREATING, {}, A.NONE, S.CREATING, Reason.ADOPTED),
    (D.UP, S.REQUESTED, S.DELETING, {}, A.NONE, S.DELETING, Reason.ADOPTED),
    (D.UP, S.REQUESTED, S.FAILED, {}, A.DELETE, S.DELETING, Reason.STACK_FAILED),  # never reuse
    # deleting
    (D.DELETED, S.READY, S.READY, {}, A.DELETE, S.DELETING, Reason.DESIRED),
    (D.DELETED, S.CREATING, None, {}, A.DELETE, S.DELETING, Reason.DESIRED),  # a create may land
    (D.DELETED, S.REQUESTED, None, {}, A.NONE, S.DELETED, Reason.DESIRED),
    (D.DELETED, S.DELETING, S.DELETING, {}, A.NONE, None, None),
    (D.DELETED, S.DELETING, S.DELETED, {}, A.NONE, S.DELETED, Reason.PROGRESS),
    (D.DELETED, S.DELETING, None, {}, A.NONE, S.DELETED, Reason.PROGRESS),
    (D.DELETED, S.DELETED, None, {}, A.NONE, None, None),
    (D.DELETED, S.DELETED, S.READY, {}, A.DELETE, S.DELETING, Reason.DESIRED),  # it came back
    (D.UP, S.DELETING, None, {}, A.NONE, S.DELETED, Reason.PROGRESS),  # then relaunch
    (D.UP, S.DELETED, None, {}, A.NONE, S.REQUESTED, Reason.DESIRED),
    (D.SUSPENDED, S.DELETED, None, {}, A.NONE, None, None),
    # FAILED is sticky unless the lab is to be deleted
    (D.UP, S.FAILED, None, {}, A.NONE, None, None),
    (D.UP, S.FAILED, S.READY, {}, A.NONE, None, None),
    (D.SUSPENDED, S.FAILED, S.FAILED, {}, A.NONE, None, None),
    (D.DELETED, S.FAILED, S.FAILED, {}, A.DELETE, S.DELETING, Reason.DESIRED),
    (D.DELETED, S.FAILED, S.FAILED, {"next_attempt_at": NOW + SECOND}, A.NONE, None, None),
    (D.DELETED, S.FAILED, None, {}, A.NONE, S.DELETED, Reason.DESIRED),
    # overdue: the cloud never moved, but it already is what the learner now wants
    (D.UP, S.SUSPENDING, S.READY, {"deadline_at": NOW}, A.NONE, S.READY, Reason.DESIRED),
    (D.SUSPENDED, S.RESUMING, S.SUSPENDED, {"deadline_at": NOW}, A.NONE, S.SUSPENDED, Reason.DESIRED),
    # overdue and failed: retry towards what is wanted now
    (D.UP, S.CREATING, None, {"deadline_at": NOW}, A.CREATE, None, Reason.CREATE_TIMEOUT),
    (D.UP, S.CREATING, S.CREATING, {"deadline_at": NOW}, A.DELETE, S.DELETING, Reason.CREATE_TIMEOUT),
    (D.UP, S.CREATING, S.FAILED, {}, A.DELETE, S.DELETING, Reason.CREATE_FAILED),
    (D.SUSPENDED, S.SUSPENDING, S.FAILED, {}, A.SUSPEND, None, Reason.SUSPEND_FAILED),
    (D.UP, S.SUSPENDING, S.FAILED, {}, A.RESUME, S.RESUMING, Reason.SUSPEND_FAILED),
    (D.UP, S.RESUMING, S.RESUMING, {"deadline_at": NOW}, A.RESUME, None, Reason.RESUME_TIMEOUT),
    (D.UP, S.STARTING, S.READY, {"deadline_at": NOW}, A.PROBE, None, Reason.START_TIMEOUT),
    (D.UP, S.DELETING, S.FAILED, {}, A.DELETE, None, Reason.DELETE_FAILED),
    (D.UP, S.REQUESTED, None, {"deadline_at": NOW}, A.NONE, None, Reason.QUEUE_TIMEOUT),
    # a call the cloud shows no sign of within the acceptance window (45 s) is issued again, long
    # before the deadline, with no failure counted; one the cloud is at work on is not
    (D.UP, S.CREATING, None, {"call_pending_since": NOW - 44 * SECOND}, A.NONE, None, None),
    (D.UP, S.CREATING, None, {"call_pending_since": NOW - 45 * SECOND}, A.CREATE, None, Reason.NOT_ACCEPTED),
    (D.UP, S.CREATING, S.CREATING, {"call_pending_since": NOW - 99 * SECOND}, A.NONE, None, None),
    (D.SUSPENDED, S.SUSPENDING, S.READY, {"call_pending_since": NOW - 60 * SECOND}, A.SUSPEND, None,
     Reason.NOT_ACCEPTED),
    (D.UP, S.SUSPENDING, S.READY, {"call_pending_since": NOW - 60 * SECOND}, A.NONE, S.READY,
     Reason.DESIRED),  # a lost suspend of a lab wanted up again: nothing to reissue
    (D.UP, S.RESUMING, S.SUSPENDED, {"call_pending_since": NOW - 60 * SECOND}, A.RESUME, None,
     Reason.NOT_ACCEPTED),
    (D.UP, S.DELETING, S.CREATING, {"call_pending_since": NOW - 60 * SECOND}, A.DELETE, None,
     Reason.NOT_ACCEPTED),  # e.g. a stack its dead engine left CREATE_IN_PROGRESS
    (D.UP, S.DELETING, S.DELETING, {"call_pending_since": NOW - 60 * SECOND}, A.NONE, None, None),
    # a delete its worker saw answered ("not found": it raced the create still in flight), and past the
    # window the cloud shows the stack neither deleting nor gone: made again, not left to the deadline
    (D.UP, S.DELETING, S.CREATING, {"call_issued_at": NOW - 45 * SECOND}, A.DELETE, None,
     Reason.NOT_ACCEPTED),
    (D.DELETED, S.DELETING, S.READY, {"call_issued_at": NOW - 60 * SECOND}, A.DELETE, None,
     Reason.NOT_ACCEPTED),
    (D.UP, S.DELETING, S.CREATING, {"call_issued_at": NOW - 44 * SECOND}, A.NONE, None, None),
    (D.UP, S.DELETING, S.DELETING, {"call_issued_at": NOW - 60 * SECOND}, A.NONE, None, None),
    (D.UP, S.DELETING, None, {"call_issued_at": NOW - 60 * SECOND}, A.NONE, S.DELETED, Reason.PROGRESS),
    # no failure is counted while the call made to put it right is on its way, within its window
    (D.UP, S.DELETING, S.FAILED, {"call_pending_since": NOW - 10 * SECOND}, A.NONE, None, None),
    (D.UP, S.DELETING, S.FAILED, {"call_pending_since": NOW - 45 * SECOND}, A.DELETE, None,
     Reason.DELETE_FAILED),
    (D.UP, S.RESUMING, S.SUSPENDED, {"call_pending_since": NOW - 10 * SECOND, "deadline_at": NOW}, A.NONE,
     None, None),
    (D.UP, S.READY, S.READY, {"call_pending_since": NOW - 60 * SECOND}, A.NONE, None, None),
    # past the deadline (or made due by a call that failed for good), a lost call is a counted failure
    (D.UP, S.RESUMING, S.SUSPENDED, {"call_pending_since": NOW - 60 * SECOND, "deadline_at": NOW}, A.RESUME,
     None, Reason.RESUME_TIMEOUT),
    # a failure is not judged before next_attempt_at (the last call may not have landed)
    (D.UP, S.CREATING, S.FAILED, {"next_attempt_at": NOW + SECOND}, A.NONE, None, None),
    # a lab being probed is not probed again while its probe may be on its way; once it answered
    # "down" (the worker makes it due), or the window passed, it is
    (D.UP, S.STARTING, S.READY, {"next_attempt_at": NOW + SECOND}, A.NONE, None, None),
    (D.UP, S.STARTING, S.READY, {"next_attempt_at": NOW}, A.PROBE, None, None),
    (
        D.UP,
        S.SUSPENDING,
        S.SUSPENDING,
        {"deadline_at": NOW, "next_attempt_at": NOW + SECOND},
        A.NONE,
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("desired", "state", "observed", "extra", "action", "new_state", "reason"),
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}-{'-'.join(c[3]) or 'fresh'}" for c in CASES],
)
def test_decide(desired, state, observed, extra, action, new_state, reason):
    view = lab(state, desired, **extra)
    d = decide(view, observed, NOW)
    assert (d.action, d.state, d.reason) == (action, new_state, reason)
    assert_valid(view, observed, d, NOW)


@pytest.mark.parametrize("start", [S.CREATING, S.RESUMING, S.STARTING])
def test_a_probe_holds_off_the_next_for_the_probe_window(start):
    """However often a backed-up queue lets the passes by, a lab has one probe on its way at a time."""
    view = lab(start, D.UP)
    first = decide(view, S.READY, NOW)
    assert first.action is A.PROBE and first.next_attempt_at == NOW + PROBE_WINDOW
    view = assert_valid(view, S.READY, first, NOW)
    probes = [decide(view, S.READY, NOW + k * SECOND).action for k in range(1, 15)]
    assert probes == [A.NONE] * 14
    assert decide(view, S.READY, NOW + PROBE_WINDOW).action is A.PROBE


@pytest.mark.parametrize("state", sorted(set(State) - {S.DELETING, S.DELETED}))
@pytest.mark.parametrize("observed", [S.READY, S.SUSPENDED, S.CREATING, S.FAILED])
def test_desired_deleted_deletes_from_any_state(state, observed):
    d = decide(lab(state, D.DELETED), observed, NOW)
    assert (d.action, d.state) == (A.DELETE, S.DELETING)


def test_plain_strings_from_the_database_are_understood():
    view = LabView(desired="suspended", state="ready")  # type: ignore[arg-type]
    assert (view.state, view.desired) == (S.READY, D.SUSPENDED)
    d = decide(view, "ready", NOW)  # type: ignore[arg-type]
    assert (d.action, d.state) == (A.SUSPEND, S.SUSPENDING)
    assert decide(lab(S.DELETING, D.DELETED), "deleted", NOW).state is S.DELETED  # type: ignore[arg-type]


def test_a_missing_deadline_is_repaired_not_left_stuck():
    d = decide(lab(S.CREATING, deadline_at=None), S.CREATING, NOW)
    assert d.deadline_at == deadline_for(S.CREATING, NOW)


def test_counted_failure_spaces_the_retry_by_backoff_and_refreshes_the_deadline():
    view = overdue(S.RESUMING, attempts=2, jitter=0.5)
    d = decide(view, S.RESUMING, NOW)
    assert (d.action, d.attempts) == (A.RESUME, 3)
    assert d.next_attempt_at == NOW + timedelta(seconds=backoff_seconds(3, jitter=0.5))
    assert d.deadline_at == deadline_for(S.RESUMING, NOW)


def test_scripts_sent_for_a_suspend_no_longer_wanted_are_forgotten():
    running = lab(S.READY, D.SUSPENDED, hook_seconds=30, hook_until=NOW + 10 * SECOND)
    back = decide(replace(running, desired=D.UP), S.READY, NOW)
    assert (back.action, back.state, back.hook_until) == (A.NONE, None, None)
    again = decide(replace(running, desired=D.UP).after(back), S.READY, NOW + SECOND)  # still up: nothing
    assert again.hook_until is None
    later = decide(replace(running.after(back), desired=D.SUSPENDED), S.READY, NOW + 60 * SECOND)
    assert (later.action, later.hook_until) == (A.HOOK, NOW + 90 * SECOND), "the next suspend runs its own"


def test_settling_resets_attempts():
    view = lab(S.SUSPENDING, D.SUSPENDED, attempts=3, next_attempt_at=NOW - SECOND)
    d = decide(view, S.SUSPENDED, NOW)
    assert (d.state, d.attempts, d.next_attempt_at) == (S.SUSPENDED, 0, None)


# --- a small cloud that follows the calls, to run decide() over time ---------------------------

_CLOUD_DONE = {S.CREATING: S.READY, S.SUSPENDING: S.SUSPENDED, S.RESUMING: S.READY, S.DELETING: None}


@dataclass
class Cloud:
    """One stack: a call lands ``lag`` passes after it is made, completes ``ticks`` passes later."""

    status: State | None = None
    ticks: int = 1
    lag: int = 0
    fail_creates: bool = False
    drop: int = 0  # the next calls lost on the way (a worker killed, a broker emptied)
    left: int = 0
    inbox: list[list] = field(default_factory=list)  # [passes until it lands, action]
    accepted: bool = False  # a call landed this pass: its worker records that the cloud took it

    def call(self, action: Action) -> None:
        self.accepted = False
        if action in CALLS and self.drop:
            self.drop -= 1
        elif action in CALLS:
            self.inbox.append([self.lag, action])
        self._land()

    def tick(self) -> None:
        if self.status in _CLOUD_DONE:
            self.left -= 1
            if self.left <= 0:
                failed = self.status is S.CREATING and self.fail_creates
                self.status = S.FAILED if failed else _CLOUD_DONE[self.status]
        for item in self.inbox:
            item[0] -= 1
        self._land()

    def _land(self) -> None:
        for item in [i for i in self.inbox if i[0] <= 0]:
            self.inbox.remove(item)
            self.accepted = True
            action = item[1]
            if action is A.CREATE and self.status is None:
                self.status, self.left = S.CREATING, self.ticks
            elif action is not A.CREATE and self.status not in {None, S.DELETING}:
                self.status = {A.SUSPEND: S.SUSPENDING, A.RESUME: S.RESUMING, A.DELETE: S.DELETING}[action]
                self.left = self.ticks


def agrees(view: LabView, cloud: Cloud) -> bool:
    """Settled, and the row says what the cloud has."""
    expected = {S.READY: S.READY, S.SUSPENDED: S.SUSPENDED, S.DELETED: None}.get(view.state, "-")
    return settled(view.state, view.desired) and cloud.status == expected


def step(view: LabView, cloud: Cloud, now: datetime, policy: Policy, scripts_end: bool = True
         ) -> tuple[LabView, Decision]:
    """One reconcile pass: decide on what the cloud lists, store, act, let the cloud work.

    Lifecycle scripts sent end at once (their worker brings ``hook_until`` forward), unless they hang.
    """
    observed = cloud.status
    d = decide(view, observed, now, policy)
    view = assert_valid(view, observed, d, now)
    if d.action is A.PROBE:
        view = replace(view, probe_ok=cloud.status is S.READY)  # a cooperative lab answers
    if d.action is A.HOOK and scripts_end:
        view = replace(view, hook_until=now)
    cloud.call(d.action)
    cloud.tick()
    if cloud.accepted:
        view = replace(view, call_pending_since=None)
    return view, d


FAST = Policy(
    deadline_seconds={s.value: 60 for s in TRANSITIONAL},
    max_attempts=4,
    retry_backoff_seconds=5,
    retry_backoff_max_seconds=40,
)


@pytest.mark.parametrize(
    ("desired", "start", "cloud", "at_most"),
    [
        (D.UP, S.REQUESTED, None, 3),  # create; probe; ready
        (D.SUSPENDED, S.READY, S.READY, 2),
        (D.UP, S.SUSPENDED, S.SUSPENDED, 3),
        (D.DELETED, S.READY, S.READY, 2),
        (D.UP, S.DELETED, None, 4),  # relaunch after the reaper
        (D.UP, S.READY, None, 4),  # the stack vanished: recreate
    ],
)
def test_cooperative_cloud_converges_promptly(desired, start, cloud, at_most):
    view, sim, now, passes = lab(start, desired), Cloud(status=cloud), NOW, 0
    while not agrees(view, sim) and passes <= at_most:
        view, _ = step(view, sim, now, DEFAULT_POLICY)
        now, passes = now + 5 * SECOND, passes + 1
    assert agrees(view, sim), (view, sim)
    assert passes == at_most


def test_a_reset_racing_the_create_in_flight_deletes_the_stack_within_a_window_not_the_deadline():
    """The learner resets while the create is on its way. The delete reaches the cloud first (nothing
    to delete: its worker says done); the create lands after it, before the next pass looks. The
    delete is made again once its window passed, and the lab is made afresh, long before the 1,200 s
    deadline."""
    view, sim, now = lab(S.REQUESTED), Cloud(lag=2, ticks=2), NOW
    view, d = step(view, sim, now, DEFAULT_POLICY)
    assert (d.action, view.state) == (A.CREATE, S.CREATING)
    view = replace(view, state=S.DELETING, deadline_at=deadline_for(S.DELETING, now),  # the reset
                   call_pending_since=now, call_issued_at=now)
    sim.drop = 1
    sim.call(A.DELETE)  # before the create landed: no stack to delete yet, nothing done
    view = replace(view, call_pending_since=None)  # its worker: "not found", done
    sim.tick()  # the create lands
    assert sim.status is S.CREATING
    reasons = []
    while not (view.state is S.READY and sim.status is S.READY) and now - NOW < 300 * SECOND:
        now += 5 * SECOND
        view, d = step(view, sim, now, DEFAULT_POLICY)
        reasons.append(d.reason)
    assert (view.state, sim.status) == (S.READY, S.READY)
    assert Reason.NOT_ACCEPTED in reasons and not COUNTED & set(reasons)
    assert now - NOW <= (DEFAULT_POLICY.acceptance_window_seconds + 60) * SECOND


@pytest.mark.parametrize("scripts_end", [True, False])
def test_scripts_run_once_before_ready_and_before_a_suspend_and_never_hold_the_lab_longer(scripts_end):
    """Passes every second; the scripts may take 30 s. Ended ones release the lab at the next pass,
    hanging ones after their 30 s; either way each runs once and nothing is counted as a failure."""
    view, sim, now = lab(S.REQUESTED, hook_seconds=30), Cloud(), NOW
    trail: list[tuple[Action, State]] = []
    for desired in (D.UP, D.SUSPENDED):
        view, started = replace(view, desired=desired), now
        while not agrees(view, sim) and now < NOW + 600 * SECOND:
            view, d = step(view, sim, now, DEFAULT_POLICY, scripts_end)
            trail += [(d.action, view.state)] if d.action is not A.NONE or d.state is not None else []
            assert view.attempts == 0
            now += SECOND
        assert agrees(view, sim)
        waited = (now - started).total_seconds()
        assert waited <= (6 if scripts_end else 35), waited
    actions = [a for a, _ in trail if a not in (A.NONE, A.PROBE)]
    assert actions == [A.CREATE, A.HOOK, A.HOOK, A.SUSPEND]
    hooks = [i for i, (a, _) in enumerate(trail) if a is A.HOOK]
    assert trail[hooks[0] + 1] == (A.NONE, S.READY), "ready once the setup scripts ended or timed out"
    assert trail[hooks[1]][1] is S.READY and trail[hooks[1] + 1] == (A.SUSPEND, S.SUSPENDING)


def test_failed_create_is_deleted_before_each_retry_then_fails_visibly():
    view, sim, now = lab(S.REQUESTED), Cloud(fail_creates=True), NOW
    actions, seen = [], []
    for _ in range(500):
        seen.append(sim.status)
        view, d = step(view, sim, now, FAST)
        actions.append(d.action)
        if view.state is S.FAILED:
            break
        now += 5 * SECOND
    assert view.state is S.FAILED and d.reason is Reason.CREATE_FAILED
    assert view.attempts == FAST.max_attempts
    calls = [a for a in actions if a is not A.NONE and a is not A.PROBE]
    assert calls == [A.CREATE, A.DELETE] * FAST.max_attempts, "one create per attempt, each cleaned up"
    sim.tick()
    assert sim.status in {S.DELETING, None}, "the last failed stack is being deleted: no leak"
    # FAILED stays put (no more calls) until the learner presses Retry.
    for _ in range(20):
        now += 60 * SECOND
        view, d = step(view, sim, now, FAST)
        assert (d.action, view.state) == (A.NONE, S.FAILED)
    assert sim.status is None


@pytest.mark.parametrize(
    ("start", "desired", "cloud"),
    [(S.REQUESTED, D.UP, S.FAILED), (S.READY, D.SUSPENDED, S.READY), (S.FAILED, D.DELETED, S.FAILED)],
)
def test_a_call_that_lands_a_pass_late_is_not_taken_for_a_failure(start, desired, cloud):
    """Passes every 5 s; the list shows a call's effect 10 s late, the first backoff is 10 s."""
    view, sim, now, passes = lab(start, desired), Cloud(status=cloud, lag=2), NOW, 0
    while not agrees(view, sim) and passes < 20:
        view, d = step(view, sim, now, DEFAULT_POLICY)
        assert d.reason not in COUNTED and d.attempts == 0, (passes, view, sim)
        now, passes = now + 5 * SECOND, passes + 1
    assert agrees(view, sim)


@pytest.mark.parametrize("lost", [1, 2, 3])
@pytest.mark.parametrize(
    ("start", "desired", "cloud"),
    [(S.REQUESTED, D.UP, None), (S.READY, D.SUSPENDED, S.READY), (S.SUSPENDED, D.UP, S.SUSPENDED),
     (S.READY, D.DELETED, S.READY)],
)
def test_a_lost_call_is_issued_again_within_the_acceptance_window_not_the_deadline(start, desired, cloud,
                                                                                  lost):
    """Passes every second with the default policy (deadlines of 10 to 20 minutes, a 45 s window)."""
    view, sim, now, reissued = lab(start, desired), Cloud(status=cloud, drop=lost), NOW, 0
    while not agrees(view, sim) and now < NOW + 600 * SECOND:
        view, d = step(view, sim, now, DEFAULT_POLICY)
        assert d.reason not in COUNTED and view.attempts == 0, "a lost call is no failure"
        reissued += d.reason is Reason.NOT_ACCEPTED
        now += SECOND
    assert agrees(view, sim)
    assert reissued == lost
    window = DEFAULT_POLICY.acceptance_window_seconds
    assert now - NOW <= lost * (window + 1) * SECOND + 5 * SECOND


def test_stuck_operation_is_retried_with_growing_backoff_then_failed():
    policy = Policy(
        deadline_seconds={"suspending": 60},
        max_attempts=5,
        retry_backoff_seconds=30,
        retry_backoff_max_seconds=200,
    )
    view, now = (
        lab(S.SUSPENDING, D.SUSPENDED, deadline_at=deadline_for(S.SUSPENDING, NOW, {"suspending": 60})),
        NOW,
    )
    calls_at = [NOW]
    while view.state is S.SUSPENDING:
        d = decide(view, S.SUSPENDING, now, policy)  # the cloud never finishes
        view = assert_valid(view, S.SUSPENDING, d, now)
        if d.action is A.SUSPEND or d.state is S.FAILED:
            calls_at.append(now)
        now += SECOND
    assert view.state is S.FAILED and d.reason is Reason.SUSPEND_TIMEOUT and view.attempts == 5
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(calls_at)]
    # Each gap is the later of the deadline (60 s) and backoff(attempts) (30 s doubling, cap 200 s).
    assert gaps == [60, 60, 120, 200, 200]


# --- properties over random histories ----------------------------------------------------------

events = st.one_of(
    st.tuples(st.just("desire"), st.sampled_from(list(Desired))),
    st.tuples(st.just("observe"), st.sampled_from(OBSERVED)),
    st.tuples(st.just("observe"), st.sampled_from(OBSERVED)),  # twice as likely as the rest
    st.tuples(st.just("wait"), st.integers(0, 3_000)),
    st.tuples(st.just("probe"), st.booleans()),
    st.tuples(st.just("retry"), st.none()),
    st.tuples(st.just("accepted"), st.none()),  # a worker records that the cloud took its call
    st.tuples(st.just("scripts_end"), st.none()),  # the lifecycle scripts' worker is done
)
# Any row a lab could be in: any state (with its deadline), any desired, any attempts so far.
rows = st.builds(
    lambda state, desired, attempts, pending, scripts, answered: lab(
        state, desired, attempts=attempts, deadline_at=deadline_for(state, NOW, FAST.deadline_seconds),
        call_pending_since=None if pending is None else NOW - pending * SECOND, hook_seconds=scripts,
        # the last call's issue, answered by its worker or not (a pending one's is its own)
        call_issued_at=NOW - (pending if pending is not None else answered) * SECOND,
    ),
    st.sampled_from(list(State)),
    st.sampled_from(list(Desired)),
    st.integers(0, FAST.max_attempts - 1),
    st.none() | st.integers(0, 120),
    st.sampled_from([0, 0, 30]),
    st.integers(0, 120),
)


def play(view: LabView, history, policy: Policy) -> tuple[LabView, datetime]:
    """Apply random desired changes, cloud observations, time and probes; check every decision."""
    now = NOW
    for kind, value in history:
        if kind == "desire":
            view = replace(view, desired=value)
        elif kind == "wait":
            now += value * SECOND
        elif kind == "probe":
            view = replace(view, probe_ok=value)
        elif kind == "accepted":
            view = replace(view, call_pending_since=None)
        elif kind == "scripts_end" and view.hook_until is not None:
            view = replace(view, hook_until=min(view.hook_until, now))
        elif kind == "retry" and view.state is S.FAILED:
            view = view.after(retry(view, now, policy))
        elif kind == "observe":
            view = assert_valid(view, value, decide(view, value, now, policy), now)
        assert view.state in State
        assert (view.deadline_at is not None) == (view.state in TRANSITIONAL)
    return view, now


@settings(max_examples=500, deadline=None)
@given(start=rows, history=st.lists(events, max_size=80), policy=st.sampled_from([DEFAULT_POLICY, FAST]))
def test_random_histories_stay_defined(start, history, policy):
    play(start, history, policy)


@settings(max_examples=500, deadline=None)
@given(
    start=rows,
    history=st.lists(events, max_size=40),
    desired=st.sampled_from(list(Desired)),
    cloud=st.sampled_from(OBSERVED),
    ticks=st.integers(1, 3),
)
def test_any_history_then_a_cooperative_cloud_converges(start, history, desired, cloud, ticks):
    """Whatever happened before, a cloud that does what it is asked brings the lab where wanted."""
    view, now = play(start, history, FAST)
    view = replace(view, desired=desired)
    sim = Cloud(status=None if cloud is S.DELETED else cloud, ticks=ticks)
    retries, passes = 0, 0
    # Bound (5 s passes): a backoff wait (<= 40 s) and a deadline (60 s) at most once each, one
    # Retry, then at most a delete, a create and a resume or suspend of <= 3 passes each.
    while not agrees(view, sim) and passes < 40:
        if view.state is S.FAILED and desired is not D.DELETED:
            view, retries = view.after(retry(view, now, FAST)), retries + 1
        view, _ = step(view, sim, now, FAST)
        now, passes = now + 5 * SECOND, passes + 1
    assert agrees(view, sim), (view, sim, passes)
    assert retries <= 1, "a cooperative cloud fails nothing after a Retry"
