"""LabBlock's grading and completion as edx-platform calls them, through the workbench runtime.

What the platform does is done here the way it does it: a score override is
``set_score(Score(weighted / weight, max_score() / weight))``, ``publish_grade()``,
``save()`` (instructor_task ``override_score_module_state``); a rescore checks
``has_submitted_answer()`` and calls ``rescore(only_if_higher)``. What the block hands
the runtime's ``publish`` is captured; edx-submissions is the real app. Run with
``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone
from webob import Request
from xblock.completable import XBlockCompletionMode
from xblock.scorable import Score

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from submissions import api
from workbench.runtime import WorkbenchRuntime

from labxblock import compat
from labxblock.block import LabBlock
from labxblock.labs import grading
from labxblock.lifecycle import Desired, State
from labxblock.models import CheckRun, Lab
from tests.integration.test_block_lab_flow import PlatformUserService

pytestmark = pytest.mark.django_db
_scenario = itertools.count()
CHECKED = ('<labxblock weight="{weight}" template="/static/lab.yaml">'
           '<check name="done">test -f ~/done</check></labxblock>')
UNCHECKED = '<labxblock template="/static/lab.yaml"/>'


@dataclass
class Lab1:
    """One learner's block and what it published through the runtime."""

    runtime: WorkbenchRuntime
    block: Any
    events: list[tuple[str, dict]] = field(default_factory=list)

    def call(self, handler: str, data: dict | None = None) -> dict:
        request = Request.blank("/", method="POST", body=json.dumps(data or {}).encode())
        return json.loads(self.runtime.handle(self.block, handler, request).body)

    def published(self, kind: str) -> list[dict]:
        return [data for event, data in self.events if event == kind]

    @property
    def learner(self) -> Any:
        return get_user_model().objects.get(username=f"{compat.WORKBENCH_USER_PREFIX}ada")

    def student_item(self) -> dict:
        usage_id = str(self.block.scope_ids.usage_id)
        return grading.student_item(self.learner, compat.course_run(self.block), usage_id)

    def lab_row(self, **fields: Any) -> Lab:
        values = {"state": State.READY.value, "desired": Desired.UP.value, "ip": "192.0.2.7", **fields}
        return Lab.objects.create(learner=self.learner, course_run=compat.course_run(self.block),
                                  lab_key=self.block._lab_key(), **values)

    def run(self, score: float, weight: float = 1.0, actor: str = "learner") -> CheckRun:
        """A check run the worker finished (no page collected it)."""
        now = timezone.now()
        return CheckRun.objects.create(
            learner=self.learner, course_run=compat.course_run(self.block),
            usage_id=str(self.block.scope_ids.usage_id), lab_key=self.block._lab_key(), actor=actor,
            state=CheckRun.State.DONE, score=score, weight=weight, started_at=now, finished_at=now,
            deadline_at=now + timedelta(minutes=1))


@pytest.fixture
def make():
    def build(xml: str) -> Lab1:
        runtime = WorkbenchRuntime("ada")
        runtime.id_generator.set_scenario(f"scoring-{next(_scenario)}")
        block = runtime.get_block(runtime.parse_xml_string(xml))
        lab = Lab1(runtime, block)
        runtime.publish = lambda blk, event, data: lab.events.append((event, data))
        lab.call("check_result")  # the workbench tells the block its course run on the first call
        return lab

    return build


def test_only_a_lab_with_checks_is_scored(make) -> None:
    assert make(CHECKED.format(weight=1)).block.has_score is True
    assert make(UNCHECKED).block.has_score is False
    # Completion is the block's own, for every lab: the platform's "complete when scored" reads the class.
    assert LabBlock.has_custom_completion is True
    assert XBlockCompletionMode.get_mode(LabBlock) == XBlockCompletionMode.COMPLETABLE


def test_a_lab_without_checks_is_complete_the_first_time_it_is_ready(make) -> None:
    lab = make(UNCHECKED)
    row = lab.lab_row(state=State.CREATING.value)
    assert lab.call("status")["ready"] is False
    assert lab.published("completion") == []
    Lab.objects.filter(pk=row.pk).update(state=State.READY.value)
    assert lab.call("status")["ready"] is True
    lab.call("status")
    assert lab.published("completion") == [{"completion": 1.0}]  # once, however often it is seen ready
    assert lab.published("grade") == []


def test_a_lab_with_checks_completes_when_scored_not_when_ready(make) -> None:
    lab = make(CHECKED.format(weight=2))
    lab.lab_row()
    assert lab.call("status")["ready"] is True
    assert lab.published("completion") == []
    lab.run(0.5, weight=2)
    lab.call("check_result")  # the page collects the run
    assert lab.published("grade") == [{"value": 1.0, "max_value": 2.0, "only_if_higher": None}]
    assert lab.published("completion") == [{"completion": 1.0}]


