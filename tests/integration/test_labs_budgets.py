"""Time budgets on a real database: the counter against the event log (suspend, resume, reset), the
smallest budget of the blocks sharing a lab, the tick's pass and its cost, refusals, grants, the
migration's count; then a real worker and beat stopping a lab whose page is closed.
"""

from __future__ import annotations

import dataclasses
import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from labxblock import labs, tasks
from labxblock.labs import budgets, engine, learner, operator, periodic, usage
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent
from tests.engine_harness import lab_spec, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.mariadb]
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def make_lab(name: str, **fields) -> Lab:
    user = get_user_model().objects.create_user(username=name)
    fields.setdefault("provider", "default")
    return Lab.objects.create(learner=user, course_run="course-v1:O+Budget+R", lab_key="k", **fields)


def fresh(lab: Lab) -> Lab:
    return Lab.objects.get(pk=lab.pk)


def cloud_says(lab: Lab, observed: State | None, minutes: float, **changes) -> Lab:
    """One engine step at T0 + ``minutes`` on what the cloud shows (the observer's own path)."""
    if changes:
        Lab.objects.filter(pk=lab.pk).update(**changes)
    lab = fresh(lab)
    engine.apply(lab, engine.Observation(observed), T0 + minutes * MINUTE, "test")
    return fresh(lab)


def logged_up(lab: Lab, minutes: float) -> float:
    """The lab's up-time by the event log (labs.usage), at T0 + ``minutes``."""
    return usage.up_seconds_of([lab], since=EPOCH, until=T0 + minutes * MINUTE)[lab.pk]


def used(lab: Lab, minutes: float) -> float:
    budget = budgets.view(fresh(lab), T0 + minutes * MINUTE)
    return budget.used_seconds


def test_the_counter_is_the_event_logs_sum_across_suspend_resume_and_reset() -> None:
    lab = make_lab("counted", budget_limits={"block": 3600})
    lab = cloud_says(lab, None, 0)  # the create: up from here
    assert (lab.state, lab.up_since) == (State.CREATING, T0)
    assert lab.budget_ends_at == T0 + timedelta(hours=1)
    lab = cloud_says(lab, State.READY, 2)
    lab = cloud_says(lab, State.READY, 3, probe_ok=True)
    lab = cloud_says(lab, State.READY, 30, desired=Desired.SUSPENDED)
    assert lab.state == State.SUSPENDING and lab.up_since == T0  # still up (and paid) while it suspends
    lab = cloud_says(lab, State.SUSPENDED, 31)
    assert (lab.used_seconds, lab.up_since, lab.budget_ends_at) == (31 * 60, None, None)
    assert used(lab, 120) == logged_up(lab, 120) == 31 * 60  # suspended time does not count
    lab = cloud_says(lab, State.SUSPENDED, 120, desired=Desired.UP)  # the resume
    lab = cloud_says(lab, State.READY, 121)
    lab = cloud_says(lab, State.READY, 122, probe_ok=True)
    assert lab.state == State.READY
    learner.begin_reset(lab, "learner:1", T0 + 130 * MINUTE)  # the old stack stops counting
    lab = fresh(lab)
    assert (lab.used_seconds, lab.up_since) == (41 * 60, None)
    lab = cloud_says(lab, None, 132)  # deleted; back to requested
    lab = cloud_says(lab, None, 133)  # the new stack's create
    assert (lab.state, lab.up_since) == (State.CREATING, T0 + 133 * MINUTE)
    assert used(lab, 140) == logged_up(lab, 140) == 48 * 60, "a reset does not refill the budget"
    assert lab.budget_ends_at == T0 + 133 * MINUTE + (3600 - 41 * 60) * timedelta(seconds=1)


