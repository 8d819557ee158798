"""LabBlock's JSON handlers that need no lab engine, through the workbench runtime.

The lab handlers (status/launch, keepalive, reset, retry, terminal) call labxblock.labs;
their engine tests come with it. Here the terminal handler meets hand-made lab rows:
refused addresses and ports, and what an error report of a failing handler shows.
Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import copy
import json
import secrets

import pytest
from django.conf import settings
from django.test import RequestFactory, override_settings
from django.views.debug import ExceptionReporter, technical_500_response
from webob import Request

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from django.contrib.auth import get_user_model
from workbench.runtime import WorkbenchRuntime

from labxblock import compat, messages
from labxblock.lifecycle import Desired, Reason, State
from labxblock.models import Lab
from labxblock.providers.local import keypair

pytestmark = pytest.mark.django_db
XML = '<labxblock><port name="ssh" number="22"/><port name="web" number="8080"/></labxblock>'
# Made at run time: an error report quotes source lines, and these must not be in any.
PRIVATE_KEY, _ = keypair()
PASSWORD = secrets.token_urlsafe(16)


def call(runtime, block, handler: str, data: dict) -> dict:
    request = Request.blank("/", method="POST", body=json.dumps(data).encode())
    return json.loads(runtime.handle(block, handler, request).body)


@pytest.fixture
def lab():
    runtime = WorkbenchRuntime("student_1")
    runtime.id_generator.set_scenario("handlers")
    return runtime, runtime.get_block(runtime.parse_xml_string(XML))


def test_choose_port_remembers_an_authored_port(lab) -> None:
    runtime, block = lab
    assert block._port() == 22  # the first port until the learner chooses
    assert call(runtime, block, "choose_port", {"port": 8080}) == {"port": 8080}
    assert block.selected_port == 8080 and block._port() == 8080


def test_choose_port_refuses_other_ports_in_words(lab) -> None:
    runtime, block = lab
    assert call(runtime, block, "choose_port", {"port": 23}) == {"error": "This lab has no such port."}
    assert call(runtime, block, "choose_port", {"port": "22"}) == {"error": "This lab has no such port."}
    assert block.selected_port is None


@pytest.mark.parametrize("xblock_settings", [{}, {"labxblock": {"install_id": "Not A Slug"}}])
@pytest.mark.parametrize(("handler", "data"), [
    ("status", {}), ("status", {"launch": True}), ("reset", {}), ("retry", {}), ("keepalive", {}),
    ("leave", {}), ("terminal", {}), ("check", {}),
])
def test_on_a_site_without_lab_settings_the_learner_is_told_and_the_operator_logs_the_key(
        lab, caplog, handler, data, xblock_settings) -> None:
    runtime, block = lab
    block.checks = [{"name": "c", "script": "true"}]
    with override_settings(XBLOCK_SETTINGS=xblock_settings):
        answer = call(runtime, block, handler, data)
    assert answer == {"error": "Labs are not configured on this site."}
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    key = 'XBLOCK_SETTINGS["labxblock"]' if not xblock_settings else "labxblock.install_id"
    operation = "launch" if data.get("launch") else handler
    assert f"the {operation} handler of {block.scope_ids.usage_id}" in record.getMessage()
    assert f"{key}: expected" in record.getMessage()


def ready_lab(runtime: WorkbenchRuntime, block, **fields) -> Lab:
    """The learner's lab, ready, on 127.0.0.1 (which the test settings allow), with a key and password."""
    call(runtime, block, "keepalive", {})  # the workbench gives the block its course run on a first call
    user = get_user_model().objects.get(username=f"{compat.WORKBENCH_USER_PREFIX}{runtime.user_id}")
    values = {"state": State.READY.value, "desired": Desired.UP.value, "provider": "default",
              "ip": "127.0.0.1", "port": 22, "stack_user": "training", "private_key": PRIVATE_KEY,
              "password": PASSWORD, **fields}
    return Lab.objects.create(learner=user, course_run=compat.course_run(block), lab_key=block._lab_key(),
                              **values)


