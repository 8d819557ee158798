"""Analytics events: the block's through ``runtime.publish`` (captured in the workbench), the worker's
through edx-platform's tracker (event-tracking with an in-memory backend), and compat's contract.

Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from webob import Request

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime

from labxblock import compat
from labxblock.labs import budgets, checking, engine, operator
from labxblock.lifecycle import Desired, State
from labxblock.models import CheckRun, Lab, LabEvent
from tests.engine_harness import active_lab_settings, lab_settings
from tests.integration.test_block_lab_flow import lab_xml

pytestmark = pytest.mark.django_db
tracker_module = pytest.importorskip("eventtracking.tracker")  # in the test extras, as in the LMS
PROVIDER = {"type": "openstack", "auth_url": "http://127.0.0.1:9/v3", "username": "u", "password": "p",
            "project_name": "p", "user_domain_name": "Default", "project_domain_name": "Default"}
FORBIDDEN = ("203.0.113.7", "hunter2", "PRIVATE KEY")  # a lab's address and secrets


class Memory:
    """An event-tracking backend that keeps what it is sent."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def send(self, event: dict) -> None:
        self.events.append(event)


@pytest.fixture
def tracked():
    backend, previous = Memory(), tracker_module.TRACKERS.get(tracker_module.DEFAULT_TRACKER_NAME)
    tracker_module.register_tracker(tracker_module.Tracker(backends={"memory": backend}))
    yield backend
    tracker_module.TRACKERS.pop(tracker_module.DEFAULT_TRACKER_NAME, None)
    if previous is not None:
        tracker_module.register_tracker(previous)


@pytest.fixture
def block_events():
    with active_lab_settings(lab_settings({"default": PROVIDER})):
        runtime = WorkbenchRuntime("ada")
        runtime.id_generator.set_scenario("analytics")
        block = runtime.get_block(runtime.parse_xml_string(lab_xml(2222)))
        block.checks = [{"name": "c", "script": "true"}]
        published: list[tuple[str, dict]] = []
        runtime.publish = lambda blk, name, data: published.append((name, data))

        def call(handler: str, data: dict | None = None) -> dict:
            request = Request.blank("/", method="POST", body=json.dumps(data or {}).encode())
            return json.loads(runtime.handle(block, handler, request).body)

        yield block, call, published


