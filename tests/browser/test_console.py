"""Console mode in headless Chromium: the documented command, the real page, a real sshd."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from labxblock.tickets import iframe_url, mint_ticket
from tests.browser.conftest import screenshot
from tests.guacd_standin.harness import KEY, gateway_process

pytestmark = pytest.mark.browser




@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[str]:
    """``labxblock-gateway`` as an operator starts it: env vars only."""
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    with gateway_process(log, own_origin=True, modes="console") as (base, _):
        yield base
    assert KEY not in log.read_text(), "a ticket key reached the gateway log"


def open_console(driver, gateway: str, sshd, *, read_only: bool):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    token = mint_ticket(
        [KEY], learner_id="learner-a", stack_name="lab-a", protocol="ssh", host=sshd.host, port=sshd.port,
        username=sshd.username, private_key=sshd.private_key, host_key=sshd.host_key, read_only=read_only,
    )  # fmt: skip
    driver.get(iframe_url(gateway, "console", token, stack_name="lab-a"))
    WebDriverWait(driver, 20).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"
    )
    assert "ticket" not in driver.current_url, "the page must wipe the ticket from the address bar"
    return WebDriverWait(driver, 5).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, ".xterm-helper-textarea"))
    )


def screen_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, ".xterm-rows").text


def test_typed_command_output_appears(chromium, gateway, sshd):
    from selenium.webdriver.support.ui import WebDriverWait

    keyboard = open_console(chromium, gateway, sshd, read_only=False)
    keyboard.send_keys("echo hello-$((6*7))\n")
    try:
        WebDriverWait(chromium, 15).until(lambda d: "hello-42" in screen_text(d))
    finally:
        screenshot(chromium, "console-echo")


def test_read_only_keystrokes_change_nothing(chromium, gateway, sshd, tmp_path):
    from selenium.webdriver.common.by import By

    marker = tmp_path / "marker"
    keyboard = open_console(chromium, gateway, sshd, read_only=True)
    assert "Read-only" in chromium.find_element(By.ID, "status").text
    keyboard.send_keys(f"touch {marker}\n")
    time.sleep(2)
    screenshot(chromium, "console-read-only")
    assert not marker.exists()
    assert "touch" not in screen_text(chromium)
