"""Gateway (guac) mode in headless Chromium: the real page and guacamole-common-js, the guacd stand-in.

The stand-in draws like guacd: an RDP/VNC desktop in layer 0, SSH's terminal in
layer 1. The screenshot must show layer 0 (the page's CSS once painted over it),
and each way a session ends has its own words on the page.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from labxblock.tickets import iframe_url, mint_ticket
from tests.browser.conftest import screenshot
from tests.guacd_standin.harness import KEY, gateway_process, standin_in_thread
from tests.guacd_standin.server import DESKTOP_COLOUR, FAILING_USER, GuacdStandin

pytestmark = pytest.mark.browser

# Counts the screenshot's pixels of the desktop's colour, in the page itself (no image library here).
COUNT_PIXELS = """
const [png, rgb, done] = arguments;
const img = new Image();
img.onload = () => {
    const canvas = document.createElement("canvas");
    canvas.width = img.width; canvas.height = img.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, img.width, img.height).data;
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
        const off = [0, 1, 2].reduce((sum, c) => sum + Math.abs(data[i + c] - rgb[c]), 0);
        if (off < 24) n++;
    }
    done([n, img.width * img.height]);
};
img.onerror = () => done([-1, 0]);
img.src = "data:image/png;base64," + png;
"""


@pytest.fixture(scope="module")
def guac(tmp_path_factory) -> Iterator[tuple[str, GuacdStandin]]:
    """The stand-in, and ``labxblock-gateway`` in guac mode in front of it (env only)."""
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    with (
        standin_in_thread() as guacd,
        gateway_process(log, own_origin=True, modes="guac", guacd=f"127.0.0.1:{guacd.port}") as (base, _),
    ):
        yield base, guacd


def open_lab(driver, base: str, **fields: object) -> None:
    token = mint_ticket(
        [KEY], learner_id="learner-a", stack_name="lab-a",
        **{"protocol": "ssh", "host": "10.1.2.3", "port": 22, "username": "training", **fields},  # type: ignore[arg-type]
    )  # fmt: skip
    driver.get("about:blank")  # the same page with another fragment would not load again
    driver.get(iframe_url(base, "guac", token, stack_name="lab-a"))


def state_and_text(driver, wanted: str, timeout: float = 15) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == wanted
    )
    return driver.find_element(By.ID, "status").text


def test_an_rdp_desktop_in_layer_0_is_visible(chromium, guac):
    base, _ = guac
    open_lab(chromium, base, protocol="rdp", port=3389)
    state_and_text(chromium, "ready")
    time.sleep(1)  # the first frame is drawn on the next animation frame
    path = screenshot(chromium, "guac-rdp-desktop")
    shown, total = chromium.execute_async_script(
        COUNT_PIXELS, chromium.get_screenshot_as_base64(), list(DESKTOP_COLOUR)
    )
    assert shown > total * 0.5, f"the desktop (layer 0) is not visible: {shown} of {total} pixels; see {path}"


def test_typing_exit_says_the_session_has_ended(chromium, guac):
    from selenium.webdriver.common.by import By

    base, _ = guac
    open_lab(chromium, base)
    state_and_text(chromium, "ready")
    chromium.find_element(By.ID, "screen").send_keys("exit\n")
    try:
        assert state_and_text(chromium, "ended") == "The session has ended."
    finally:
        screenshot(chromium, "guac-session-ended")


def test_a_failed_lab_login_and_a_used_link_have_their_own_words(chromium, guac):
    base, _ = guac
    open_lab(chromium, base, username=FAILING_USER)
    login = state_and_text(chromium, "closed")
    screenshot(chromium, "guac-login-failed")
    open_lab(chromium, base, now=time.time() - 120)  # an expired link
    link = state_and_text(chromium, "closed")
    screenshot(chromium, "guac-link-expired")
    assert login.startswith("The lab refused the login")
    assert link.startswith("This terminal link has expired")
