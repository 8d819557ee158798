"""An author in Studio's author view, headless Chromium: validation messages, "Test this lab", checks, Stop.

Real parts end to end: the xblock-sdk workbench served by pytest-django's live server,
rendering the author view (``/scenario/<id>/author_view/``) with its runtime in author
mode, as Studio's preview runtime is (``is_author_mode``); a real Celery worker and beat
on a private Redis; the local provider (a real sshd per lab) and the real terminal
gateway in console mode. The README's pictures of authoring are taken here: with
``LABXBLOCK_UPDATE_SCREENSHOTS=1`` they are written to ``docs/``.
"""

from __future__ import annotations

import getpass
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

if "workbench" not in settings.INSTALLED_APPS:
    pytest.skip("needs --ds tests.workbench_settings (the xblock-sdk workbench app)", allow_module_level=True)

from workbench import scenarios
from workbench.runtime import WorkbenchRuntime

from labxblock.demo.scenario import TEMPLATE as LOCAL_TEMPLATE
from labxblock.models import CheckRun, Lab
from tests.browser.conftest import screenshot
from tests.engine_harness import TEST_TICKET_KEYS, wait_for
from tests.integration import conftest as engine_fixtures
from tests.services import missing_service
from tests.services.process import ServiceProcess, free_port, port_open

engine_factory = engine_fixtures.engine_factory
lab_port = engine_fixtures.lab_port

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
GOOD, BROKEN = "labxblock-authoring-good", "labxblock-authoring-broken"
TEMPLATE = LOCAL_TEMPLATE  # the demo's, complete for the contract
# What an author gets wrong: a resource type this cloud does not run, and no host_key output.
BROKEN_TEMPLATE = TEMPLATE.replace("LabXBlock::Local::SSH", "OS::Nova::Server").replace(
    "  host_key: {value: {get_attr: [lab, host_key]}}\n", "")


# The local provider's labs have one account, so these checks run as the learner; Studio says so.
CHECKS_AS_LEARNER = (
    "The checks run as the learner, who can make them all pass (a forced command in their own "
    "authorized_keys) and read the scripts. Give the template (inline) a check account the learner cannot "
    "change: the outputs check_user and check_private_key.")


def lab_xml(template: str) -> str:
    return (f'<labxblock display_name="Linux basics: files" stack_user="{getpass.getuser()}">'
            "<instructions><![CDATA[<p>Create the file <code>~/marker</code>.</p>]]></instructions>"
            f"<template><![CDATA[{template}]]></template>"
            '<check name="marker exists" hint="Create ~/marker first."><![CDATA[test -f ~/marker]]></check>'
            '<check name="shell answers"><![CDATA[echo fine]]></check>'
            "</labxblock>")


def for_readme(driver: Any, element: Any, name: str) -> None:
    """Keep a screenshot of the author view under test-artifacts; refresh docs/<name>.png on request."""
    screenshot(driver, name)
    if os.environ.get("LABXBLOCK_UPDATE_SCREENSHOTS") == "1":
        (ROOT / "docs" / f"{name}.png").write_bytes(element.screenshot_as_png)


@pytest.fixture
def gateway(live_server, tmp_path_factory) -> Iterator[str]:
    """``labxblock-gateway`` in console mode, trusting the site's ticket key, framed by the workbench."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = shutil.which("labxblock-gateway", path=str(Path(sys.executable).parent)) or "labxblock-gateway"
    env = {"LABXBLOCK_GATEWAY_TICKET_KEYS": TEST_TICKET_KEYS[0], "LABXBLOCK_GATEWAY_ALLOWED_ORIGINS": base,
           "LABXBLOCK_GATEWAY_FRAME_ANCESTORS": live_server.url, "LABXBLOCK_GATEWAY_MODES": "console",
           "LABXBLOCK_GATEWAY_LISTEN": f"127.0.0.1:{port}",
           "LABXBLOCK_GATEWAY_ALLOWED_NETWORKS": "127.0.0.0/8"}  # the local provider's labs
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    process = ServiceProcess("labxblock-gateway", [command], log, env=env).start(lambda: port_open(port), 15)
    try:
        yield base
    finally:
        process.stop()


@pytest.fixture
def studio(engine_factory, gateway, tmp_path, monkeypatch) -> Iterator[Any]:
    """The engine on the local provider, and the workbench answering as Studio's preview does."""
    if not Path("/usr/sbin/sshd").exists():
        missing_service("the local provider needs /usr/sbin/sshd (openssh-server)")
    labs = tmp_path / "labs"
    engine = engine_factory(providers={"default": {"type": "local", "root": str(labs),
                                                   "allowed_networks": ["127.0.0.0/8"]}},
                            gateway_url=gateway.replace("http://", "ws://"))
    monkeypatch.setattr(WorkbenchRuntime, "is_author_mode", True, raising=False)  # Studio's preview
    scenarios.add_xml_scenario(GOOD, "an author's lab", lab_xml(TEMPLATE))
    scenarios.add_xml_scenario(BROKEN, "an author's lab, not yet right", lab_xml(BROKEN_TEMPLATE))
    try:
        yield engine, labs
    finally:
        scenarios.remove_scenario(GOOD)
        scenarios.remove_scenario(BROKEN)


