"""Course staff's panel in headless Chromium: the learners' table, paging, a suspend and a reset.

Real parts end to end, as ``test_block_browser.py``: the xblock-sdk workbench on pytest-django's
live server, a real Celery worker and beat on a private Redis, the HTTP cloud fake. The workbench
has no course staff, so the one thing given here is edx-platform's user service for the student
``teacher`` (``user_is_staff``, as ``DjangoXBlockUserService`` builds it); every other student gets
the workbench's own.

Screenshots go to ``test-artifacts/browser/staff/`` (printed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from django.contrib.auth import get_user_model
from workbench import runtime as workbench_runtime
from workbench import scenarios

from labxblock.labs import staff
from labxblock.lifecycle import Desired, State
from labxblock.models import Lab, LabEvent
from tests.browser.test_block_browser import wait_ready
from tests.engine_harness import lab_template, wait_for
from tests.integration import conftest as engine_fixtures
from tests.integration.test_block_lab_flow import PlatformUserService
from tests.services import ARTIFACTS_DIR

engine_factory = engine_fixtures.engine_factory
lab_port = engine_fixtures.lab_port

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.slow]

SHOTS = ARTIFACTS_DIR / "browser" / "staff"
SCENARIO = "labxblock-staff-panel"
TEACHER = "teacher"
LEARNER = "ada"
OTHER = "eve"  # renamed HOSTILE once her lab is up: the panel must show any username as text
HOSTILE = '<img src=x onerror="window.__owned=1">'


@pytest.fixture
def staff_scenario(engine_factory, cloud_fake, monkeypatch) -> Iterator[Any]:
    """The engine, a lab scenario, and edx-platform's user service (staff) for the workbench's ``teacher``."""
    # Labs stay up when their learner's page is left, so the staff member is the one to suspend one.
    engine = engine_factory(keepalive_interval_seconds=5, leave_grace_seconds=600)
    xml = (f'<labxblock display_name="Staffed lab" suspend_timeout="600">'
           f"<template><![CDATA[{lab_template(engine.lab_port.port)}]]></template></labxblock>")
    scenarios.add_xml_scenario(SCENARIO, "labxblock staff panel", xml)
    original_init = workbench_runtime.WorkbenchRuntime.__init__

    def init(self: Any, user_id: Any = None) -> None:
        original_init(self, user_id)
        if user_id == TEACHER:
            teacher, _ = get_user_model().objects.get_or_create(username=TEACHER, defaults={"is_staff": True})
            self._services["user"] = PlatformUserService(teacher, user_is_staff=True)

    monkeypatch.setattr(workbench_runtime.WorkbenchRuntime, "__init__", init)
    try:
        yield engine
    finally:
        scenarios.remove_scenario(SCENARIO)


def shot(driver: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.execute_script("document.querySelector('.labxblock-staff').scrollIntoView();")
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def rows(driver: Any) -> dict[str, list[str]]:
    """The panel's table: username → the row's cells as shown (the last one holds the buttons).

    Read in one script, so a table the panel is re-drawing is never read half old, half new.
    """
    cells = driver.execute_script(
        "return Array.from(document.querySelectorAll('[data-role=staff-rows] tr'))"
        ".map(function (tr) { return Array.from(tr.cells).map(function (td) { return td.innerText; }); });")
    return {row[0]: row for row in cells}


def button(driver: Any, lab: Lab, action: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f"tr[data-lab-id='{lab.pk}'] [data-action={action}]")


def click(driver: Any, element: Any) -> None:
    """Click as a person would, the element scrolled to the middle (the workbench's banner floats on top)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def more_learners(like: Lab, count: int) -> None:
    """``count`` further learners with a lab of the same block, already deleted (rows only)."""
    make = get_user_model().objects.create_user
    for n in range(count):
        Lab.objects.create(learner=make(f"zz-learner-{n:02d}"), course_run=like.course_run,
                           lab_key=like.lab_key, state=State.DELETED, desired=Desired.DELETED,
                           blueprint_id=like.blueprint_id)


def test_course_staff_see_their_learners_page_through_them_and_suspend_and_reset_a_lab(
        chromium, live_server, staff_scenario) -> None:
    from selenium.webdriver.common.by import By

    engine = staff_scenario
    base = f"{live_server.url}/scenario/{SCENARIO}/"
    for student in (LEARNER, OTHER, TEACHER):  # each opens the unit and gets a ready lab
        chromium.get(f"{base}?{urlencode({'student': student})}")
        print(f"opened as {student!r}")
        wait_ready(chromium)
    get_user_model().objects.filter(username=f"workbench-{OTHER}").update(username=HOSTILE)
    chromium.get(f"{base}?student={LEARNER}")
    assert not chromium.find_elements(By.CSS_SELECTOR, ".labxblock-staff")  # learners get no panel
    ada = Lab.objects.get(learner__username=f"workbench-{LEARNER}")
    more_learners(ada, staff.PAGE_SIZE)  # 28 learners with the teacher: two pages

    chromium.get(f"{base}?student={TEACHER}")
    panel = chromium.find_element(By.CSS_SELECTOR, ".labxblock-staff")
    wait_for("the learners' table", lambda: rows(chromium), timeout=15)
    page = chromium.find_element(By.CSS_SELECTOR, "[data-role=staff-page]")
    assert page.text == f"Page 1 of 2 ({staff.PAGE_SIZE + 3} learners)"
    table = rows(chromium)
    assert len(table) == staff.PAGE_SIZE
    hostile = table[HOSTILE]  # shown as the text it is, never as markup
    assert hostile[1] == "ready" and table[f"workbench-{LEARNER}"][1] == "ready"
    assert not panel.find_elements(By.TAG_NAME, "img")
    assert chromium.execute_script("return window.__owned === undefined")
    assert panel.find_element(By.CSS_SELECTOR, "[data-action=staff-prev]").get_attribute("disabled")
    shot(chromium, "01-learners")

    click(chromium, panel.find_element(By.CSS_SELECTOR, "[data-action=staff-next]"))
    wait_for("page 2", lambda: page.text.startswith("Page 2 of 2"), timeout=10)
    assert len(rows(chromium)) == 3
    click(chromium, panel.find_element(By.CSS_SELECTOR, "[data-action=staff-prev]"))
    wait_for("page 1 again", lambda: page.text.startswith("Page 1 of 2"), timeout=10)

    # Suspend ada's lab: the panel says it is done, the lab is suspended through the lifecycle, logged.
    click(chromium, button(chromium, ada, "staff-suspend"))
    message = panel.find_element(By.CSS_SELECTOR, "[data-role=staff-message]")
    wait_for("the answer", lambda: message.text == "Done.", timeout=10)
    wait_for("ada's lab suspended", lambda: Lab.objects.get(pk=ada.pk).state == State.SUSPENDED, timeout=30)
    teacher = get_user_model().objects.get(username=TEACHER)
    assert LabEvent.objects.filter(lab=ada, actor=f"staff:{teacher.pk}").exists()
    chromium.refresh()
    message = chromium.find_element(By.CSS_SELECTOR, "[data-role=staff-message]")
    ada_row = f"workbench-{LEARNER}"
    wait_for("the suspended row", lambda: rows(chromium).get(ada_row, [""])[1:2] == ["suspended"], timeout=15)
    shot(chromium, "02-suspended")

    # Reset asks first: declined, nothing happens; accepted, the lab is rebuilt from scratch.
    creates = engine.cloud.counters().get("stack_create")
    chromium.execute_script("window.confirm = function () { return false; };")
    click(chromium, button(chromium, ada, "staff-reset"))
    assert Lab.objects.get(pk=ada.pk).desired == Desired.SUSPENDED
    chromium.execute_script("window.confirm = function () { return true; };"
                            "document.querySelector('[data-role=staff-message]').textContent = '';")
    click(chromium, button(chromium, ada, "staff-reset"))
    wait_for("the reset's answer", lambda: message.text == "Done.", timeout=10)
    wait_for("a new stack", lambda: (engine.cloud.counters().get("stack_create") or 0) > creates, timeout=30)
    shot(chromium, "03-reset")
