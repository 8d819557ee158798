"""LabBlock's JSON handlers that need no lab engine, through the workbench runtime.

The lab handlers (status/launch, keepalive, reset, retry, terminal) call labxblock.labs;
their tests come with it. Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import override_settings
from webob import Request

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime

pytestmark = pytest.mark.django_db
XML = '<labxblock><port name="ssh" number="22"/><port name="web" number="8080"/></labxblock>'


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
    ("terminal", {}), ("check", {}),
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