def author_view(driver: Any, live_server: Any, scenario: str) -> Any:
    from selenium.webdriver.common.by import By

    driver.set_window_size(1100, 1400)
    driver.get(f"{live_server.url}/scenario/{scenario}/author_view/?student=author")
    return driver.find_element(By.CSS_SELECTOR, ".labxblock-author")


def test_studio_shows_what_the_cloud_and_the_contract_say_of_a_template(chromium, live_server,
                                                                         studio) -> None:
    from selenium.webdriver.common.by import By

    view = author_view(chromium, live_server, BROKEN)
    problems = [li.text for li in view.find_elements(By.CSS_SELECTOR, ".labxblock-problems li")]
    assert problems == [
        "The template (inline) has no host_key output: the lab's SSH host key is then trusted the first time "
        "the lab answers. Output it so that it is verified from the start.",
        CHECKS_AS_LEARNER,
        "Provider default refuses the template (inline), line 7: resource lab: type 'OS::Nova::Server' is "
        "not one the local provider runs (LabXBlock::Local::SSH, OS::Heat::RandomString, OS::Heat::Value)",
    ]
    for_readme(chromium, view, "authoring-validation")


def test_an_author_tests_the_lab_runs_the_checks_and_stops_it(chromium, live_server, studio) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, labs = studio
    view = author_view(chromium, live_server, GOOD)
    assert [li.text for li in view.find_elements(By.CSS_SELECTOR, ".labxblock-problems li")] == [
        CHECKS_AS_LEARNER]
    screenshot(chromium, "authoring-author-view")

    # Test this lab: the phases fill in with the time each was reached, then the outputs.
    view.find_element(By.CSS_SELECTOR, "[data-action=test-launch]").click()
    WebDriverWait(chromium, 60, 0.1).until(lambda d: view.get_attribute("data-test-phase") == "ready")
    phases = [li.text for li in view.find_elements(By.CSS_SELECTOR, "[data-role=test-phases] li")]
    assert [p.split(":")[0] for p in phases] == ["Queued", "Stack created", "Outputs read", "Port reachable"]
    assert all(p.endswith(" s") for p in phases), phases
    outputs = {li.get_attribute("data-output"): li.get_attribute("data-state")
               for li in view.find_elements(By.CSS_SELECTOR, "[data-role=test-outputs] li")}
    assert outputs["public_ip"] == outputs["private_key"] == outputs["host_key"] == "present"
    lab = Lab.objects.get(lab_key__startswith="studio-test:")
    assert lab.private_key and lab.private_key.strip().splitlines()[1] not in chromium.page_source

    # The terminal: the author does the learner's task in their own test lab.
    view.find_element(By.CSS_SELECTOR, "[data-action=test-terminal]").click()
    frame = WebDriverWait(chromium, 20).until(
        lambda d: view.find_element(By.CSS_SELECTOR, "[data-role=test-terminal]"))
    chromium.switch_to.frame(frame)
    WebDriverWait(chromium, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready")
    keyboard = WebDriverWait(chromium, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea"))

    def screen(d: Any) -> str:
        return d.find_element(By.CSS_SELECTOR, ".xterm-rows").text

    WebDriverWait(chromium, 20).until(lambda d: screen(d).strip())  # a prompt: keys typed earlier are lost
    keyboard.send_keys("touch ~/marker && echo made-it\n")
    WebDriverWait(chromium, 20).until(lambda d: "made-it" in screen(d))
    chromium.switch_to.default_content()
    for_readme(chromium, view, "authoring-test-lab")

    # The checks, with every result; nothing is graded.
    view.find_element(By.CSS_SELECTOR, "[data-action=test-check]").click()
    checks = view.find_element(By.CSS_SELECTOR, "[data-role=test-checks]")
    WebDriverWait(chromium, 60, 0.2).until(lambda d: "2 of 2 checks passed" in checks.text)
    assert CheckRun.objects.get().lab_key == lab.lab_key
    for_readme(chromium, view, "authoring-test-checks")

    # Stop: the lab is deleted, its sshd and directory gone.
    view.find_element(By.CSS_SELECTOR, "[data-action=test-stop]").click()
    WebDriverWait(chromium, 60, 0.2).until(lambda d: view.get_attribute("data-test-phase") == "deleted")
    wait_for("the lab's directory gone", lambda: not any(labs.iterdir()), 20)
