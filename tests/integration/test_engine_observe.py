"""Observing the cloud, on a real database: what is observed when, and stale answers never applied.

The observer's answers are made here by hand (``Observation``s as a provider's list or
read would give them); test_engine_lifecycle.py and test_engine_faults.py run the
same code with real workers against the cloud fake.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from labxblock import conf, lifecycle
from labxblock.labs import engine, observe, periodic
from labxblock.labs.engine import Observation
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent, Lease

pytestmark = [pytest.mark.django_db, pytest.mark.mariadb]
SECOND = timedelta(seconds=1)


def make_lab(name: str, state: State, **fields) -> Lab:
    user = get_user_model().objects.create_user(username=name)
    now = timezone.now()
    fields.setdefault("deadline_at", lifecycle.deadline_for(state, now))
    return Lab.objects.create(learner=user, course_run="course-v1:O+C+R", lab_key="k", provider="default",
                              state=state, state_changed_at=now, provider_state={"id": f"id-{name}"},
                              **fields)


def observed(lab: Lab, state: State | None, raw: str = "", reason: str = "") -> dict:
    """What the observer would apply for ``lab``: its target (stamped now) and the cloud's answer."""
    (target,) = [t for t in observe.targets("default", timezone.now()) if t.lab_id == lab.pk]
    return {target: Observation(state, raw, reason)}


def test_at_rest_no_observation_is_started_and_in_flight_one_at_a_time():
    now = timezone.now()
    make_lab("ready", State.READY)
    make_lab("paused", State.SUSPENDED, desired=Desired.SUSPENDED)
    make_lab("gone", State.DELETED, desired=Desired.DELETED)
    assert observe.start(now) == []  # labs at rest: the cloud is not asked anything
    assert not Lease.objects.exists()

    make_lab("busy", State.CREATING)
    assert observe.start(now) == ["default"]
    assert observe.start(now + SECOND) == []  # one observation under way per provider
    assert observe.start(now + observe.lease_seconds() * SECOND + SECOND) == ["default"]  # a lost one
    observe.release_lease("observe:default", Lease.objects.get(key="observe:default").until)
    assert observe.start(now + 30 * SECOND) == ["default"]


def test_a_lab_sent_back_to_requested_with_its_provider_is_observed_not_created_blindly():
    lab = make_lab("retried", State.REQUESTED)  # e.g. the learner's Retry after a failure: a stack may exist
    assert [t.lab_id for t in observe.targets("default", timezone.now())] == [lab.pk]
    assert engine.step(lab.pk, timezone.now(), "learner") is None  # the observer decides, on what it sees
    jobs = observe.apply("default", observed(lab, State.FAILED, "CREATE_FAILED"), timezone.now())
    assert [(j.action, j.state) for j in jobs] == [(lifecycle.Action.DELETE, State.DELETING)]  # never reused


def test_two_overlapping_passes_never_apply_the_older_answer():
    lab = make_lab("raced", State.CREATING, call_issued_at=timezone.now(), call_accepted_at=timezone.now())
    slow = observed(lab, State.CREATING, "CREATE_IN_PROGRESS")  # stamped, then its list takes long…
    fast = observed(lab, State.READY, "CREATE_COMPLETE")  # …while a later pass sees the create done
    assert [j.action for j in observe.apply("default", fast, timezone.now())] == [lifecycle.Action.PROBE]
    assert observe.apply("default", slow, timezone.now() + SECOND) == []  # older than the row's change
    lab.refresh_from_db()
    assert (lab.state, lab.raw_status) == (State.STARTING, "CREATE_COMPLETE")
    reasons = list(LabEvent.objects.filter(lab=lab).values_list("reason", flat=True))
    assert reasons == ["progress"]  # no out_of_sync bounce


def test_an_answer_taken_before_a_learners_reset_is_not_applied_to_the_reset_lab():
    lab = make_lab("resetter", State.CREATING)
    before = observed(lab, State.READY, "CREATE_COMPLETE")
    now = timezone.now()
    Lab.objects.filter(pk=lab.pk).update(state=State.DELETING, state_changed_at=now + SECOND,
                                         call_issued_at=now + SECOND)
    assert observe.apply("default", before, now + 2 * SECOND) == []
    assert Lab.objects.get(pk=lab.pk).state == State.DELETING


def test_a_lost_call_is_issued_again_with_an_event_and_attempts_kept_for_the_record():
    now = timezone.now()
    window = conf.get_settings().acceptance_window_seconds
    lab = make_lab("lost", State.CREATING, call_issued_at=now - (window + 1) * SECOND)
    (target,) = observe.targets("default", now)
    assert target.read  # past its window: read even though no worker answered
    jobs = observe.apply("default", {target: Observation(None)}, now)
    assert [j.action for j in jobs] == [lifecycle.Action.CREATE]
    lab.refresh_from_db()
    assert (lab.state, lab.attempts, lab.reissues) == (State.CREATING, 0, 1)
    assert lab.call_issued_at == now and lab.call_accepted_at is None
    event = LabEvent.objects.get(lab=lab)
    assert (event.from_state, event.to_state, event.reason, event.attempt) == (
        "creating", "creating", "not_accepted", 0)

    # A timeout (the deadline) is an event too, with its attempt; the lifetime count survives settling.
    Lab.objects.filter(pk=lab.pk).update(deadline_at=now, next_attempt_at=now, call_accepted_at=now)
    observe.apply("default", observed(lab, State.CREATING, "CREATE_IN_PROGRESS"), now + SECOND)
    timeout = LabEvent.objects.filter(lab=lab).latest("id")
    assert (timeout.reason, timeout.to_state, timeout.attempt) == ("create_timeout", "deleting", 1)
    observe.apply("default", observed(lab, None), now + 2 * SECOND)  # deleted: made afresh next
    lab.refresh_from_db()
    assert lab.state == State.REQUESTED and lab.reissues == 2


