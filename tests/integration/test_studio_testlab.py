"""\"Test this lab\" in Studio, through the workbench runtime in author mode, with a real engine.

A real Celery worker and beat on a private Redis, and the HTTP cloud fake (the local
provider, with real sshd, where the checks must log in). The block is driven through
``runtime.handle`` as Studio's preview handler does; ``runtime.is_author_mode`` is
what Studio's preview runtime says. Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import getpass
import itertools
import json
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from lxml import html
from webob import Request

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime

from labxblock.demo.scenario import TEMPLATE as LOCAL_TEMPLATE
from labxblock.labs.usage import lab_usage
from labxblock.lifecycle import State
from labxblock.models import CheckRun, Lab, LabEvent
from labxblock.tickets import ReplayGuard, verify_ticket
from tests import studio_auth_standin
from tests.engine_harness import TEST_TICKET_KEYS, lab_template, wait_for
from tests.services import missing_service

pytestmark = [pytest.mark.redis, pytest.mark.slow]
_scenario = itertools.count()
STUDIO_ONLY = "Test labs are launched from Studio, by the course team."
TEST_HANDLERS = ("test_launch", "test_status", "test_stop", "test_terminal", "test_check",
                 "test_check_result")
PHASES = ["queued", "created", "outputs_read", "port_reachable"]


def lab_xml(template: str, *, checks: str = "", **attrs: str) -> str:
    extra = "".join(f' {name}="{value}"' for name, value in attrs.items())
    return (f'<labxblock display_name="Tested lab"{extra}><template><![CDATA[{template}]]></template>'
            f"{checks}</labxblock>")


@dataclass
class Author:
    """One block in a workbench runtime in author mode: what Studio's preview gives the author."""

    runtime: WorkbenchRuntime
    block: Any

    def call(self, handler: str, data: dict | None = None) -> dict:
        request = Request.blank("/", method="POST", body=json.dumps(data or {}).encode())
        return json.loads(self.runtime.handle(self.block, handler, request).body)

    def wait_ready(self, timeout: float = 30) -> dict:
        return wait_for("the test lab ready", lambda: (a := self.call("test_status"))["ready"] and a, timeout)

    def lab(self) -> Lab:
        return Lab.objects.get(lab_key__startswith="studio-test:", learner__username=f"workbench-{self.who}")

    @property
    def who(self) -> str:
        return self.runtime.user_id


def studio(xml: str, who: str = "author", *, author_mode: bool = True) -> Author:
    runtime = WorkbenchRuntime(who)
    runtime.id_generator.set_scenario(f"testlab-{next(_scenario)}")
    if author_mode:
        runtime.is_author_mode = True
    block = runtime.get_block(runtime.parse_xml_string(xml))
    runtime.render(block, "author_view")  # the workbench makes its Django user for the author here
    return Author(runtime, block)


# --- only in Studio ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("handler", TEST_HANDLERS)
def test_outside_studio_no_test_handler_touches_a_lab(handler, django_capture_on_commit_callbacks) -> None:
    learner = studio(lab_xml(lab_template(22)), "ada", author_mode=False)
    with django_capture_on_commit_callbacks() as sent:
        assert learner.call(handler) == {"error": STUDIO_ONLY}
    assert Lab.objects.count() == 0 and CheckRun.objects.count() == 0 and sent == []


NO_EDIT_ACCESS = "Only the course team can test this lab: it needs edit access to this course in Studio."
WORKBENCH_COURSE = "course-v1:edX+Demo+2020"  # the course id the workbench gives every block


@pytest.mark.django_db
@pytest.mark.parametrize("handler", TEST_HANDLERS)
def test_a_user_without_edit_access_to_the_course_is_refused(handler, django_capture_on_commit_callbacks
                                                            ) -> None:
    """Studio's preview handler asks only for a login; edx-platform's course roles decide the rest.

    edx-platform is not installed here: its ``has_studio_write_access`` is the stand-in's, put where
    ``compat`` imports it (the boundary, as the cloud fake is the cloud's), with edx-platform's rules.
    """
    with studio_auth_standin.installed() as roles:
        user = get_user_model().objects.create_user("workbench-mallory")  # signed in, as in Studio
        stranger = studio(lab_xml(lab_template(22)), "mallory")
        roles.grant(user, "staff", "course-v1:edX+Other+2020")  # the team of another course
        with django_capture_on_commit_callbacks() as sent:
            assert stranger.call(handler) == {"error": NO_EDIT_ACCESS}
        assert Lab.objects.count() == 0 and CheckRun.objects.count() == 0 and sent == []


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["course staff", "org instructor", "global staff"])
def test_the_course_team_passes_the_edit_access_check(who) -> None:
    with studio_auth_standin.installed() as roles:
        user = get_user_model().objects.create_user("workbench-ann")
        author = studio(lab_xml(lab_template(22)), "ann")
        if who == "course staff":
            roles.grant(user, "staff", WORKBENCH_COURSE)
        elif who == "org instructor":
            roles.grant(user, "instructor", "org:edX")
        else:
            get_user_model().objects.filter(pk=user.pk).update(is_staff=True)
        answer = author.call("test_check_result")
    assert answer.get("error") != NO_EDIT_ACCESS and answer["state"] is None  # no run yet, nothing refused


