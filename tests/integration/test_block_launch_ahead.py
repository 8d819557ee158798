"""Launch ahead through the workbench: a hidden copy of a lab in an earlier unit starts it, within
the site's hourly limit, and only if the learner has not got it. Run with ``--ds tests.workbench_settings``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench.runtime import WorkbenchRuntime

from labxblock.labs.ahead import AHEAD
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent
from tests.engine_harness import wait_for
from tests.integration.test_block_lab_flow import Flow, lab_xml

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def units(engine_factory) -> Callable[..., Flow]:
    """``units(hidden, student=..., **attrs)``: a block of one learner's course, hidden or shown."""
    engines: list[Any] = []
    runtimes: dict[str, WorkbenchRuntime] = {}

    def make(hidden: bool, student: str = "ada", **attrs: str) -> Flow:
        if not engines:
            engines.append(engine_factory(launch_ahead_per_hour=2))
        if student not in runtimes:
            runtimes[student] = WorkbenchRuntime(student)
            runtimes[student].id_generator.set_scenario("ahead")
        runtime = runtimes[student]
        xml = lab_xml(engines[0].lab_port.port, hidden="true" if hidden else "false", **attrs)
        flow = Flow(engines[0], runtime, runtime.get_block(runtime.parse_xml_string(xml)))
        flow.page()  # the learner opens the unit (the workbench makes their user)
        return flow

    return make


def learner_labs(student: str = "ada"):
    return Lab.objects.filter(learner__username=f"workbench-{student}")


def test_a_hidden_copy_starts_the_lab_and_the_unit_that_shows_it_finds_it_on_its_way(units, cloud_fake):
    earlier = units(hidden=True)
    page = earlier.page()
    assert 'data-hidden="true"' in page and '"hidden": true' in page  # rendered, not shown
    answer = earlier.call("status", {"launch": True})  # what the hidden block's script does on load
    assert answer["phase"] in ("queued", "creating")
    lab = learner_labs().get()
    assert LabEvent.objects.filter(lab=lab, reason=AHEAD).count() == 1

    shown = units(hidden=False)  # the next unit: the same template, so the same lab
    wait_for("ready before the learner looks", lambda: learner_labs().filter(state=State.READY).exists(), 30)
    arrived = shown.call("status", {"launch": True})
    assert arrived["ready"] is True and arrived["phase"] == "ready"
    assert learner_labs().count() == 1 and cloud_fake.counters()["stack_create"] == 1


def test_lab_time_launched_ahead_is_not_the_learners_until_they_reach_the_unit_that_shows_it(units):
    earlier = units(hidden=True, time_budget_hours="1")
    earlier.call("status", {"launch": True})
    wait_for("ready before the learner looks", lambda: learner_labs().filter(state=State.READY).exists(), 30)
    lab = learner_labs().get()
    assert lab.awaiting_learner and lab.up_since is None  # up in the cloud, not on the learner's clock
    wait_for("a few seconds up", lambda: (timezone.now() - lab.launched_at).total_seconds() > 3, 10)

    shown = units(hidden=False, time_budget_hours="1")
    budget = shown.call("status", {"launch": True})["budget"]
    assert budget["limit_seconds"] == 3600 and budget["used_seconds"] <= 1  # what the page counts down from
    lab.refresh_from_db()
    assert not lab.awaiting_learner and lab.up_since is not None


def test_hidden_blocks_start_at_most_the_hourly_limit_and_a_shown_block_still_launches(units, cloud_fake):
    for group in ("first", "second", "third"):  # three labs of the course, each hidden in an earlier unit
        units(hidden=True, lab_group=group).call("status", {"launch": True})
    assert sorted(learner_labs().values_list("lab_key", flat=True)) == ["first", "second"]  # limit: 2
    assert units(hidden=True, lab_group="third").call("status", {"launch": True})["phase"] == "deleted"
    # Another learner has a limit of their own.
    units(hidden=True, student="bob", lab_group="third").call("status", {"launch": True})
    assert learner_labs("bob").count() == 1
    # The learner reaching the third lab's own unit launches it as always.
    units(hidden=False, lab_group="third").call("status", {"launch": True})
    assert learner_labs().filter(lab_key="third").exists()
    assert LabEvent.objects.filter(learner__username="workbench-ada", reason=AHEAD).count() == 2


def test_a_hidden_copy_leaves_a_lab_the_learner_has_as_it_is(units):
    shown = units(hidden=False)
    shown.call("status", {"launch": True})
    shown.wait_phase("ready")
    Lab.objects.update(desired=Desired.SUSPENDED.value)  # the learner left it last week
    wait_for("suspended", lambda: learner_labs().filter(state=State.SUSPENDED).exists(), 30)

    earlier = units(hidden=True)
    assert earlier.call("status", {"launch": True})["phase"] == "suspended"
    assert earlier.call("keepalive") == {"ok": False}  # the page then launches again: still nothing
    earlier.call("status", {"launch": True})
    lab = learner_labs().get()
    assert (lab.state, lab.desired) == (State.SUSPENDED, Desired.SUSPENDED)
    assert not LabEvent.objects.filter(reason=AHEAD).exists()