def test_the_smallest_budget_of_the_blocks_sharing_a_lab_counts_and_grants_add_to_it() -> None:
    user = get_user_model().objects.create_user("sharer")
    spec = lab_spec(22)

    def launch(block: str, hours: float | None) -> float | None:
        seconds = None if hours is None else hours * 3600
        block_spec = dataclasses.replace(spec, block_id=block, time_budget_seconds=seconds)
        status = labs.request_launch(user, block_spec, actor="t")
        return None if status.budget is None else round(status.budget.limit_seconds / 3600, 3)

    assert launch("intro", None) is None  # no block budget, no site budget: none
    assert launch("intro", 2) == 2
    assert launch("advanced", 5) == 2, "the larger budget of another block lifts nothing"
    assert launch("intro", 3) == 3, "a block's own budget counts as of its last launch"
    assert launch("advanced", None) == 3, "a block without a budget lifts no other's"
    site = {**settings.XBLOCK_SETTINGS["labxblock"], "time_budget_seconds": 3600}
    with override_settings(XBLOCK_SETTINGS={"labxblock": site}):
        assert launch("advanced", None) == 1, "the site's budget is a block's own when it sets none"
        # Studio's test lab of the same block is the course team's: no budget, the site's neither.
        test_lab = dataclasses.replace(spec, lab_key="studio-test:intro", block_id="intro")
        assert labs.request_launch(user, test_lab, actor="t").budget is None
    lab = Lab.objects.get(learner=user, lab_key=spec.lab_key)
    assert lab.budget_limits == {"intro": 3 * 3600.0, "advanced": 3600.0}
    assert operator.act("grant", [lab.pk], actor="staff:9", seconds=1800).changed == [lab.pk]
    assert budgets.view(fresh(lab)).limit_seconds == 1.5 * 3600
    event = LabEvent.objects.filter(lab=lab).order_by("-id").first()
    assert (event.actor, event.reason) == ("staff:9", "time budget: 0.5 h granted, 1.5 h left")


def test_the_tick_suspends_labs_past_their_budget_never_deletes_them_and_costs_the_same_whatever_runs(
) -> None:
    now = timezone.now()
    spent = make_lab("spent", state=State.READY, budget_limits={"b": 600}, up_since=now - 11 * MINUTE)
    Lab.objects.filter(pk=spent.pk).update(budget_ends_at=budgets.ends_at(spent))
    fine = make_lab("fine", state=State.READY, budget_limits={"b": 3600}, up_since=now - MINUTE)
    Lab.objects.filter(pk=fine.pk).update(budget_ends_at=budgets.ends_at(fine))
    with CaptureQueriesContext(connection) as few:
        assert budgets.mark_spent(now) == 1
    spent, fine = fresh(spent), fresh(fine)
    assert (spent.desired, spent.state) == (Desired.SUSPENDED, State.READY)  # the lifecycle suspends it
    assert fine.desired == Desired.UP
    event = LabEvent.objects.get(lab=spent)
    assert (event.actor, event.reason) == ("budget", "time budget used up")
    # The other tick finding the same row just before: neither marked nor logged twice.
    assert periodic.mark([spent.pk], Desired.SUSPENDED, budgets.USED_UP, "budget", now) == 0
    assert LabEvent.objects.filter(lab=spent).count() == 1
    # Hundreds more labs running with time left: the pass costs the same statements.
    user = get_user_model().objects.create_user("many")
    Lab.objects.bulk_create([
        Lab(learner=user, course_run="course-v1:O+Budget+R", lab_key=f"k{i}", stack_name=f"lab-test-{i:016x}",
            state=State.READY, budget_limits={"b": 3600}, up_since=now,
            budget_ends_at=now + timedelta(hours=1))
        for i in range(500)
    ])
    late = make_lab("late", state=State.READY, budget_limits={"b": 60}, up_since=now - 2 * MINUTE)
    Lab.objects.filter(pk=late.pk).update(budget_ends_at=budgets.ends_at(late))
    with CaptureQueriesContext(connection) as many:
        assert budgets.mark_spent(now) == 1
    assert len(many) == len(few)


def test_a_used_up_budget_refuses_launch_reset_retry_and_resume_and_says_so() -> None:
    now = timezone.now()
    lab = make_lab("over", state=State.SUSPENDED, desired=Desired.SUSPENDED, budget_limits={"b": 600},
                   used_seconds=600)
    spec = dataclasses.replace(lab_spec(22), lab_key="k", course_run=lab.course_run, block_id="b",
                               time_budget_seconds=600)
    for request in (labs.request_launch, labs.request_reset, labs.retry):
        status = request(lab.learner, spec, actor="learner:1")
        assert status.used_up and status.budget.left_seconds == 0
        assert (fresh(lab).desired, fresh(lab).state) == (Desired.SUSPENDED, State.SUSPENDED)
    outcome = operator.act("resume", [lab.pk], actor="operator:1")
    assert outcome.unchanged == {lab.pk: "time budget used up"}
    # A lab still up when its learner comes back past the end is stopped there and then.
    up = make_lab("up", state=State.READY, budget_limits={"b": 600}, up_since=now - 20 * MINUTE)
    status = labs.request_launch(up.learner, spec, actor="learner:2")
    assert status.used_up and fresh(up).desired == Desired.SUSPENDED
    assert LabEvent.objects.filter(lab=up, reason="time budget used up", actor="budget").count() == 1
    assert not LabEvent.objects.filter(reason="launch requested").exists()


