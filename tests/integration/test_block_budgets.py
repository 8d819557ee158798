"""The time budget and lifecycle scripts through the block's handlers in the workbench runtime: what the
learner's page is told (time left, the 80 % warning once, "used up" instead of a launch), the events the
block publishes, and what the block hands labs (its budget, its scripts in the blueprint).

Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from webob import Request

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime

from labxblock import compat, messages
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent
from tests.engine_harness import active_lab_settings, lab_settings
from tests.integration.test_block_lab_flow import lab_xml

pytestmark = pytest.mark.django_db
PROVIDER = {"type": "openstack", "auth_url": "http://127.0.0.1:9/v3", "username": "u", "password": "p",
            "project_name": "p", "user_domain_name": "Default", "project_domain_name": "Default"}
HOOK = '<hook kind="before_suspend" name="stop" timeout="20"><![CDATA[sudo systemctl stop nginx]]></hook>'


class Page:
    """A learner's page on one block: its handlers, and what the block published."""

    def __init__(self, xml: str) -> None:
        self.runtime = WorkbenchRuntime("ada")
        self.runtime.id_generator.set_scenario("budgets")
        self.block = self.runtime.get_block(self.runtime.parse_xml_string(xml))
        self.published: list[tuple[str, dict]] = []
        self.runtime.publish = lambda blk, name, data: self.published.append((name, data))

    def call(self, handler: str, data: dict | None = None) -> dict:
        request = Request.blank("/", method="POST", body=json.dumps(data or {}).encode())
        return json.loads(self.runtime.handle(self.block, handler, request).body)

    def events(self, name: str) -> list[dict]:
        return [data for event, data in self.published if event == f"edx.labxblock.{name}"]

    def lab(self) -> Lab:
        user = get_user_model().objects.get(username=f"{compat.WORKBENCH_USER_PREFIX}ada")
        return Lab.objects.get(learner=user)


@pytest.fixture
def site():
    with active_lab_settings(lab_settings({"default": PROVIDER})):
        yield


def test_the_block_hands_labs_its_budget_and_its_scripts(site) -> None:
    page = Page(lab_xml(2222).replace("<template>", HOOK + "<template>").replace(
        'display_name="Flow lab"', 'display_name="Flow lab" time_budget_hours="2"'))
    answer = page.call("status", {"launch": True})
    lab = page.lab()
    assert lab.budget_limits == {str(page.block.scope_ids.usage_id): 7200.0}
    assert answer["budget"] == {"limit_seconds": 7200, "used_seconds": 0, "left_seconds": 7200,
                                "warning": False, "exhausted": False, "message": ""}
    assert lab.blueprint.spec["hooks"] == [{"kind": "before_suspend", "name": "stop", "timeout": 20,
                                            "host": "", "script": "sudo systemctl stop nginx"}]
    assert lab.hook_seconds == {"before_suspend": pytest.approx(30 + 10 + 20 + 5)}  # queue, connect, script
    # Another block on the same lab (the same template), with no budget and no scripts.
    other = Page(lab_xml(2222))
    answer = other.call("status", {"launch": True})
    assert answer["budget"]["limit_seconds"] == 7200, "a block without a budget lifts no other's"
    lab = page.lab()
    assert "hooks" not in lab.blueprint.spec and lab.hook_seconds == {}  # the last launch's scripts run
    alone = Page(lab_xml(2223))  # a lab of its own: no budget anywhere, none shown
    assert alone.call("status", {"launch": True})["budget"] is None


def test_the_page_is_warned_once_at_80_percent_and_told_when_the_time_is_used_up(site) -> None:
    page = Page(lab_xml(2222, time_budget_hours="1"))
    page.call("status", {"launch": True})
    lab = page.lab()
    now = timezone.now()
    Lab.objects.filter(pk=lab.pk).update(state=State.READY, up_since=now - timedelta(minutes=50))
    warned = page.call("status")
    assert warned["budget"]["warning"] and warned["budget"]["message"] == messages.BUDGET_WARNING
    assert 590 <= warned["budget"]["left_seconds"] <= 600
    assert page.call("status")["budget"]["warning"]  # still shown…
    (event,) = page.events("budget.warning")  # …but published once
    assert event == {"lab_key": page.block._lab_key(), "usage_id": str(page.block.scope_ids.usage_id),
                     "lab_id": lab.pk, "limit_hours": 1.0, "left_hours": pytest.approx(0.17, abs=0.01)}

    Lab.objects.filter(pk=lab.pk).update(up_since=now - timedelta(minutes=61))
    launches = len(page.events("launch"))
    answer = page.call("status", {"launch": True})
    assert answer["budget"]["exhausted"] and answer["budget"]["left_seconds"] == 0
    assert answer["budget"]["message"] == messages.BUDGET_USED_UP
    assert answer["error"] is None  # no Retry: there is nothing to retry
    assert page.lab().desired == Desired.SUSPENDED  # suspended through the lifecycle, not deleted
    assert len(page.events("launch")) == launches, "a refused launch is no launch"
    assert page.call("reset")["budget"]["exhausted"] and page.lab().state == State.READY  # no reset either
    assert LabEvent.objects.filter(lab=lab, reason="time budget used up").count() == 1
