"""Leases of the observation and the audit: released only by their holder, and kept to in time.

The calls and observe workers run the threads pool, where Celery's time limits do
nothing: an observation keeps to its lease itself. Real database (MariaDB too), the
HTTP cloud fake as the cloud.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from labxblock import lifecycle, observer, tasks
from labxblock.labs import observe
from labxblock.lifecycle import State
from labxblock.models import Lab, Lease
from tests.engine_harness import active_lab_settings, lab_settings

pytestmark = [pytest.mark.django_db, pytest.mark.mariadb]
SECOND = timedelta(seconds=1)
KEY = "observe:default"


def test_a_lease_that_ran_out_is_never_released_by_its_first_holder():
    now = timezone.now()
    first = observe.take_lease(KEY, now, 20)
    assert first == now + 20 * SECOND
    assert observe.take_lease(KEY, now + 10 * SECOND, 20) is None  # under way
    second = observe.take_lease(KEY, now + 21 * SECOND, 20)  # the first holder outlasted its lease
    assert second is not None
    # The first holder ends now: the lease it gives up is not its own any more.
    assert tasks.observe_provider.apply(args=["default", first.isoformat()]).get() == 0
    assert not observe.release_lease(KEY, first)
    assert Lease.objects.get(key=KEY).until == second
    assert observe.start(now + 22 * SECOND) == []  # so no second observation runs beside the current one
    assert observe.release_lease(KEY, second)
    assert observe.take_lease(KEY, now + 23 * SECOND, 20) is not None


def test_a_task_that_waited_in_its_queue_gets_its_whole_lease_unless_another_took_it():
    """The lease runs from when the work starts: a busy observe queue does not eat the observation's time."""
    now = timezone.now()
    queued = observe.take_lease(KEY, now - 30 * SECOND, 20)  # taken by a tick 30 s ago; nobody since
    given: list = []
    assert tasks._leased(KEY, queued.isoformat(), lambda until: given.append(until) or 0, 20) == 0
    (until,) = given
    assert until >= now + 19 * SECOND  # a fresh 20 s, not one that ran out 10 s ago
    assert Lease.objects.get(key=KEY).until is None  # and given up when done
    # Taken over while it waited: the newer holder does the work, this one does nothing.
    stale = observe.take_lease(KEY, now - 30 * SECOND, 20)
    newer = observe.take_lease(KEY, now, 20)
    assert newer is not None
    assert tasks._leased(KEY, stale.isoformat(), lambda until: given.append(until) or 0, 20) == 0
    assert len(given) == 1 and Lease.objects.get(key=KEY).until == newer


def test_an_observation_starts_no_read_once_its_lease_has_run_out(cloud_fake):
    settings = lab_settings({"default": {"type": "openstack", **cloud_fake.provider_config}})
    with active_lab_settings(settings):
        now = timezone.now()
        for i in range(3 * observer.READ_THREADS):  # in flight, not in the list of stacks in progress
            user = get_user_model().objects.create_user(username=f"learner{i}")
            Lab.objects.create(learner=user, course_run="course-v1:O+C+R", lab_key="k", provider="default",
                               state=State.CREATING, state_changed_at=now, provider_state={"id": f"id-{i}"},
                               deadline_at=lifecycle.deadline_for(State.CREATING, now))
        cloud_fake.configure(latency_seconds=1.0)  # a slow cloud: each request takes a second
        # Signing in and the list take 2-3 s, then the reads go 8 at a time, a second each: the third
        # batch would start after the lease.
        started = time.monotonic()
        observer.observe_provider("default", timezone.now() + 4 * SECOND)
        took = time.monotonic() - started
    reads = cloud_fake.counters().get("stack_get", 0)
    print(f"\nobservation on a slow cloud: {reads} reads in {took:.1f} s, the rest left for the next pass")
    assert 0 < reads < 3 * observer.READ_THREADS  # all 24 without a bound, one batch after the other
    assert took < 4 + 1 + 1  # the lease, one request's time, and some slack for a loaded machine


def test_an_observation_on_a_cloud_that_does_not_answer_ends_with_its_lease(cloud_fake):
    settings = lab_settings({"default": {"type": "openstack", **cloud_fake.provider_config}})
    with active_lab_settings(settings):
        now = timezone.now()
        user = get_user_model().objects.create_user(username="waiting")
        Lab.objects.create(learner=user, course_run="course-v1:O+C+R", lab_key="k", provider="default",
                           state=State.CREATING, state_changed_at=now, provider_state={"id": "id-0"},
                           deadline_at=lifecycle.deadline_for(State.CREATING, now))
        observer.observe_provider("default")  # signed in: the token is kept
        cloud_fake.configure(latency_seconds=12.0)  # now every request hangs (the read timeout is 30 s)
        started = time.monotonic()
        assert observer.observe_provider("default", timezone.now() + 2 * SECOND) == 0
        took = time.monotonic() - started
    print(f"\nobservation of a cloud that does not answer: gave up after {took:.1f} s (lease 2 s)")
    assert took < 2 + 1.5  # not the 12 s the list would have waited