def ours(published: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    return [(name, data) for name, data in published if name.startswith("edx.labxblock.")]


def test_the_block_publishes_launch_reset_and_check_with_their_fields(block_events) -> None:
    block, call, published = block_events
    call("status", {"launch": True})
    ((name, data),) = ours(published)
    usage_id = str(block.scope_ids.usage_id)
    assert name == "edx.labxblock.launch"
    assert data == {"lab_key": block._lab_key(), "usage_id": usage_id, "by_staff": False, "phase": "queued"}
    call("status")  # a status poll is not a launch
    assert len(ours(published)) == 1
    Lab.objects.update(state=State.READY, desired=Desired.UP)
    call("status", {"launch": True})  # already up and ready: nothing moves, nothing published
    assert len(ours(published)) == 1
    call("reset")
    call("check")
    names = [name for name, _ in ours(published)]
    assert names == ["edx.labxblock.launch", "edx.labxblock.reset", "edx.labxblock.check"]
    check = ours(published)[-1][1]
    run = CheckRun.objects.get()
    assert check == {"lab_key": block._lab_key(), "usage_id": usage_id, "run_id": run.pk, "state": "failed",
                     "reason": "not_ready"}


def test_the_worker_emits_ready_suspend_and_resume_through_the_tracker(
        tracked, django_capture_on_commit_callbacks) -> None:
    learner = get_user_model().objects.create_user("lab-user")
    lab = Lab.objects.create(learner=learner, course_run="course-v1:O+An+R", lab_key="k", provider="default",
                             state=State.STARTING, probe_ok=True, ip="203.0.113.7", password="hunter2")
    with active_lab_settings(lab_settings({"default": PROVIDER})), \
            django_capture_on_commit_callbacks(execute=True):
        engine.apply(lab, engine.Observation(State.READY), timezone.now(), "prober")  # the engine's own path
        LabEvent.record(lab, actor="operator:7", reason="suspend requested")  # a decision: not emitted
        LabEvent.record(lab, actor="reconciler", reason="progress", from_state="suspending",
                        to_state="suspended")
        LabEvent.record(lab, actor="reconciler", reason="desired", from_state="suspended",
                        to_state="resuming")
    names = [e["name"] for e in tracked.events]
    assert names == ["edx.labxblock.ready", "edx.labxblock.suspend", "edx.labxblock.resume"]
    ready = tracked.events[0]
    assert ready["data"] == {"course_id": "course-v1:O+An+R", "lab_key": "k", "lab_id": lab.pk,
                             "user_id": learner.pk, "provider": "default", "from_state": "starting",
                             "to_state": "ready", "actor": "prober", "reason": "answered"}
    assert ready["context"]["course_id"] == "course-v1:O+An+R"
    text = json.dumps(tracked.events, default=str)
    assert not [word for word in FORBIDDEN if word in text]


def test_a_budget_stopping_a_lab_and_a_grant_are_emitted_through_the_tracker(
        tracked, django_capture_on_commit_callbacks) -> None:
    learner = get_user_model().objects.create_user("budgeted")
    now = timezone.now()
    lab = Lab.objects.create(learner=learner, course_run="course-v1:O+An+R", lab_key="k", provider="default",
                             state=State.READY, budget_limits={"u": 60.0},
                             up_since=now - timedelta(minutes=2), budget_ends_at=now - timedelta(minutes=1),
                             ip="203.0.113.7", password="hunter2")
    with active_lab_settings(lab_settings({"default": PROVIDER})), \
            django_capture_on_commit_callbacks(execute=True):
        assert budgets.mark_spent(now) == 1  # the tick's pass
        operator.act("grant", [lab.pk], actor="staff:12", seconds=5400)
    exhausted, granted = tracked.events
    assert exhausted["name"] == "edx.labxblock.budget.exhausted"
    assert exhausted["data"] == {"course_id": "course-v1:O+An+R", "lab_key": "k", "lab_id": lab.pk,
                                 "user_id": learner.pk, "actor": "budget"}
    assert granted["name"] == "edx.labxblock.budget.granted"
    assert granted["data"] == {"course_id": "course-v1:O+An+R", "lab_key": "k", "lab_id": lab.pk,
                               "user_id": learner.pk, "actor": "staff", "granted_hours": 1.5}
    text = json.dumps(tracked.events, default=str)
    assert not [word for word in FORBIDDEN if word in text]


def test_nothing_is_emitted_for_a_transaction_that_rolls_back(tracked, django_capture_on_commit_callbacks
                                                            ) -> None:
    learner = get_user_model().objects.create_user("rolled")
    lab = Lab.objects.create(learner=learner, course_run="course-v1:O+An+R", lab_key="k")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        LabEvent.record(lab, actor="reconciler", from_state="starting", to_state="ready")
    assert len(callbacks) == 1 and tracked.events == []  # waits for the commit


def test_a_scored_check_run_emits_check_result(tracked, django_capture_on_commit_callbacks) -> None:
    learner = get_user_model().objects.create_user("checked")
    now = timezone.now()
    run = CheckRun.objects.create(learner=learner, course_run="course-v1:O+An+R", usage_id="u1", lab_key="k",
                                  actor="t", started_at=now, deadline_at=now + timedelta(minutes=5),
                                  checks=[{"name": "a", "hint": ""}, {"name": "b", "hint": ""}])
    results = [{"name": "a", "passed": True, "weight": 1.0, "exit_status": 0, "stdout": "", "stderr": ""},
               {"name": "b", "passed": False, "weight": 3.0, "exit_status": 1, "stdout": "", "stderr": ""}]
    with django_capture_on_commit_callbacks(execute=True):
        assert checking.record_results(run.pk, results)
    ((event),) = tracked.events
    assert event["name"] == "edx.labxblock.check_result"
    assert event["data"] == {"course_id": "course-v1:O+An+R", "lab_key": "k", "usage_id": "u1",
                             "run_id": run.pk, "user_id": learner.pk, "score": 0.25, "checks": 2, "passed": 1}


def test_compat_without_event_tracking_is_a_logged_no_op(monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "eventtracking", None)  # as on a site without it: ImportError
    with caplog.at_level(logging.DEBUG, logger="labxblock.compat"):
        assert compat.emit_tracking_event("edx.labxblock.ready", {"lab_id": 1}, course_run="c") is False
    assert "no event tracker here; not emitted: edx.labxblock.ready" in caplog.text


def test_compat_with_event_tracking_but_no_tracker_set_up_is_a_logged_no_op(monkeypatch, caplog) -> None:
    monkeypatch.setattr(tracker_module, "TRACKERS", {})  # a process whose apps registered none
    with caplog.at_level(logging.DEBUG, logger="labxblock.compat"):
        assert compat.emit_tracking_event("edx.labxblock.suspend", {"lab_id": 1}) is False
    assert "no event tracker set up; not emitted: edx.labxblock.suspend" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_failing_tracker_never_fails_the_caller_and_is_logged(caplog) -> None:
    class Broken(tracker_module.Tracker):
        def emit(self, name=None, data=None):
            raise RuntimeError("tracker down")

    previous = tracker_module.TRACKERS.get(tracker_module.DEFAULT_TRACKER_NAME)
    tracker_module.register_tracker(Broken())
    try:
        sent = compat.emit_tracking_event("edx.labxblock.ready", {"lab_id": 1}, course_run="c")
    finally:
        tracker_module.TRACKERS.pop(tracker_module.DEFAULT_TRACKER_NAME, None)
        if previous is not None:
            tracker_module.register_tracker(previous)
    assert sent is False
    assert "tracking event edx.labxblock.ready was not emitted" in caplog.text


def test_a_studio_test_lab_emits_nothing(tracked, django_capture_on_commit_callbacks) -> None:
    """The author's test lab (labs.testlabs) is not a learner's lab: no ready event, no check result."""
    author = get_user_model().objects.create_user("an-author")
    lab = Lab.objects.create(learner=author, course_run="course-v1:O+An+R", lab_key="studio-test:block-v1:x",
                             provider="default", state=State.STARTING, probe_ok=True, ip="127.0.0.1")
    run = CheckRun.objects.create(lab=lab, learner=author, course_run=lab.course_run, usage_id=lab.lab_key,
                                  lab_key=lab.lab_key, actor="author:1", started_at=timezone.now(),
                                  deadline_at=timezone.now() + timedelta(minutes=1))
    with active_lab_settings(lab_settings({"default": PROVIDER})), \
            django_capture_on_commit_callbacks(execute=True):
        engine.apply(lab, engine.Observation(State.READY), timezone.now(), "prober")
        checking.record_results(run.pk, [{"name": "c", "passed": True, "weight": 1.0}])
    assert Lab.objects.get(pk=lab.pk).state == State.READY and CheckRun.objects.get().state == "done"
    assert tracked.events == []