@pytest.mark.django_db
def test_on_a_site_without_labxblock_settings_the_author_view_says_so(settings) -> None:
    settings.XBLOCK_SETTINGS = {}
    author = studio(lab_xml(lab_template(22)))
    page = html.fromstring(author.runtime.render(author.block, "author_view").content)
    [note] = page.cssselect("[data-role=test] .labxblock-note")
    assert note.text == "Labs are not configured on this site."
    assert not page.cssselect("[data-action=test-launch]")
    assert author.call("test_launch") == {"error": "Labs are not configured on this site."}
    assert not Lab.objects.exists()


# --- with the engine and the cloud fake ---------------------------------------------------------


def test_launch_reaches_ready_listing_phases_and_outputs_without_a_secret(engine_factory, cloud_fake) -> None:
    cloud_fake.configure(delays={"create": 1.5})
    engine = engine_factory()
    author = studio(lab_xml(lab_template(engine.lab_port.port)))
    first = author.call("test_launch")
    assert first["phase"] == "queued" and first["error"] is None
    answers = [first, ready := author.wait_ready()]
    lab = author.lab()
    assert lab.lab_key == f"studio-test:{author.block.scope_ids.usage_id}"  # never the learners' lab key

    seconds = [p["seconds"] for p in ready["phases"]]
    assert [p["name"] for p in ready["phases"]] == PHASES and None not in seconds
    assert seconds == sorted(seconds) and seconds[0] == 0 and seconds[1] >= 1.5  # the cloud's 1.5 s create
    labels = ["Queued", "Stack created", "Outputs read", "Port reachable"]
    assert [p["label"] for p in ready["phases"]] == labels
    assert {o["name"]: (o["required"], o["state"]) for o in ready["outputs"]} == {
        "public_ip": (True, "present"), "private_key": (True, "present"), "password": (False, "present"),
        "host_key": (False, "present"), "port": (False, "present"), "check_user": (False, "missing"),
        "check_private_key": (False, "missing"),
    }
    assert ready["deletes"] == "Deleted automatically in 30 min, or when you press Stop."
    shown = json.dumps(answers) + author.runtime.render(author.block, "author_view").content
    for secret in (lab.private_key, lab.password):
        assert secret and secret not in shown
    # The cloud knows it for a test lab: the site's tag and the test tag.
    [stack] = [s for s in cloud_fake.cloud.listing(["labxblock-test"]) if s.name == lab.stack_name]
    assert stack.tags == ["labxblock-test", "labxblock-studio-test"]
    assert Lab.objects.filter(idle_at__isnull=False, pk=lab.pk).count() == 0  # never suspended for idleness


def test_missing_outputs_are_shown_missing(engine_factory) -> None:
    engine = engine_factory()
    # The contract's required key, missing.
    template = lab_template(engine.lab_port.port).replace(
        "  private_key:\n    value: {get_attr: [password, value]}\n", "")
    assert "private_key" not in template
    author = studio(lab_xml(template))
    author.call("test_launch")
    ready = author.wait_ready()
    states = {o["name"]: o["state"] for o in ready["outputs"]}
    assert states["private_key"] == "missing" and states["public_ip"] == "present"
    page = html.fromstring(author.runtime.render(author.block, "author_view").content)
    problems = [li.text_content() for li in page.cssselect(".labxblock-problems li")]
    assert "The template (inline) lacks the outputs: private_key." in problems  # and Studio says why


def test_the_terminal_is_for_the_author_and_the_test_lab(engine_factory) -> None:
    engine = engine_factory()
    author = studio(lab_xml(lab_template(engine.lab_port.port)))
    assert author.call("test_terminal") == {"error": "Your lab is not ready yet."}
    author.call("test_launch")
    author.wait_ready()
    lab = author.lab()
    url = urlsplit(author.call("test_terminal")["url"])
    assert url.path.rstrip("/").endswith(f"/console/{lab.stack_name}") and not url.query
    ticket = verify_ticket(TEST_TICKET_KEYS, parse_qs(url.fragment)["ticket"][0], replay_guard=ReplayGuard(),
                           stack_name=lab.stack_name, learner_id=str(lab.learner_id))
    assert (ticket.host, ticket.port) == ("127.0.0.1", engine.lab_port.port)


