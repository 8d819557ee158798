"""Progress checks end to end: the block's handlers in the workbench runtime, labs, a real Celery
worker on a private Redis, and a real OpenSSH server standing in for the learner's lab.

The lab row is made READY directly, its address, user and key pointing at the sshd
fixture (the launch itself is tested elsewhere). Grades are what the block hands the
runtime's ``publish`` and what the worker records in edx-submissions (the real app, whose
tables the worker shares). Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from webob import Request

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from submissions import api as submissions_api
from submissions.models import Score, StudentItem
from workbench.runtime import WorkbenchRuntime

from labxblock import compat
from labxblock.labs import grading
from labxblock.lifecycle import Desired, State
from labxblock.models import CheckRun, Lab
from tests.engine_harness import wait_for
from tests.integration.test_block_lab_flow import PlatformUserService
from tests.services.sshd import AccountsServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

XML = """<labxblock display_name="Checked lab" weight="10">
  <template>/static/lab.yaml</template>
  <check name="done file" weight="3"
         hint="Create the file done in your home directory."><![CDATA[test -f "$HOME/done"]]></check>
  <check name="shell works"><![CDATA[#!/bin/sh
echo ok]]></check>
  <check name="slow" timeout="{slow_timeout}"><![CDATA[#!/bin/sh
sleep {slow_sleep}]]></check>
</labxblock>"""


@dataclass
class Checked:
    """One learner's block, their lab row, and the grades the block published."""

    runtime: WorkbenchRuntime
    block: Any
    lab: Lab
    home: Any
    grades: list[dict] = field(default_factory=list)

    def call(self, handler: str, data: dict | None = None, runtime: WorkbenchRuntime | None = None) -> dict:
        request = Request.blank("/", method="POST", body=json.dumps(data or {}).encode())
        return json.loads((runtime or self.runtime).handle(self.block, handler, request).body)

    def finished(self, timeout: float = 40) -> dict:
        """Poll ``check_result`` as the page does until the run is over."""
        answers: list[dict] = []

        def over() -> bool:
            answers.append(self.call("check_result"))
            return not answers[-1]["running"]

        wait_for("the check run to finish", over, timeout=timeout, interval=0.3)
        return answers[-1]


@pytest.fixture
def checked(engine_factory, sshd) -> Callable[..., Checked]:
    engine_factory(beat=False)  # a real worker; no reconciler to touch the hand-made lab row

    def make(slow_timeout: int = 2, slow_sleep: int = 0, xml: str = "", **lab_fields: Any) -> Checked:
        runtime = WorkbenchRuntime("ada")
        runtime.id_generator.set_scenario("checks")
        block = runtime.get_block(runtime.parse_xml_string(
            xml or XML.format(slow_timeout=slow_timeout, slow_sleep=slow_sleep)))
        request = Request.blank("/", method="POST", body=b"{}")
        assert json.loads(runtime.handle(block, "check_result", request).body)["state"] is None  # no runs yet
        # Only now does the block know its course run: the workbench patches it in on the first call.
        user = get_user_model().objects.get(username=f"{compat.WORKBENCH_USER_PREFIX}ada")
        fields = {"state": State.READY.value, "desired": Desired.UP.value, "ip": sshd.host, "port": sshd.port,
                  "stack_user": sshd.username, "private_key": sshd.private_key,
                  "outputs": {"host_key": sshd.host_key}, "provider": "default", **lab_fields}
        lab = Lab.objects.create(learner=user, course_run=compat.course_run(block), lab_key=block._lab_key(),
                                 **fields)
        home = sshd.workdir / "home"
        (home / "done").unlink(missing_ok=True)
        result = Checked(runtime, block, lab, home)
        runtime.publish = lambda blk, event, data: result.grades.append(data) if event == "grade" else None
        return result

    return make


