"""The lifecycle's vocabulary: transitions, deadlines, backoff, phases and Retry; ``now`` passed in."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labxblock.lifecycle import (
    ALLOWED,
    DEFAULT_DEADLINES,
    STABLE,
    TRANSITIONAL,
    Desired,
    IllegalTransition,
    Phase,
    Reason,
    State,
    backoff_seconds,
    check_transition,
    deadline_for,
    decide,
    phase,
    retry,
)
from tests.unit.lifecycle_cases import (
    NOW,
    SECOND,
    D,
    S,
    lab,
)

# --- transitions -------------------------------------------------------------------------------


def test_every_state_has_a_row_and_every_state_is_reachable():
    assert set(ALLOWED) == set(State)
    reachable = set().union(*ALLOWED.values())
    assert reachable == set(State)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.REQUESTED, S.CREATING),
        (S.CREATING, S.STARTING),
        (S.CREATING, S.FAILED),
        (S.STARTING, S.READY),
        (S.READY, S.SUSPENDING),
        (S.SUSPENDING, S.SUSPENDED),
        (S.SUSPENDED, S.RESUMING),
        (S.RESUMING, S.STARTING),
        (S.DELETING, S.DELETED),
        (S.DELETED, S.REQUESTED),
        (S.FAILED, S.REQUESTED),
        (S.FAILED, S.DELETING),
    ],
)
def test_allowed_transitions(a, b):
    check_transition(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.READY, S.CREATING),
        (S.CREATING, S.READY),  # must pass STARTING: the lab has to answer first
        (S.SUSPENDED, S.READY),
        (S.DELETED, S.READY),
        (S.DELETING, S.REQUESTED),  # a delete is finished before anything else
        (S.FAILED, S.READY),
        (S.READY, S.DELETED),  # only via DELETING
        (S.READY, S.READY),  # staying put is not a transition
    ],
)
def test_illegal_transitions_raise(a, b):
    with pytest.raises(IllegalTransition) as info:
        check_transition(a, b)
    assert (info.value.from_state, info.value.to_state) == (a, b)
    assert isinstance(info.value, ValueError)


def test_deleted_only_from_deleting_or_where_no_stack_was_asked_for():
    assert {s for s, targets in ALLOWED.items() if S.DELETED in targets} == {
        S.DELETING,
        S.REQUESTED,
        S.FAILED,
    }


# --- deadlines and backoff ---------------------------------------------------------------------


@pytest.mark.parametrize("state", sorted(TRANSITIONAL))
def test_every_transitional_state_has_a_deadline(state):
    assert deadline_for(state, NOW) == NOW + timedelta(seconds=DEFAULT_DEADLINES[state])
    assert deadline_for(state, NOW, {state.value: 7}) == NOW + 7 * SECOND


@pytest.mark.parametrize("state", sorted(STABLE))
def test_stable_states_have_none(state):
    assert deadline_for(state, NOW) is None


def test_partial_deadline_mapping_falls_back_to_defaults():
    assert deadline_for(S.CREATING, NOW, {"starting": 1}) == deadline_for(S.CREATING, NOW)


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        deadline_for(S.CREATING, datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        decide(lab(S.READY), S.READY, datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("attempts", "seconds"), [(0, 10), (1, 20), (2, 40), (3, 80), (5, 320), (6, 600), (60, 600), (10**6, 600)]
)
def test_backoff_doubles_then_caps(attempts, seconds):
    assert backoff_seconds(attempts) == seconds


def test_backoff_refuses_nonsense():
    for bad in ({"attempts": -1}, {"attempts": 1, "jitter": 1.0}, {"attempts": 1, "jitter": -0.1}):
        with pytest.raises(ValueError):
            backoff_seconds(**bad)


@given(
    a=st.integers(0, 200),
    b=st.integers(0, 200),
    base=st.floats(0.1, 100),
    cap=st.floats(1, 10_000),
    jitter=st.floats(0, 0.999),
)
def test_backoff_is_monotone_capped_and_jitter_only_shortens(a, b, base, cap, jitter):
    lo, hi = sorted((a, b))
    kw = {"base_seconds": base, "cap_seconds": cap, "jitter": jitter}
    assert backoff_seconds(lo, **kw) <= backoff_seconds(hi, **kw) <= cap
    plain = backoff_seconds(hi, base_seconds=base, cap_seconds=cap)
    assert 0.75 * plain <= backoff_seconds(hi, **kw) <= plain


# --- phase -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "desired", "word"),
    [
        (S.REQUESTED, D.UP, Phase.QUEUED),
        (S.CREATING, D.UP, Phase.CREATING),
        (S.STARTING, D.UP, Phase.STARTING),
        (S.READY, D.UP, Phase.READY),
        (S.READY, D.SUSPENDED, Phase.SUSPENDING),
        (S.SUSPENDED, D.SUSPENDED, Phase.SUSPENDED),
        (S.SUSPENDED, D.UP, Phase.RESUMING),
        (S.RESUMING, D.UP, Phase.RESUMING),
        (S.READY, D.DELETED, Phase.DELETING),
        (S.DELETING, D.DELETED, Phase.DELETING),
        (S.DELETING, D.SUSPENDED, Phase.DELETING),
        (S.DELETING, D.UP, Phase.REBUILDING),  # a recovery or a reset: "being prepared again"
        (S.DELETED, D.DELETED, Phase.DELETED),
        (S.DELETED, D.UP, Phase.QUEUED),
        (S.FAILED, D.UP, Phase.FAILED),
        (S.FAILED, D.DELETED, Phase.FAILED),
    ],
)
def test_phase(state, desired, word):
    assert phase(state, desired) is word


def test_every_state_and_desired_has_a_phase():
    for state, desired in itertools.product(State, Desired):
        assert isinstance(phase(state, desired), Phase)


# --- retry -------------------------------------------------------------------------------------


def test_retry_leaves_failed_with_a_fresh_budget():
    d = retry(lab(S.FAILED, attempts=5, next_attempt_at=NOW + SECOND), NOW)
    assert (d.state, d.attempts, d.next_attempt_at, d.reason) == (S.REQUESTED, 0, None, Reason.RETRIED)
    assert d.deadline_at == deadline_for(S.REQUESTED, NOW)


@pytest.mark.parametrize("state", sorted(set(State) - {S.FAILED}))
def test_retry_only_from_failed(state):
    with pytest.raises(IllegalTransition):
        retry(lab(state), NOW)
