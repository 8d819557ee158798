"""The provider's rate (``actions_per_minute``) holds for the calls an observation decides too."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from labxblock import conf, lifecycle
from labxblock.labs import observe
from labxblock.labs.engine import Observation
from labxblock.lifecycle import Action, Desired, State
from labxblock.models import Lab, LabEvent
from tests.engine_harness import active_lab_settings, lab_settings

pytestmark = [pytest.mark.django_db, pytest.mark.mariadb]
SECOND = timedelta(seconds=1)


def test_deletes_an_observation_makes_again_keep_to_the_providers_rate():
    provider = {**conf.get_settings().providers["default"].options, "type": "openstack",
                "actions_per_minute": 2}
    with active_lab_settings(lab_settings({"default": provider})):
        now = timezone.now()
        lost = now - 2 * conf.get_settings().acceptance_window_seconds * SECOND
        for i in range(4):  # four deletes lost on their way: each to be made again
            user = get_user_model().objects.create_user(username=f"leaving{i}")
            Lab.objects.create(learner=user, course_run="course-v1:O+C+R", lab_key="k", provider="default",
                               state=State.DELETING, desired=Desired.DELETED, state_changed_at=lost,
                               deadline_at=lifecycle.deadline_for(State.DELETING, now),
                               provider_state={"id": f"id-{i}"}, call_issued_at=lost)

        sent: list[int] = []

        def observe_at(at):
            """The cloud deletes the stacks whose delete went out; the others it shows as they were."""
            seen = {t: Observation(State.DELETING, "DELETE_IN_PROGRESS") if t.lab_id in sent
                    else Observation(State.READY, "CREATE_COMPLETE") for t in observe.targets("default", at)}
            jobs = observe.apply("default", seen, at)
            sent.extend(job.lab_id for job in jobs)
            return [job.action for job in jobs]

        assert observe_at(now) == [Action.DELETE] * 2  # the minute's two
        assert observe_at(now + SECOND) == []  # the rest wait: the tick keeps to the same count
        assert observe_at(now + 59 * SECOND) == []
        assert observe_at(now + 61 * SECOND) == [Action.DELETE] * 2  # a minute later
    assert LabEvent.objects.filter(reason="not_accepted").count() == 4
    assert set(Lab.objects.values_list("reissues", flat=True)) == {1}


def test_cleanup_deletes_of_creates_that_failed_at_once_keep_to_the_providers_rate():
    """A quota running out under a class's launches: the stacks' cleanup deletes are rate-limited too."""
    provider = {**conf.get_settings().providers["default"].options, "type": "openstack",
                "actions_per_minute": 2}
    with active_lab_settings(lab_settings({"default": provider})):
        now = timezone.now()
        for i in range(4):
            user = get_user_model().objects.create_user(username=f"launching{i}")
            Lab.objects.create(learner=user, course_run="course-v1:O+C+R", lab_key="k", provider="default",
                               state=State.CREATING, desired=Desired.UP, state_changed_at=now - 5 * SECOND,
                               deadline_at=lifecycle.deadline_for(State.CREATING, now),
                               provider_state={"id": f"id-{i}"}, call_issued_at=now - 5 * SECOND,
                               call_accepted_at=now - 4 * SECOND,
                               attempts=conf.get_settings().max_attempts - 1)  # this failure is the last

        def observe_at(at):
            seen = {t: Observation(State.FAILED, "CREATE_FAILED", "Quota exceeded")
                    for t in observe.targets("default", at)}
            return [job.action for job in observe.apply("default", seen, at)]

        assert observe_at(now) == [Action.DELETE] * 2  # the minute's two, not four
        assert observe_at(now + SECOND) == []  # the others wait, still creating as far as we know
        assert Lab.objects.filter(state=State.FAILED).count() == 2
        assert observe_at(now + 61 * SECOND) == [Action.DELETE] * 2  # a minute later
        assert Lab.objects.filter(state=State.FAILED).count() == 4