def test_partial_credit_with_hint_then_full_marks_then_rescoring(checked) -> None:
    c = checked()
    started = c.call("check")
    assert started["running"] is True and started["poll_ms"]
    answer = c.finished()
    assert answer["state"] == "done"
    assert answer["message"] == "2 of 3 checks passed. Score: 40%."  # weights 3 (failed), 1, 1 of 5
    assert answer["results"] == [
        {"name": "done file", "passed": False, "label": "Not yet",
         "hint": "Create the file done in your home directory."},
        {"name": "shell works", "passed": True, "label": "Passed", "hint": ""},
        {"name": "slow", "passed": True, "label": "Passed", "hint": ""},
    ]
    # Points: the share of passed checks times the lab's weight (10).
    assert c.grades == [{"value": pytest.approx(4.0), "max_value": 10.0, "only_if_higher": None}]
    assert c.block.raw_earned == pytest.approx(0.4)
    c.call("check_result")
    assert len(c.grades) == 1  # a result is published once, however often the page asks

    (c.home / "done").write_text("")
    c.call("check")
    answer = c.finished()
    assert answer["message"] == "3 of 3 checks passed. Score: 100%."
    assert [g["value"] for g in c.grades] == [pytest.approx(4.0), 10.0]
    assert [h["score"] for h in answer["history"]] == [1.0, pytest.approx(0.4)]  # newest first

    # Instructor rescoring takes the last recorded run, not whatever the field holds.
    c.block.raw_earned = 0.1
    c.block.rescore(only_if_higher=False)
    assert c.grades[-1] == {"value": 10.0, "max_value": 10.0, "only_if_higher": False}
    run = CheckRun.objects.order_by("-pk").first()
    assert run.score == 1.0 and run.lab_id == c.lab.pk and run.usage_id == str(c.block.scope_ids.usage_id)


def test_a_finished_check_reaches_the_gradebook_with_no_page_open(checked) -> None:
    c = checked()
    c.call("check")  # the learner presses Check and closes the tab: nothing polls check_result
    usage_id = str(c.block.scope_ids.usage_id)
    item = grading.student_item(c.lab.learner, compat.course_run(c.block), usage_id)
    wait_for("the worker's score in edx-submissions", lambda: submissions_api.get_score(item) is not None,
             timeout=40, interval=0.3)
    # What the LMS's grades app reads first, for this learner's anonymous id and this block; the
    # worker's set_score stored this Score and sent score_set with exactly these values.
    score = Score.objects.select_related("student_item").get()
    assert (score.points_earned, score.points_possible) == (4, 10)  # 2 of 5 check weights, of 10 points
    student = score.student_item
    assert (student.student_id, student.course_id, student.item_id, student.item_type) == (
        "ada", compat.course_run(c.block), usage_id, "labxblock")
    assert c.grades == [] and c.block.raw_earned is None  # the block's runtime published nothing
    assert CheckRun.objects.get().state == "done"

    # When the learner comes back, the page collects the same run: the runtime gets it, once.
    assert c.call("check_result")["state"] == "done"
    assert c.grades == [{"value": pytest.approx(4.0), "max_value": 10.0, "only_if_higher": None}]
    assert Score.objects.count() == 1 and StudentItem.objects.count() == 1


def test_checks_staff_run_as_the_learner_never_change_the_learners_grade(checked) -> None:
    c = checked()
    (c.home / "done").write_text("")  # full marks for whoever checks now
    learner = c.lab.learner
    learner.real_user = get_user_model().objects.create(username="staff-sam", is_staff=True)  # masquerade
    workbench_user = c.runtime._services["user"]
    c.runtime._services["user"] = PlatformUserService(learner, user_is_staff=True)  # as edx-platform's
    c.call("check")
    wait_for("the staff run to finish", lambda: CheckRun.objects.get().state == "done", timeout=40)
    assert CheckRun.objects.get().actor == f"staff:{learner.real_user.pk}"
    c.runtime._services["user"] = workbench_user  # the learner themselves again
    assert c.call("check_result")["message"] == "3 of 3 checks passed. Score: 100%."  # the learner sees it
    assert c.grades == []  # but it is not their score

    (c.home / "done").unlink()
    c.call("check")  # the learner's own run: 2 of 5 check weights, 4 of 10 points
    assert c.finished()["message"] == "2 of 3 checks passed. Score: 40%."
    item = grading.student_item(learner, compat.course_run(c.block), str(c.block.scope_ids.usage_id))
    wait_for("the worker's score", lambda: submissions_api.get_score(item) is not None, timeout=40)
    # The worker published the learner's run only (it published the staff run's first, if at all).
    assert [(s.points_earned, s.points_possible) for s in Score.objects.all()] == [(4, 10)]
    assert c.grades == [{"value": pytest.approx(4.0), "max_value": 10.0, "only_if_higher": None}]