def test_stop_deletes_the_stack(engine_factory) -> None:
    engine = engine_factory()
    author = studio(lab_xml(lab_template(engine.lab_port.port)))
    author.call("test_launch")
    author.wait_ready()
    stack = author.lab().stack_name
    stopped = author.call("test_stop")
    assert stopped["phase"] == "deleting" and stopped["deletes"] is None
    wait_for("the stack deleted", lambda: stack not in engine.stacks(), 30)
    wait_for("phase deleted", lambda: author.call("test_status")["phase"] == "deleted", 10)
    assert LabEvent.objects.filter(reason="test lab stopped", actor__startswith="author:").exists()


def test_a_test_lab_is_deleted_after_the_timeout_without_being_suspended(engine_factory) -> None:
    engine = engine_factory(studio_test_lab_timeout=3, suspend_timeout=1)  # reaper every 5 s
    author = studio(lab_xml(lab_template(engine.lab_port.port)))
    author.call("test_launch")
    author.wait_ready()
    lab = author.lab()
    assert lab.delete_by - lab.last_seen_at == timedelta(seconds=3)
    wait_for("the stack deleted by the reaper", lambda: lab.stack_name not in engine.stacks(), 40)
    reasons = set(LabEvent.objects.filter(lab=lab).values_list("reason", flat=True))
    assert "unused" in reasons and "idle" not in reasons  # the reaper's, never the idle suspender's
    assert not LabEvent.objects.filter(lab=lab, to_state=State.SUSPENDING).exists()


def test_pressing_test_again_never_keeps_a_test_lab_longer(engine_factory) -> None:
    engine = engine_factory(studio_test_lab_timeout=600)
    author = studio(lab_xml(lab_template(engine.lab_port.port)))
    author.call("test_launch")
    launched = LabEvent.objects.get(lab=author.lab(), reason="test launch requested").at
    author.wait_ready()
    deletes = author.lab().delete_by
    assert timedelta(seconds=599) < deletes - launched < timedelta(seconds=601)  # from the launch
    for _ in range(3):  # the lab is up: each press takes the launch's "already up" path
        time.sleep(0.05)
        assert author.call("test_launch")["ready"] is True
    assert author.lab().delete_by == deletes
    assert author.call("test_status")["deletes"] == "Deleted automatically in 10 min, or when you press Stop."


def test_relaunching_after_a_change_rebuilds_from_the_saved_settings(engine_factory, cloud_fake) -> None:
    engine = engine_factory()
    author = studio(lab_xml(lab_template(engine.lab_port.port)))
    author.call("test_launch")
    author.wait_ready()
    old = author.lab().stack_name
    assert author.call("test_launch")["ready"] is True  # unchanged: the same lab, nothing rebuilt
    author.block.stack_user = "student"  # the author saves a change
    rebuilding = author.call("test_launch")
    assert (rebuilding["phase"], rebuilding["label"]) == ("rebuilding",
                                                         "Rebuilding the test lab from the saved settings")
    ready = author.wait_ready()
    assert [p["seconds"] is not None for p in ready["phases"]] == [True] * 4  # this launch's phases
    assert author.lab().stack_user == "student"
    assert engine.stacks() == {old}  # the name stays; the stack is a new one
    assert cloud_fake.counters()["stack_create"] == 2 and cloud_fake.counters()["stack_delete"] == 1


def test_testing_a_failed_lab_again_tries_again(engine_factory, cloud_fake) -> None:
    engine = engine_factory()
    cloud_fake.configure(quota_exceeded=True)
    author = studio(lab_xml(lab_template(engine.lab_port.port)))
    author.call("test_launch")
    failed = wait_for("failed", lambda: (a := author.call("test_status"))["phase"] == "failed" and a, 30)
    assert failed["label"] == "The test lab could not be started"
    assert "create_failed" in failed["error"]  # the author is course staff: the reason, in one word
    cloud_fake.configure(quota_exceeded=False)
    assert author.call("test_launch")["phase"] == "queued"
    assert author.wait_ready()["label"] == "The test lab is ready"