def default_policy() -> dict:
    """The test settings with the default address policy (no allowed_networks): loopback is refused."""
    value = copy.deepcopy(settings.XBLOCK_SETTINGS)
    del value["labxblock"]["providers"]["default"]["allowed_networks"]
    return value


def test_a_studio_port_outside_1_to_65535_gives_the_learner_words_not_an_exception(caplog) -> None:
    runtime = WorkbenchRuntime("student_1")
    runtime.id_generator.set_scenario("handlers")
    block = runtime.get_block(runtime.parse_xml_string("<labxblock/>"))
    block.ports = [{"name": "web", "number": 70000}]  # Studio's editor saves it, with a warning
    ready_lab(runtime, block)
    assert call(runtime, block, "terminal", {}) == {"error": messages.BAD_PORT}
    assert "lab port 70000 is not a port number (1-65535)" in caplog.text
    assert PASSWORD not in caplog.text and "PRIVATE KEY" not in caplog.text


def test_no_ticket_is_made_for_a_lab_address_the_site_refuses(lab, caplog) -> None:
    runtime, block = lab
    ready_lab(runtime, block)
    with override_settings(XBLOCK_SETTINGS=default_policy()):
        assert call(runtime, block, "terminal", {}) == {"error": messages.ADDRESS_REFUSED}
    assert "lab address 127.0.0.1 is not allowed: loopback" in caplog.text
    assert "url" in call(runtime, block, "terminal", {})  # the same lab, loopback allowed: a ticket


@pytest.mark.parametrize("debug", [True, False])
def test_an_error_report_of_a_failing_terminal_handler_holds_no_key_or_password(lab, debug) -> None:
    runtime, block = lab
    # An empty stack user (an author's slip) makes the handler fail inside mint_ticket, after the
    # lab's key and password were handed to it: the report's frames hold them.
    ready_lab(runtime, block, stack_user="")
    with pytest.raises(ValueError, match="username are required") as info:
        call(runtime, block, "terminal", {})
    request = RequestFactory().post("/handler/terminal", b"{}", content_type="application/json")
    with override_settings(DEBUG=debug):  # DEBUG on: Django hides no variable, only repr can
        html = technical_500_response(request, info.type, info.value, info.tb).content.decode()
        text = ExceptionReporter(request, info.type, info.value, info.tb).get_traceback_text()
    for report in (html, text):
        assert "in mint_ticket" in report  # the report has the frame that held them
        assert PASSWORD not in report
        assert not [line for line in PRIVATE_KEY.splitlines()[1:-1] if line in report]
        assert not [key for key in settings.XBLOCK_SETTINGS["labxblock"]["ticket_keys"] if key in report]


def test_course_staff_read_why_a_lab_failed_in_a_word_and_the_clouds_words_stay_with_operators(lab) -> None:
    from tests.integration.test_block_lab_flow import PlatformUserService

    runtime, block = lab
    cloud_words = "Quota exceeded for project 3f2a9c in RegionOne (https://keystone.internal:5000/v3)"
    reason = f"create_failed: {cloud_words}"
    failed = ready_lab(runtime, block, state=State.FAILED.value, status_reason=reason)
    learner_sees = call(runtime, block, "status", {})["error"]
    assert learner_sees == messages.FAILURES[Reason.CREATE_FAILED]
    runtime._services["user"] = PlatformUserService(failed.learner, user_is_staff=True)  # course staff
    staff_see = call(runtime, block, "status", {})["error"]
    assert staff_see == (f"{learner_sees} For course staff: create_failed; details are in the lab's event "
                         "log (operators).")
    assert "keystone.internal" not in staff_see and "3f2a9c" not in staff_see
    assert Lab.objects.get(pk=failed.pk).status_reason.endswith(cloud_words)  # the admin's and the CLI's