def test_a_hanging_script_is_stopped_and_the_learner_told(checked) -> None:
    c = checked(slow_timeout=1, slow_sleep=600)
    c.call("check")
    answer = c.finished(timeout=30)
    slow = answer["results"][2]
    assert slow["passed"] is False
    assert slow["hint"] == "This check took longer than 1 seconds and was stopped."
    assert c.grades[-1]["value"] == pytest.approx(2.0)


def test_a_paused_lab_is_not_checked_and_not_scored(checked) -> None:
    c = checked(state=State.SUSPENDED.value, desired=Desired.SUSPENDED.value)
    answer = c.call("check")
    assert answer["state"] == "failed" and answer["running"] is False
    assert "Resume your lab, then check again" in answer["message"]
    assert answer["score"] is None and answer["results"] == []
    assert c.grades == [] and c.block.raw_earned is None
    assert CheckRun.objects.get().reason == "not_ready"


def test_a_lab_that_does_not_answer_is_not_scored(checked) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    c = checked(port=closed)
    c.call("check")
    answer = c.finished()
    assert answer["state"] == "failed" and "did not answer" in answer["message"]
    assert c.grades == [] and CheckRun.objects.get().reason == "unreachable"


@pytest.mark.mariadb  # the one-run guarantee rests on the lab row lock there
def test_two_check_requests_at_once_start_one_run(checked) -> None:
    c = checked(slow_timeout=3, slow_sleep=2)
    usage_id = c.block.scope_ids.usage_id
    barrier = threading.Barrier(3)
    answers: list[dict] = []

    def press() -> None:
        runtime = WorkbenchRuntime("ada")  # a second tab: its own runtime, the same block
        block = runtime.get_block(usage_id)
        barrier.wait()
        try:
            request = Request.blank("/", method="POST", body=b"{}")
            answers.append(json.loads(runtime.handle(block, "check", request).body))
        finally:
            connection.close()

    threads = [threading.Thread(target=press) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(answers) == 3 and all(a["running"] for a in answers), answers
    assert CheckRun.objects.count() == 1
    answer = c.finished()
    assert answer["state"] == "done" and len(c.grades) == 1


def test_a_check_account_runs_the_checks_and_a_learners_forged_key_changes_nothing(
    checked, accounts_sshd: AccountsServer,
) -> None:
    """The template's check account (outputs check_user, check_private_key), through the real worker."""
    server = accounts_sshd
    xml = f"""<labxblock display_name="Checked lab">
      <template>/static/lab.yaml</template>
      <check name="as the check account"><![CDATA[test "$(id -un)" = {server.checker.name}]]></check>
      <check name="not done" hint="Start nginx."><![CDATA[exit 1]]></check>
    </labxblock>"""
    c = checked(xml=xml, ip=server.host, port=server.port, stack_user=server.learner.name,
                private_key=server.learner.private_key,
                secret_outputs=json.dumps({"check_private_key": server.checker.private_key}),
                outputs={"host_key": server.host_key, "check_user": server.checker.name})
    # The learner forces "exit 0" on their own key: checks run as them would all pass now.
    keys = server.learner_keys
    keys.write_text('command="exit 0" ' + keys.read_text())

    c.call("check")
    answer = c.finished()
    assert answer["state"] == "done", answer
    assert [(r["name"], r["passed"]) for r in answer["results"]] == [
        ("as the check account", True), ("not done", False)]
    assert c.grades == [{"value": pytest.approx(0.5), "max_value": 1.0, "only_if_higher": None}]
