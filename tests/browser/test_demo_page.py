"""The page tells the truth, tried as a newcomer does in the demo (real gateway, sshd, tmux, worker, beat).

One demo for the module; each test is another learner (the workbench's ``?student=``),
so each has a lab of its own. Screenshots go to ``test-artifacts/browser/`` (printed).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.browser.conftest import PAGESHOW, screenshot
from tests.browser.demo_harness import RunningDemo, keyboard, run_demo, terminal, type_and_see

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SUSPEND_TIMEOUT = 10  # the demo's --suspend-timeout: short, so the tests wait little
KEEPALIVE_SECONDS = 5  # the demo's keepalive interval; the page stops keepalives after two idle ones


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[RunningDemo]:
    directory = tmp_path_factory.mktemp("demo-page") / "demo"
    yield from run_demo(directory, "--suspend-timeout", str(SUSPEND_TIMEOUT))


def _wait_lab(demo: RunningDemo, student: str, state: str, timeout: float) -> float:
    started = time.monotonic()
    while (lab := demo.lab(student)) is None or lab["state"] != state:
        assert time.monotonic() - started < timeout, f"{student}'s lab is {lab}, not {state}"
        time.sleep(0.5)
    return time.monotonic() - started


def _body_state(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")


def test_typing_in_the_new_window_keeps_the_lab_up_and_it_says_when_the_lab_was_paused(
        chromium, demo: RunningDemo) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium.get(demo.page("popup"))
    terminal(chromium)
    chromium.switch_to.default_content()
    course_page = chromium.current_window_handle
    chromium.find_element(By.CSS_SELECTOR, "[data-action=fullscreen]").click()
    WebDriverWait(chromium, 10).until(lambda d: len(d.window_handles) == 2)
    chromium.switch_to.window(next(h for h in chromium.window_handles if h != course_page))
    keys = keyboard(chromium)  # the course page's tab is in the background now, as for a learner

    # Typing there for longer than the suspend timeout plus the page's idle allowance: the lab stays up.
    typing = SUSPEND_TIMEOUT + 2 * KEEPALIVE_SECONDS + 6
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < typing:
        type_and_see(chromium, keys, f"echo typed-{int(elapsed)}", f"typed-{int(elapsed)}\n")
        assert demo.lab("popup")["desired"] == "up", f"suspended under a typing learner after {elapsed:.0f} s"
        time.sleep(1)
    assert demo.lab("popup")["state"] == "ready"
    screenshot(chromium, "demo-popup-typing")

    # The learner stops: the lab is paused, and the window says so instead of freezing.
    waited = _wait_lab(demo, "popup", "suspended", 2 * KEEPALIVE_SECONDS + SUSPEND_TIMEOUT + 30)
    print(f"paused {waited:.1f} s after the typing stopped")
    WebDriverWait(chromium, 2 * KEEPALIVE_SECONDS + 5, poll_frequency=0.2).until(
        lambda d: _body_state(d) == "paused")
    status = chromium.find_element(By.ID, "status").text
    assert status == "Your lab is paused. Go back to the course page to continue.", status
    screenshot(chromium, "demo-popup-paused")


def test_the_check_result_comes_into_view_and_is_announced_and_reset_clears_it(
        chromium, demo: RunningDemo) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium.get(demo.page("checker"))
    type_and_see(chromium, terminal(chromium), "touch ~/done && echo touched", "touched\n")
    chromium.switch_to.default_content()
    chromium.execute_script("window.scrollTo(0, 0)")  # where a learner who just typed looks
    chromium.find_element(By.CSS_SELECTOR, "[data-action=check]").click()
    feedback = chromium.find_element(By.CSS_SELECTOR, "[data-role=feedback]")
    WebDriverWait(chromium, 30, poll_frequency=0.2).until(lambda d: "Score" in feedback.text)
    assert feedback.text == "1 of 1 checks passed. Score: 100%."
    # Announced: the result is the text of a polite live region.
    assert (feedback.get_attribute("role"), feedback.get_attribute("aria-live")) == ("status", "polite")
    results = chromium.find_element(By.CSS_SELECTOR, "[data-role=check-results]")
    assert "Passed" in results.text
    WebDriverWait(chromium, 5, poll_frequency=0.1).until(
        lambda d: _in_viewport(d, feedback) and _in_viewport(d, results))
    screenshot(chromium, "demo-check-result")

    chromium.execute_script("window.scrollTo(0, 0)")  # the workbench's fixed header would take the click
    chromium.find_element(By.CSS_SELECTOR, "[data-action=reset]").click()
    chromium.find_element(By.CSS_SELECTOR, "[data-action=reset-yes]").click()
    assert feedback.text == "" and not results.is_displayed()  # nothing said about the lab that went
    box = chromium.find_element(By.CSS_SELECTOR, ".labxblock")
    WebDriverWait(chromium, 60, poll_frequency=0.2).until(lambda d: box.get_attribute("data-ready") == "true")
    assert feedback.text == "" and not results.is_displayed()
    screenshot(chromium, "demo-reset-cleared")


def _in_viewport(driver, element) -> bool:
    top, bottom, height = driver.execute_script(
        "var r = arguments[0].getBoundingClientRect(); "
        "return [r.top, r.bottom, document.documentElement.clientHeight];",  # the scrollbar hides a strip
        element)
    return top >= 0 and bottom <= height


def test_leaving_the_page_ends_the_terminal_session_and_coming_back_opens_a_new_one(
        chromium, demo: RunningDemo) -> None:
    chromium.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PAGESHOW})
    chromium.get(demo.page("traveller"))
    type_and_see(chromium, terminal(chromium), "echo first-visit", "first-visit\n")
    chromium.switch_to.default_content()
    stack = demo.lab("traveller")["stack_name"]
    (first,) = _sessions(demo, stack)

    # To another page of the site: Chromium keeps this one in its back/forward cache.
    chromium.get(demo.url.split("/scenario/")[0] + "/")
    left_at = time.monotonic()
    while not _closed(demo, first):
        assert time.monotonic() - left_at < 5, "the terminal session outlived the page"
        time.sleep(0.1)
    print(f"session {first} closed {time.monotonic() - left_at:.1f} s after the learner left")

    chromium.back()
    assert chromium.execute_script("return window.__shows") == [False, True], "not restored from the cache"
    type_and_see(chromium, terminal(chromium), "echo came-back", "came-back\n")  # a live terminal again
    chromium.switch_to.default_content()
    assert len(_sessions(demo, stack)) == 2
    screenshot(chromium, "demo-back-again")


def _sessions(demo: RunningDemo, stack: str) -> list[str]:
    """The gateway's console sessions for ``stack``, by id, as its log names them."""
    return re.findall(rf"console (\w+): learner \S+ stack {re.escape(stack)} ", demo.log("gateway"))


def _closed(demo: RunningDemo, session: str) -> bool:
    return f"console {session}: closed" in demo.log("gateway")