def test_a_lab_launched_ahead_spends_no_budget_before_the_learner_arrives() -> None:
    """A hidden block starts the lab before the learner comes: the cloud's time is in usage, not in their
    budget; their first launch from the block that shows it starts the count, and the tick leaves the
    lab alone until then however long it waits."""
    user = get_user_model().objects.create_user(username="early")
    shown = dataclasses.replace(lab_spec(22), lab_key="k", course_run="course-v1:O+Budget+R",
                                block_id="shown", time_budget_seconds=600)
    status = labs.launch_ahead(user, dataclasses.replace(shown, block_id="hidden"), actor="learner:1")
    lab = Lab.objects.get(pk=status.lab_id)
    assert lab.awaiting_learner and lab.budget_limits == {"hidden": 600}
    Lab.objects.filter(pk=lab.pk).update(provider="default")
    lab = cloud_says(lab, None, 0)  # the create: up, and paid, but not the learner's time
    assert (lab.state, lab.up_since, lab.budget_ends_at) == (State.CREATING, None, None)
    lab = cloud_says(lab, State.READY, 2)
    lab = cloud_says(lab, State.READY, 3, probe_ok=True)
    assert lab.state == State.READY and logged_up(lab, 60) == 60 * 60  # an hour up in the cloud...
    assert used(lab, 60) == 0  # ...none of it spent from a budget of ten minutes
    assert budgets.mark_spent(T0 + 60 * MINUTE) == 0 and fresh(lab).desired == Desired.UP
    again = labs.launch_ahead(user, shown, actor="learner:1")  # a hidden block again: no arrival
    assert again.budget.used_seconds == 0 and fresh(lab).awaiting_learner

    before = timezone.now()
    arrived = labs.request_launch(user, shown, actor="learner:1")  # the unit that shows it
    lab = fresh(lab)
    assert not lab.awaiting_learner and before <= lab.up_since <= timezone.now()
    assert lab.budget_ends_at == lab.up_since + timedelta(minutes=10)
    assert arrived.budget.used_seconds < 5 and not arrived.used_up
    assert used(lab, 0) == 0 and budgets.view(lab, lab.up_since + 4 * MINUTE).used_seconds == 4 * 60


def test_a_lab_launched_ahead_and_suspended_before_the_learner_came_counts_from_its_resume() -> None:
    user = get_user_model().objects.create_user(username="late")
    spec = dataclasses.replace(lab_spec(22), lab_key="k", course_run="course-v1:O+Budget+R", block_id="b",
                               time_budget_seconds=600)
    lab = Lab.objects.get(pk=labs.launch_ahead(user, spec, actor="learner:1").lab_id)
    Lab.objects.filter(pk=lab.pk).update(provider="default")
    lab = cloud_says(lab, None, 0)
    lab = cloud_says(lab, State.READY, 2)
    lab = cloud_says(lab, State.READY, 30, probe_ok=True, desired=Desired.SUSPENDED)  # the idle tick
    lab = cloud_says(lab, State.SUSPENDED, 31)
    assert (lab.used_seconds, lab.up_since) == (0, None)
    labs.request_launch(user, spec, actor="learner:1")  # the learner arrives: the lab resumes
    lab = fresh(lab)
    assert not lab.awaiting_learner and lab.up_since is None and lab.desired == Desired.UP
    lab = cloud_says(lab, State.SUSPENDED, 120)  # the resume: counted from here, as any lab's
    assert (lab.state, lab.up_since) == (State.RESUMING, T0 + 120 * MINUTE)
    assert lab.budget_ends_at == T0 + 130 * MINUTE


def test_nothing_is_launched_ahead_for_a_learner_whose_lab_time_is_used_up() -> None:
    lab = make_lab("spent", state=State.DELETED, desired=Desired.DELETED, budget_limits={"b": 600},
                   used_seconds=600)
    spec = dataclasses.replace(lab_spec(22), lab_key="k", course_run=lab.course_run, block_id="b",
                               time_budget_seconds=600)
    status = labs.launch_ahead(lab.learner, spec, actor="learner:1")
    assert status.used_up and (fresh(lab).state, fresh(lab).desired) == (State.DELETED, Desired.DELETED)
    assert not LabEvent.objects.filter(lab=lab, reason="launch requested").exists()


