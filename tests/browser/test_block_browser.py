"""The learner's page in headless Chromium: phases → ready → keepalives → leave → suspended → back → ready.

Real parts end to end: the xblock-sdk workbench served by pytest-django's live server
(in this process, on the test database file that the workers share), a real Celery
worker and beat on a private Redis, and the HTTP cloud fake. The lab's template points
at a LabPort, so the readiness probe passes without a VM. The terminal gateway is not
started: the flow is about phases, and the iframe may show an error page.

Screenshots go to ``test-artifacts/browser/block/`` (printed).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from django.utils import timezone
from workbench import scenarios

from labxblock.lifecycle import Desired, State
from labxblock.models import Lab
from tests.engine_harness import lab_template, wait_for
from tests.integration import conftest as engine_fixtures
from tests.services import ARTIFACTS_DIR

# The integration tests' engine (worker, beat, Redis, cloud fake), shared as fixtures of this module.
engine_factory = engine_fixtures.engine_factory
lab_port = engine_fixtures.lab_port

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.slow]

SHOTS = ARTIFACTS_DIR / "browser" / "block"
SCENARIO = "labxblock-browser-flow"
STUDENT = "ada"
CREATE_SECONDS = 3.0  # the fake's create and resume take this long, so each phase is on screen a while
RESUME_SECONDS = 2.0
KEEPALIVE_SECONDS = 5  # the page's floor for the keepalive interval
SUSPEND_TIMEOUT = 10  # two keepalive intervals: held up while there, suspended soon after leaving
# "Ready within 2 s of the stack becoming ready": the cloud says COMPLETE, the next reconcile
# pass (every 1 s here) sees it and the probe job checks the port; the page asks every ≤ 1 s
# while something is happening. Worst case about 1 s + probe + 1 s + a request's time.
READY_WITHIN_SECONDS = 2.0

# Installed before any page script: records every change of the block's data-phase / data-ready,
# with the browser's wall clock, so a phase shown for a moment is not missed between polls.
RECORDER = """
window.__labPhases = [];
new MutationObserver(function (records) {
  records.forEach(function (r) {
    var box = r.target;
    window.__labPhases.push({phase: box.getAttribute('data-phase'),
                             ready: box.getAttribute('data-ready'), at: Date.now()});
  });
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-phase', 'data-ready']});
"""


def lab_xml(port: int, suspend_timeout: int = SUSPEND_TIMEOUT) -> str:
    return (f'<labxblock display_name="Browser lab" suspend_timeout="{suspend_timeout}">'
            "<instructions><![CDATA[<p>Watch your lab start.</p>]]></instructions>"
            f"<template><![CDATA[{lab_template(port)}]]></template></labxblock>")


@pytest.fixture
def scenario(engine_factory, cloud_fake) -> Iterator[Any]:
    """The engine, and a workbench scenario whose lab answers on the engine's LabPort."""
    cloud_fake.configure(delays={"create": CREATE_SECONDS, "resume": RESUME_SECONDS})
    engine = engine_factory(keepalive_interval_seconds=KEEPALIVE_SECONDS)
    # Registered before the workbench first lists its scenarios, so only this one is loaded.
    scenarios.add_xml_scenario(SCENARIO, "labxblock browser flow", lab_xml(engine.lab_port.port))
    try:
        yield engine
    finally:
        scenarios.remove_scenario(SCENARIO)


LEAVE_GRACE = 4  # leave_grace_seconds of these tests: short, so they wait little
LONG_SUSPEND_TIMEOUT = 600  # only the leave signal can suspend the lab within a test's time


@pytest.fixture
def leave_scenario(engine_factory, cloud_fake) -> Iterator[Any]:
    """A lab only leaving suspends: a long suspend timeout, and the suspend-idle tick (almost) never runs.

    Whatever is marked is marked by the reconcile tick (every second), as the leave signal needs.
    """
    engine = engine_factory(keepalive_interval_seconds=KEEPALIVE_SECONDS, leave_grace_seconds=LEAVE_GRACE,
                            suspend_idle_interval_seconds=3600)
    xml = lab_xml(engine.lab_port.port, suspend_timeout=LONG_SUSPEND_TIMEOUT)
    scenarios.add_xml_scenario(SCENARIO, "labxblock browser flow", xml)
    try:
        yield engine
    finally:
        scenarios.remove_scenario(SCENARIO)


def shot(driver: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def wall_clock(monotonic_at: float) -> float:
    """A time.monotonic() moment (the in-process cloud fake's clock) as Unix time in ms."""
    return (time.time() - (time.monotonic() - monotonic_at)) * 1000


def completed_at(engine: Any) -> float:
    """When the fake's one stack finished its current action (create or resume), Unix ms."""
    (stack,) = engine.cloud.cloud.stacks.values()
    return wall_clock(stack.started + stack.delay)


def phases(driver: Any) -> list[dict[str, Any]]:
    return driver.execute_script("return window.__labPhases || [];")


def phase_names(records: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in records:
        if r["phase"] and (not names or names[-1] != r["phase"]):
            names.append(r["phase"])
    return names


def ready_at(records: list[dict[str, Any]]) -> float:
    return next(r["at"] for r in records if r["ready"] == "true")


def wait_ready(driver: Any, timeout: float = 40) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".labxblock").get_attribute("data-ready") == "true")


def be_active(driver: Any, seconds: float) -> None:
    """A learner moving the mouse now and then: the page counts it as activity."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    title = driver.find_element(By.CSS_SELECTOR, ".labxblock-title")
    end = time.monotonic() + seconds
    step = 0
    while time.monotonic() < end:
        step += 1
        ActionChains(driver).move_to_element_with_offset(title, step % 7, 1).perform()
        time.sleep(0.5)


def test_learner_page_launches_keeps_alive_suspends_when_left_and_resumes(
        chromium, live_server, scenario) -> None:
    from selenium.webdriver.common.by import By

    engine = scenario
    print(f"screenshots folder: {SHOTS}")
    chromium.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
    url = f"{live_server.url}/scenario/{SCENARIO}/?student={STUDENT}"

    # 1. Open the unit: the page launches the lab and names each phase on the way to ready.
    chromium.get(url)
    box = chromium.find_element(By.CSS_SELECTOR, ".labxblock")
    wait_for("a phase on the page", lambda: box.get_attribute("data-phase"), timeout=10, interval=0.05)
    shot(chromium, "01-launching")
    wait_for("creating", lambda: box.get_attribute("data-phase") == "creating", timeout=15, interval=0.05)
    time.sleep(1.2)  # the elapsed time ticks on screen
    elapsed = chromium.find_element(By.CSS_SELECTOR, "[data-role=elapsed]").text
    assert elapsed.startswith("Elapsed: "), elapsed
    shot(chromium, "02-creating")
    wait_ready(chromium)
    shot(chromium, "03-ready")
    records = phases(chromium)
    seen = phase_names(records)
    assert seen[:1] == ["queued"] and "creating" in seen and seen[-1] == "ready", seen
    assert [p for p in ("queued", "creating", "starting", "ready") if p in seen] == seen, seen
    assert chromium.find_element(By.CSS_SELECTOR, "[data-role=phase]").text == "Your lab is ready"
    launch_lag = (ready_at(records) - completed_at(engine)) / 1000
    print(f"stack CREATE_COMPLETE → page data-ready: {launch_lag:.2f} s")
    assert 0 < launch_lag <= READY_WITHIN_SECONDS, launch_lag

    # 2. While the learner is there and active, keepalives move last_seen_at forward.
    lab = Lab.objects.get(learner__username=f"workbench-{STUDENT}")
    assert lab.state == State.READY
    first_seen = lab.last_seen_at
    be_active(chromium, KEEPALIVE_SECONDS * 2 + 1.5)
    lab.refresh_from_db()
    assert lab.last_seen_at > first_seen, "no keepalive reached the database"
    assert lab.state == State.READY
    assert (lab.idle_at - lab.last_seen_at).total_seconds() == SUSPEND_TIMEOUT
    print(f"last_seen_at moved by {(lab.last_seen_at - first_seen).total_seconds():.1f} s of keepalives")
    shot(chromium, "04-kept-alive")

    # 3. Leave the page: no more keepalives, and the beat's idle tick has the reconciler suspend it.
    chromium.get("about:blank")
    left_at = time.monotonic()
    wait_for("the lab suspended", lambda: Lab.objects.filter(pk=lab.pk, state=State.SUSPENDED).exists(),
             timeout=SUSPEND_TIMEOUT + 20)
    print(f"suspended {time.monotonic() - left_at:.1f} s after the learner left "
          f"(suspend timeout {SUSPEND_TIMEOUT} s)")
    assert engine.cloud.counters().get("stack_suspend") == 1

    # 4. Come back: the page says the lab is being woken up, then it is ready again.
    chromium.get(url)
    box = chromium.find_element(By.CSS_SELECTOR, ".labxblock")
    wait_for("resuming", lambda: box.get_attribute("data-phase") == "resuming", timeout=10, interval=0.05)
    assert chromium.find_element(By.CSS_SELECTOR, "[data-role=phase]").text == "Waking your lab up"
    shot(chromium, "05-resuming")
    wait_ready(chromium)
    shot(chromium, "06-ready-again")
    records = phases(chromium)
    seen = phase_names(records)
    assert seen[0] == "resuming" and seen[-1] == "ready" and "creating" not in seen, seen
    resume_lag = (ready_at(records) - completed_at(engine)) / 1000
    print(f"stack RESUME_COMPLETE → page data-ready: {resume_lag:.2f} s")
    assert 0 < resume_lag <= READY_WITHIN_SECONDS, resume_lag
    assert engine.cloud.counters().get("stack_resume") == 1
    assert engine.cloud.counters().get("stack_create") == 1  # the same lab, woken up, not rebuilt


def test_still_here_after_the_lab_was_paused_wakes_it_up(chromium, live_server, scenario) -> None:
    """Idle with the page open: keepalives stop, the lab is paused, the dialog asks; answering wakes it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    engine = scenario
    chromium.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
    chromium.get(f"{live_server.url}/scenario/{SCENARIO}/?student={STUDENT}")
    wait_ready(chromium)
    lab = Lab.objects.get(learner__username=f"workbench-{STUDENT}")

    # Nobody touches the page: keepalives stop after two quiet intervals and the beat pauses the lab.
    wait_for("the lab suspended", lambda: Lab.objects.filter(pk=lab.pk, state=State.SUSPENDED).exists(),
             timeout=KEEPALIVE_SECONDS * 2 + SUSPEND_TIMEOUT + 20)
    dialog = chromium.find_element(By.CSS_SELECTOR, "[data-role=idle]")
    WebDriverWait(chromium, 40, poll_frequency=0.2).until(lambda d: dialog.is_displayed())
    assert "Are you still there?" in dialog.text
    # While the dialog asks, the page shows the lab's real state: paused, not "ready".
    phase = chromium.find_element(By.CSS_SELECTOR, "[data-role=phase]")
    WebDriverWait(chromium, KEEPALIVE_SECONDS + 3, poll_frequency=0.2).until(
        lambda d: phase.text == "Your lab is paused")
    box = chromium.find_element(By.CSS_SELECTOR, ".labxblock")
    assert (box.get_attribute("data-phase"), box.get_attribute("data-ready")) == ("suspended", "false")
    assert "Your lab was paused to save resources. Press the button to wake it up." in dialog.text
    shot(chromium, "07-still-there")
    seen_before = Lab.objects.get(pk=lab.pk).last_seen_at

    chromium.find_element(By.CSS_SELECTOR, "[data-action=still-here]").click()
    box = chromium.find_element(By.CSS_SELECTOR, ".labxblock")
    wait_for("resuming", lambda: box.get_attribute("data-phase") in ("resuming", "starting"), timeout=10,
             interval=0.05)
    wait_ready(chromium)
    shot(chromium, "08-awake-again")
    assert not dialog.is_displayed()
    assert Lab.objects.get(pk=lab.pk).last_seen_at > seen_before
    assert engine.cloud.counters().get("stack_resume") == 1


def test_a_failure_is_told_in_words_with_retry_and_reset_asks_first(chromium, live_server, scenario) -> None:
    """The cloud refuses: the learner reads why and retries; later a confirmed reset builds a fresh lab."""
    from selenium.webdriver.common.by import By

    engine = scenario
    engine.cloud.configure(quota_exceeded=True, delays={"create": 0.3})
    chromium.get(f"{live_server.url}/scenario/{SCENARIO}/?student={STUDENT}")
    box = chromium.find_element(By.CSS_SELECTOR, ".labxblock")
    wait_for("failed", lambda: box.get_attribute("data-phase") == "failed", timeout=30, interval=0.1)
    error = chromium.find_element(By.CSS_SELECTOR, "[data-role=error]").text
    assert error == "The cloud could not build your lab. Please try again."
    retry = chromium.find_element(By.CSS_SELECTOR, "[data-action=retry]")
    assert retry.is_displayed() and retry.text == "Retry"
    shot(chromium, "09-failed")

    engine.cloud.configure(quota_exceeded=False)
    retry.click()
    wait_ready(chromium)
    assert not retry.is_displayed() and not chromium.find_element(By.CSS_SELECTOR, "[data-role=error]").text
    first_stack = set(engine.cloud.cloud.stacks)  # the fake's stack ids (the name is the lab's, kept)

    reset = chromium.find_element(By.CSS_SELECTOR, "[data-action=reset]")
    reset.click()
    confirm = chromium.find_element(By.CSS_SELECTOR, "[data-role=confirm-reset]")
    assert confirm.is_displayed()
    shot(chromium, "10-reset-confirm")
    chromium.find_element(By.CSS_SELECTOR, "[data-action=reset-no]").click()
    assert not confirm.is_displayed() and box.get_attribute("data-ready") == "true"  # nothing happened
    reset.click()
    chromium.find_element(By.CSS_SELECTOR, "[data-action=reset-yes]").click()
    wait_for("rebuilding", lambda: box.get_attribute("data-phase") == "rebuilding", timeout=10, interval=0.05)
    wait_ready(chromium)
    shot(chromium, "11-reset-ready")
    assert len(engine.cloud.cloud.stacks) == 1 and set(engine.cloud.cloud.stacks) != first_stack
    assert engine.stacks() == {Lab.objects.get().stack_name}


def the_lab() -> Lab:
    return Lab.objects.get(learner__username=f"workbench-{STUDENT}")


def seconds_to_idle(lab: Lab) -> float:
    return (lab.idle_at - timezone.now()).total_seconds()


def test_closing_the_tab_suspends_the_lab_after_the_grace(chromium, live_server, leave_scenario) -> None:
    engine = leave_scenario
    first_tab = chromium.current_window_handle  # stays open on about:blank: the browser keeps running
    chromium.switch_to.new_window("tab")
    chromium.get(f"{live_server.url}/scenario/{SCENARIO}/?student={STUDENT}")
    wait_ready(chromium)
    assert seconds_to_idle(the_lab()) > LONG_SUSPEND_TIMEOUT - 30

    chromium.close()  # the learner closes the tab
    closed_at = time.monotonic()
    chromium.switch_to.window(first_tab)
    wait_for("suspend requested", lambda: the_lab().desired == Desired.SUSPENDED, timeout=LEAVE_GRACE + 10,
             interval=0.1)
    waited = time.monotonic() - closed_at
    print(f"suspend requested {waited:.1f} s after the tab was closed (grace {LEAVE_GRACE} s)")
    assert LEAVE_GRACE - 1 <= waited <= LEAVE_GRACE + 2, waited
    wait_for("the lab suspended", lambda: the_lab().state == State.SUSPENDED, timeout=20)
    assert engine.cloud.counters().get("stack_suspend") == 1


def test_switching_tabs_and_back_within_the_grace_changes_nothing(
        chromium, live_server, leave_scenario) -> None:
    from selenium.webdriver.common.by import By

    engine = leave_scenario
    chromium.get(f"{live_server.url}/scenario/{SCENARIO}/?student={STUDENT}")
    wait_ready(chromium)
    lab_tab = chromium.current_window_handle

    chromium.switch_to.new_window("tab")  # the lab's tab is hidden now: the page said it was left
    wait_for("the leave signal", lambda: seconds_to_idle(the_lab()) <= LEAVE_GRACE, timeout=5, interval=0.1)
    time.sleep(LEAVE_GRACE - 2)
    chromium.switch_to.window(lab_tab)  # back within the grace
    wait_for("kept up", lambda: seconds_to_idle(the_lab()) > LONG_SUSPEND_TIMEOUT - 30, timeout=5,
             interval=0.1)
    time.sleep(LEAVE_GRACE + 3)  # past the grace: nothing happens
    lab = the_lab()
    assert (lab.desired, lab.state) == (Desired.UP, State.READY)
    assert chromium.find_element(By.CSS_SELECTOR, ".labxblock").get_attribute("data-ready") == "true"
    assert not engine.cloud.counters().get("stack_suspend")


def test_a_window_still_showing_the_lab_keeps_it_up_when_another_closes(
        chromium, live_server, leave_scenario) -> None:
    """Two windows, both in sight, one lab: closing one leaves the lab to the other."""
    engine = leave_scenario
    url = f"{live_server.url}/scenario/{SCENARIO}/?student={STUDENT}"
    chromium.get(url)
    wait_ready(chromium)
    staying = chromium.current_window_handle
    chromium.switch_to.new_window("window")
    chromium.get(url)
    wait_ready(chromium)
    # The learner reads in the first window without touching anything: it sends no keepalives of its
    # own now (two quiet intervals), so only its answer to the other window's leave can keep the lab.
    time.sleep(KEEPALIVE_SECONDS * 2 + 1)

    chromium.close()
    chromium.switch_to.window(staying)
    time.sleep(LEAVE_GRACE + 3)
    lab = the_lab()
    assert (lab.desired, lab.state) == (Desired.UP, State.READY)
    assert seconds_to_idle(lab) > LONG_SUSPEND_TIMEOUT - 30
    assert not engine.cloud.counters().get("stack_suspend")


BUDGET_HOURS = 0.006  # 21.6 s of lab time, from the create on


@pytest.fixture
def budget_scenario(engine_factory, cloud_fake) -> Iterator[Any]:
    """A lab with a time budget of a few seconds and a long suspend timeout: only the budget stops it."""
    cloud_fake.configure(delays={"create": CREATE_SECONDS})
    engine = engine_factory(keepalive_interval_seconds=KEEPALIVE_SECONDS)
    xml = lab_xml(engine.lab_port.port, suspend_timeout=LONG_SUSPEND_TIMEOUT).replace(
        'display_name="Browser lab"', f'display_name="Browser lab" time_budget_hours="{BUDGET_HOURS}"')
    scenarios.add_xml_scenario(SCENARIO, "labxblock browser flow", xml)
    try:
        yield engine
    finally:
        scenarios.remove_scenario(SCENARIO)


def test_the_page_counts_the_lab_time_down_warns_and_says_when_it_is_used_up(
        chromium, live_server, budget_scenario) -> None:
    """No dialog offers to wake a lab its budget stopped, and the page does not relaunch it."""
    from selenium.webdriver.common.by import By

    engine = budget_scenario
    chromium.get(f"{live_server.url}/scenario/{SCENARIO}/?student={STUDENT}")
    wait_ready(chromium)
    box = chromium.find_element(By.CSS_SELECTOR, ".labxblock")
    budget = chromium.find_element(By.CSS_SELECTOR, "[data-role=budget]")
    first = budget.text
    time.sleep(2)
    assert first.startswith("Lab time left: ") and budget.text != first  # counted down while ready
    assert box.get_attribute("data-budget") == "ok"
    shot(chromium, "12-time-left")
    wait_for("the warning", lambda: box.get_attribute("data-budget") == "warning", timeout=25, interval=0.2)
    assert "Most of your lab time for this course is used." in budget.text
    shot(chromium, "13-time-almost-used")
    wait_for("used up", lambda: box.get_attribute("data-budget") == "used-up", timeout=30, interval=0.2)
    assert "Your lab time for this course is used up." in budget.text
    wait_for("paused", lambda: box.get_attribute("data-phase") == "suspended", timeout=30, interval=0.2)
    shot(chromium, "14-time-used-up")
    assert not chromium.find_element(By.CSS_SELECTOR, "[data-role=idle]").is_displayed()
    time.sleep(KEEPALIVE_SECONDS + 2)  # a keepalive comes back "not up": the page does not relaunch
    lab = the_lab()
    assert (lab.state, lab.desired) == (State.SUSPENDED, Desired.SUSPENDED)
    assert engine.stacks() == {lab.stack_name} and engine.cloud.counters().get("stack_resume") is None