def test_a_call_with_its_worker_within_the_window_is_not_read_but_a_busy_list_still_counts():
    now = timezone.now()
    lab = make_lab("in-flight", State.SUSPENDING, desired=Desired.SUSPENDED, call_issued_at=now)
    (target,) = observe.targets("default", now + SECOND)
    assert not target.read  # its worker will tell, or the window runs out
    window = conf.get_settings().acceptance_window_seconds
    assert not observe.targets("default", now + window / 2 * SECOND)[0].read  # a slow create request
    assert observe.targets("default", now + window * 2 / 3 * SECOND)[0].read  # did it land, worker or not?
    observe.apply("default", {target: Observation(State.SUSPENDING, "SUSPEND_IN_PROGRESS")}, now + SECOND)
    lab.refresh_from_db()
    assert lab.call_accepted_at == now + SECOND  # the cloud at work: taken
    assert not any(t.read is False for t in observe.targets("default", now + 2 * SECOND))


def test_a_belief_never_blanks_the_clouds_own_words():
    lab = make_lab("probed", State.STARTING, raw_status="CREATE_COMPLETE",
                   raw_reason="Stack CREATE completed successfully", probe_ok=True)
    engine.step(lab.pk, timezone.now(), "prober")  # decided on what the row believes: no raw status
    lab.refresh_from_db()
    assert lab.state == State.READY
    assert (lab.raw_status, lab.raw_reason) == ("CREATE_COMPLETE", "Stack CREATE completed successfully")


def test_the_audit_reads_only_labs_at_rest_the_list_contradicts():
    fine = make_lab("fine", State.READY)
    vanished = make_lab("vanished", State.READY)
    paused = make_lab("paused", State.SUSPENDED, desired=Desired.SUSPENDED)
    make_lab("moving", State.CREATING)  # the observer's, not the audit's
    listed = {fine.stack_name: State.READY, paused.stack_name: State.READY}
    suspects = observe.audit_suspects("default", listed)
    assert sorted(t.lab_id for t in suspects) == sorted([vanished.pk, paused.pk])


def test_the_orphan_sweep_skips_stacks_listed_deleted(caplog):
    now = timezone.now()
    old = now - timedelta(hours=2)
    listed = [
        periodic.ListedStack("lab-test-stray", old, State.READY),
        periodic.ListedStack("lab-test-failed", old, State.FAILED),
        periodic.ListedStack("lab-test-deleted", old, State.DELETED),  # DELETE_COMPLETE, listed a while
    ]
    found = periodic.orphans("default", listed, now)
    assert found == ["lab-test-failed", "lab-test-stray"]
    with caplog.at_level("WARNING"):
        assert periodic.delete_orphans("default", {name: {} for name in found}) == 2
    (record,) = [r for r in caplog.records if "orphan" in r.getMessage()]
    message = record.getMessage()
    assert "deleting 2 orphan stack(s)" in message and "lab-test-deleted" not in message
    assert periodic.delete_orphans("default", {}) == 0

    caplog.clear()  # the provider's actions_per_minute: what is over it waits for the next audit
    with caplog.at_level("WARNING"):
        assert periodic.delete_orphans("default", {name: {} for name in found}, budget=1) == 1
    said = [r.getMessage() for r in caplog.records]
    assert said == ["labxblock: deleting 1 orphan stack(s) on provider default: lab-test-failed",
                    "labxblock: 1 more orphan stack(s) on provider default wait for the next audit "
                    "(actions_per_minute): lab-test-stray"]


def test_an_observation_that_changes_nothing_locks_and_writes_nothing():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    now = timezone.now()
    taken = make_lab("at-it", State.CREATING, call_issued_at=now - SECOND, call_accepted_at=now,
                     raw_status="CREATE_IN_PROGRESS", raw_reason="Stack CREATE started")
    waiting = make_lab("waiting", State.CREATING, call_issued_at=now)  # its worker has not said yet
    late = make_lab("late", State.CREATING, call_issued_at=now - SECOND, call_accepted_at=now,
                    raw_status="CREATE_IN_PROGRESS", raw_reason="Stack CREATE started", deadline_at=now)
    seen = {t: Observation(State.CREATING, "CREATE_IN_PROGRESS", "Stack CREATE started")
            for t in observe.targets("default", now)}
    with CaptureQueriesContext(connection) as queries:
        observe.apply("default", seen, now + SECOND)
    selected = {int(pk) for q in queries.captured_queries if q["sql"].startswith("SELECT")
                for ids in re.findall(r"IN \(([\d, ]+)\)", q["sql"]) for pk in ids.split(",")}
    assert selected == {waiting.pk, late.pk}  # the rows locked and decided: not the one still at it
    taken_after, waiting_after, late_after = (Lab.objects.get(pk=lab.pk) for lab in (taken, waiting, late))
    assert (taken_after.call_accepted_at, taken_after.state) == (taken.call_accepted_at, State.CREATING)
    assert waiting_after.call_accepted_at == now + SECOND  # the cloud is at it: seen taken
    assert late_after.state == State.DELETING  # past its deadline: stuck, deleted to be made again
