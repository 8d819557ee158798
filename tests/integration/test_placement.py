"""The placement queue: labs waiting for capacity are served oldest first, in one pass, in few statements."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from labxblock.conf import get_settings
from labxblock.labs import engine, status_of
from labxblock.labs.specs import blueprint_digest
from labxblock.lifecycle import Action, Desired, State
from labxblock.models import Blueprint, Lab, LabEvent
from tests.engine_harness import lab_spec

pytestmark = [pytest.mark.django_db, pytest.mark.mariadb]


@pytest.fixture
def two_providers():
    """``default`` holds 2 stacks for the whole site; ``second`` has no site limit."""
    value = copy.deepcopy(settings.XBLOCK_SETTINGS)
    default = value["labxblock"]["providers"]["default"]
    value["labxblock"]["providers"] = {"default": {**default, "capacity": 2}, "second": dict(default)}
    with override_settings(XBLOCK_SETTINGS=value):
        yield


def blueprint(capacities: dict[str, int] | None = None) -> Blueprint:
    """The author's choice: ``default`` first, then ``second``, with per-lab ``capacities``."""
    spec = lab_spec(22, providers=("default", "second"), capacities=capacities).blueprint()
    return Blueprint.objects.get_or_create(digest=blueprint_digest(spec), defaults={"spec": spec})[0]


def queue(count: int, plan: Blueprint, prefix: str = "q", **fields) -> list[Lab]:
    """``count`` launch requests not yet placed, oldest first."""
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"{prefix}{i}") for i in range(count)]
    )
    return [
        Lab.objects.create(learner=user, course_run="course-v1:Org+Lab+Run", lab_key="lab", blueprint=plan,
                           **fields)
        for user in users
    ]


def placed(labs: list[Lab]) -> list[str]:
    return [Lab.objects.get(pk=lab.pk).provider for lab in labs]


def test_queued_labs_fill_each_capacity_in_the_authors_order_oldest_first(two_providers):
    labs = queue(5, blueprint({"second": 1}))
    jobs = engine.place_queued(timezone.now())

    # Two fit on the site-limited first choice, one on the second (this lab may hold one there).
    assert placed(labs) == ["default", "default", "second", "", ""]
    assert {(job.lab_id, job.action) for job in jobs} == {(lab.pk, Action.CREATE) for lab in labs[:3]}
    assert [Lab.objects.get(pk=lab.pk).state for lab in labs] == ["creating"] * 3 + ["requested"] * 2
    moves = LabEvent.objects.filter(from_state=State.REQUESTED, to_state=State.CREATING)
    assert sorted(moves.values_list("lab_id", flat=True)) == [lab.pk for lab in labs[:3]]

    # Nothing freed: the next pass leaves the queue as it is.
    assert engine.place_queued(timezone.now()) == []
    # A stack gone frees its slot for the oldest lab still waiting, not the newest.
    Lab.objects.filter(pk=labs[0].pk).update(state=State.DELETED, desired=Desired.DELETED)
    jobs = engine.place_queued(timezone.now())
    assert [job.lab_id for job in jobs] == [labs[3].pk]
    assert placed(labs)[3:] == ["default", ""]


def test_a_capacity_counts_the_slots_this_pass_took_before_it(two_providers):
    # The author lowered the lab's capacity while launches were queued: old and new blueprints.
    before = queue(1, blueprint(), prefix="old")
    after = queue(2, blueprint({"default": 1, "second": 0}), prefix="new")
    engine.place_queued(timezone.now())
    assert placed(before + after) == ["default", "", ""]


def test_a_lab_waiting_for_room_past_its_deadline_fails_with_a_reason_the_learner_sees(two_providers):
    plan = blueprint({"second": 0})
    queue(2, plan, prefix="first")  # they take both of default's slots
    started = timezone.now()
    engine.place_queued(started)
    late = queue(1, plan, prefix="late")[0]

    engine.place_queued(started)
    waiting = Lab.objects.get(pk=late.pk)
    assert (waiting.state, waiting.provider) == (State.REQUESTED, "")
    assert waiting.deadline_at is not None  # the wait is timed from its first pass

    # Each deadline outlasted is an attempt (and a new deadline); attempts run out: failed, visibly.
    attempts = []
    for _ in range(get_settings().max_attempts):
        lab = Lab.objects.get(pk=late.pk)
        engine.place_queued(lab.deadline_at + timedelta(seconds=1))
        attempts.append(Lab.objects.get(pk=late.pk).attempts)
    assert attempts == [1, 2, 3, 4, 5]
    failed = Lab.objects.get(pk=late.pk)
    assert failed.state == State.FAILED and failed.status_reason.startswith("queue_timeout")
    assert status_of(failed).reason == "queue_timeout"
    event = LabEvent.objects.get(lab_id=late.pk, to_state=State.FAILED)
    assert (event.from_state, event.reason) == (State.REQUESTED, "queue_timeout")


def test_a_lab_cancelled_while_queued_needs_no_slot_and_takes_none(two_providers):
    plan = blueprint({"second": 0})
    waiting = queue(2, plan, prefix="w")
    cancelled = queue(1, plan, prefix="c", desired=Desired.DELETED)[0]
    Lab.objects.filter(pk=waiting[0].pk).update(provider="default", state=State.READY)
    Lab.objects.filter(pk=waiting[1].pk).update(provider="default", state=State.READY)
    engine.place_queued(timezone.now())
    lab = Lab.objects.get(pk=cancelled.pk)
    assert (lab.provider, lab.state) == ("", State.DELETED)


def test_a_long_queue_costs_the_same_few_statements_as_a_short_one(two_providers):
    def statements(count: int, prefix: str) -> int:
        queue(count, blueprint({"second": 1}), prefix=prefix)
        with CaptureQueriesContext(connection) as queries:
            engine.place_queued(timezone.now())
        Lab.objects.all().delete()
        return len(queries)

    statements(1, "warm")  # the providers' lock rows are made once, at the first placement ever
    few, many = statements(4, "few"), statements(60, "many")  # 3 placed; 1 and 57 wait, timed
    # budgets.count adds one read and one write per batch for the labs going up: still flat
    assert many == few and many <= 14