def test_the_cap_per_course_refuses_the_next_test_lab_until_one_is_stopped(engine_factory) -> None:
    engine = engine_factory(studio_test_labs_per_course=1)
    xml = lab_xml(lab_template(engine.lab_port.port))
    first, second = studio(xml, "ada"), studio(xml, "bob")
    assert first.call("test_launch")["error"] is None
    assert second.call("test_launch") == {"error": (
        "This course already has 1 test labs running, the most this site allows (1). Stop one, or wait "
        "until one is deleted, then try again.")}
    assert Lab.objects.count() == 1
    assert first.call("test_launch")["error"] is None  # the author's own lab is not a new one
    first.call("test_stop")
    assert second.call("test_launch")["error"] is None
    assert Lab.objects.filter(desired="up").count() == 1


@pytest.mark.mariadb  # the cap is counted under a row lock there
def test_authors_launching_at_once_never_overshoot_the_cap(engine_factory) -> None:
    engine = engine_factory(studio_test_labs_per_course=2, beat=False)
    xml = lab_xml(lab_template(engine.lab_port.port))
    authors = [studio(xml, f"author{i}") for i in range(5)]  # five authors, five blocks of one course
    barrier = threading.Barrier(len(authors))
    answers: list[dict] = []

    def press(author: Author) -> None:
        barrier.wait()
        try:
            answers.append(author.call("test_launch"))
        finally:
            connection.close()

    threads = [threading.Thread(target=press, args=(author,)) for author in authors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 5
    assert sorted(a.get("error") is None for a in answers) == [False, False, False, True, True], answers
    assert Lab.objects.filter(lab_key__startswith="studio-test:").count() == 2


def test_a_site_can_turn_test_labs_off(engine_factory) -> None:
    engine = engine_factory(studio_test_labs=False, beat=False)
    author = studio(lab_xml(lab_template(engine.lab_port.port)))
    assert author.call("test_launch") == {"error": "Test labs are turned off on this site."}
    assert not Lab.objects.exists()
    page = html.fromstring(author.runtime.render(author.block, "author_view").content)
    assert not page.cssselect("[data-action=test-launch]")
    assert "Test labs are turned off on this site." in page.cssselect("[data-role=test]")[0].text_content()


def test_a_test_lab_never_counts_as_a_learners_lab_in_usage(engine_factory) -> None:
    engine = engine_factory()
    xml = lab_xml(lab_template(engine.lab_port.port))
    author = studio(xml, "author")
    author.call("test_launch")
    author.wait_ready()
    runtime = WorkbenchRuntime("ada")  # the same block, in the LMS
    learner = Author(runtime, runtime.get_block(author.block.scope_ids.usage_id))
    runtime.render(learner.block, "student_view")
    learner.call("status", {"launch": True})
    wait_for("the learner's lab", lambda: learner.call("status")["ready"], 30)
    used = lab_usage(since=timezone.now() - timedelta(hours=1), until=timezone.now())
    assert [key for _, _, key in used] == [Lab.objects.get(learner__username="workbench-ada").lab_key]
    assert not any(key.startswith("studio-test:") for _, _, key in used)


# --- checks, in a real lab (the local provider's sshd) ------------------------------------------

CHECKS = ('<check name="marker"><![CDATA[test -f ~/marker]]></check>'
          '<check name="shell"><![CDATA[echo fine]]></check>')


def test_checks_run_in_the_test_lab_with_their_results_and_are_never_graded(engine_factory, tmp_path) -> None:
    if not Path("/usr/sbin/sshd").exists():
        missing_service("openssh-server is not installed")
    engine_factory(providers={"default": {"type": "local", "root": str(tmp_path / "labs"),
                                          "allowed_networks": ["127.0.0.0/8"]}})
    xml = lab_xml(LOCAL_TEMPLATE, checks=CHECKS, stack_user=getpass.getuser())
    author = studio(xml)
    assert author.call("test_check_result")["state"] is None
    author.call("test_launch")
    author.wait_ready()
    started = author.call("test_check")
    assert started["running"] is True
    done = wait_for("the checks", lambda: not (a := author.call("test_check_result"))["running"] and a, 60)
    assert [(r["name"], r["passed"]) for r in done["results"]] == [("marker", False), ("shell", True)]
    assert done["message"] == "1 of 2 checks passed. Score: 50%."
    run = CheckRun.objects.get()
    assert run.usage_id == run.lab_key == author.lab().lab_key  # apart from the block's graded runs
    from submissions.models import Submission

    assert not Submission.objects.exists()  # the worker published nothing to the gradebook
    runtime = WorkbenchRuntime("author")  # the same block and author, in the LMS
    lms = Author(runtime, runtime.get_block(author.block.scope_ids.usage_id))
    assert lms.call("check_result")["state"] is None  # the learner-side history does not show it