def test_an_instructor_override_publishes_exactly_the_overridden_score(make) -> None:
    lab = make(CHECKED.format(weight=10))
    lab.run(0.4, weight=10)
    grading.publish_run(CheckRun.objects.get().pk)  # the worker's score: 4 of 10
    block = lab.block
    # override_score_module_state with a score of 7 (points, between 0 and max_score()):
    assert block.max_score() == 10
    weight = block.weight
    block.set_score(Score(raw_earned=7 / weight, raw_possible=block.max_score() / weight))
    block.publish_grade()
    block.save()
    assert lab.published("grade") == [{"value": pytest.approx(7.0), "max_value": 10.0,
                                       "only_if_higher": None}]
    # The grades app reads edx-submissions first: the override is there too, not the worker's 4.
    score = api.get_score(lab.student_item())
    assert (score["points_earned"], score["points_possible"]) == (7, 10)
    assert block.raw_earned == pytest.approx(0.7)


def test_an_override_stands_when_the_learner_opens_the_unit_until_their_next_run(make) -> None:
    lab = make(CHECKED.format(weight=10))
    worker_run = lab.run(0.4, weight=10)
    grading.publish_run(worker_run.pk)  # the worker scored it; no page collected it
    block = lab.block
    block.set_score(Score(raw_earned=0.7, raw_possible=1.0))  # the instructor's override: 7 of 10
    block.publish_grade()
    block.save()
    lab.call("check_result")  # the learner opens the unit: the page must not publish the run over it
    assert [g["value"] for g in lab.published("grade")] == [pytest.approx(7.0)]
    score = api.get_score(lab.student_item())
    assert (score["points_earned"], score["points_possible"]) == (7, 10)
    lab.run(0.9, weight=10)  # the learner checks again: the newer run is their score
    lab.call("check_result")
    assert [g["value"] for g in lab.published("grade")] == [pytest.approx(7.0), pytest.approx(9.0)]
    assert api.get_score(lab.student_item())["points_earned"] == 9


def test_an_override_to_a_fraction_of_a_point_hides_the_worker_score(make) -> None:
    lab = make(CHECKED.format(weight=1))
    lab.run(1.0)
    grading.publish_run(CheckRun.objects.get().pk)
    lab.block.set_score(Score(raw_earned=0.25, raw_possible=1.0))
    lab.block.publish_grade()
    assert lab.published("grade")[-1]["value"] == 0.25
    assert api.get_score(lab.student_item()) is None  # so the courseware record (0.25) counts


def test_rescoring_follows_has_submitted_answer_then_calculate_score(make) -> None:
    lab = make(CHECKED.format(weight=5))
    block = lab.block
    assert block.has_submitted_answer() is False  # the platform skips this learner
    with pytest.raises(ValueError, match="Cannot rescore unanswered problem"):
        block.rescore(only_if_higher=False)
    lab.run(0.6, weight=5)  # scored by the worker; the page never collected it
    assert block.raw_earned is None and block.has_submitted_answer() is True
    block.rescore(only_if_higher=True)
    assert lab.published("grade") == [{"value": pytest.approx(3.0), "max_value": 5.0, "only_if_higher": True}]
    score = api.get_score(lab.student_item())
    assert (score["points_earned"], score["points_possible"]) == (3, 5)


def test_without_edx_submissions_the_page_publishes_on_collect(make) -> None:
    lab = make(CHECKED.format(weight=3))
    apps = [app for app in settings.INSTALLED_APPS if app != "submissions"]
    with override_settings(INSTALLED_APPS=apps):
        run = lab.run(2 / 3, weight=3)
        assert grading.publish_run(run.pk) == grading.UNAVAILABLE  # the worker cannot
        lab.call("check_result")
        assert lab.published("grade") == [{"value": pytest.approx(2.0), "max_value": 3.0,
                                           "only_if_higher": None}]
    assert api.get_score(lab.student_item()) is None


def test_staff_viewing_as_the_learner_do_not_complete_the_lab(make) -> None:
    lab = make(UNCHECKED)
    lab.lab_row()
    learner = lab.learner
    learner.real_user = get_user_model().objects.create(username="staff")  # as edx-platform masquerades
    lab.runtime._services["user"] = PlatformUserService(learner, user_is_staff=True)
    assert lab.call("status")["ready"] is True
    assert lab.published("completion") == [] and lab.block.completed is False


def test_a_run_staff_started_as_the_learner_is_never_the_learners_score(make) -> None:
    lab = make(CHECKED.format(weight=4))
    lab.run(0.5, weight=4)
    lab.call("check_result")  # the learner's own run: 2 of 4
    staff_run = lab.run(1.0, weight=4, actor="staff:99")  # staff, viewing as the learner, checked later
    assert grading.publish_run(staff_run.pk) == grading.BY_STAFF  # the worker does not publish it
    answer = lab.call("check_result")  # the learner opens the unit: they see the run, it is not graded
    assert answer["state"] == "done" and answer["score"] == 1.0
    assert lab.published("grade") == [{"value": 2.0, "max_value": 4.0, "only_if_higher": None}]
    lab.block.rescore(only_if_higher=False)  # nor does rescoring take it
    assert lab.published("grade")[-1]["value"] == 2.0
    score = api.get_score(lab.student_item())
    assert (score["points_earned"], score["points_possible"]) == (2, 4)