def test_a_grant_moves_the_end_and_warns_again_once_most_of_the_new_time_is_used() -> None:
    now = timezone.now()
    lab = make_lab("warned", state=State.READY, budget_limits={"b": 3600}, up_since=now - 50 * MINUTE,
                   budget_warned_at=now)
    Lab.objects.filter(pk=lab.pk).update(budget_ends_at=budgets.ends_at(lab))
    assert budgets.view(fresh(lab), now).warning
    assert not budgets.note_warning(lab.pk, now), "warned once"
    operator.act("grant", [lab.pk], actor="operator:command", seconds=3600, now=now)
    lab = fresh(lab)
    assert lab.budget_ends_at == now - 50 * MINUTE + timedelta(hours=2)
    assert lab.budget_warned_at is None and budgets.note_warning(lab.pk, now)
    nobudget = make_lab("free")
    assert operator.act("grant", [nobudget.pk], actor="operator:1", seconds=60).unchanged == {
        nobudget.pk: "no time budget"}


def test_the_migration_counts_existing_labs_from_their_event_log() -> None:
    lab = make_lab("old", budget_limits={"b": 36000})
    for minutes, before, after in ((0, "", State.CREATING), (5, State.CREATING, State.READY),
                                   (65, State.READY, State.SUSPENDED), (125, State.SUSPENDED, State.RESUMING),
                                   (126, State.RESUMING, State.STARTING)):
        LabEvent.record(lab, actor="old", from_state=before, to_state=after, at=T0 + minutes * MINUTE)
    live = fresh(lab)
    Lab.objects.filter(pk=lab.pk).update(used_seconds=0, up_since=None)  # as the migration finds them
    migration = importlib.import_module("labxblock.migrations.0008_budgets_and_lifecycle_scripts")
    migration.count_up_time(apps, None)
    lab = fresh(lab)
    assert (lab.used_seconds, lab.up_since) == (65 * 60, T0 + 125 * MINUTE)
    assert (lab.used_seconds, lab.up_since) == (live.used_seconds, live.up_since), "as the live counter"
    assert used(lab, 200) == logged_up(lab, 200)


@pytest.mark.redis
@pytest.mark.slow
def test_a_budget_stops_a_lab_whose_page_is_closed_and_a_grant_lets_it_resume(engine_factory) -> None:
    """A real worker and beat: nobody keeps the lab alive or looks at it, yet it is suspended when its
    6 seconds are used, kept (not deleted), refused at the next launch, and resumed after a grant."""
    engine = engine_factory(suspend_timeout=3600)
    ada = engine.user("ada")
    spec = dataclasses.replace(lab_spec(engine.lab_port.port), block_id="unit-1", time_budget_seconds=6)
    status = labs.request_launch(ada, spec, actor="learner")
    wait_for("the lab to be ready", lambda: fresh_state(status.lab_id) == State.READY, 30)
    wait_for("the budget to suspend it", lambda: fresh_state(status.lab_id) == State.SUSPENDED, 30)
    lab = Lab.objects.get(pk=status.lab_id)
    assert lab.desired == Desired.SUSPENDED and engine.stacks() == {lab.stack_name}  # kept, not deleted
    assert LabEvent.objects.filter(lab=lab, actor="budget", reason="time budget used up").count() == 1
    up = usage.up_seconds_of([lab], since=EPOCH, until=timezone.now())[lab.pk]
    assert lab.used_seconds == pytest.approx(up) and lab.used_seconds >= 6
    refused = labs.request_launch(ada, spec, actor="learner")
    assert refused.used_up and fresh_state(lab.pk) == State.SUSPENDED
    operator.act("grant", [lab.pk], actor="operator:command", seconds=3600)
    assert not labs.request_launch(ada, spec, actor="learner").used_up
    wait_for("the lab to be ready again", lambda: fresh_state(lab.pk) == State.READY, 30)
    assert tasks.suspend_idle.run() == 0  # time left: the idle tick's pass leaves it be


def fresh_state(lab_id: int) -> str:
    return Lab.objects.values_list("state", flat=True).get(pk=lab_id)
