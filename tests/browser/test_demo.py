"""The one-command demo, as a newcomer runs it: the command from README.md, headless Chromium.

Type into the lab's terminal, leave, watch the lab be suspended (its processes
frozen), come back: the same shell, with the variable set before, answers.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.conftest import screenshot
from tests.services import missing_service

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
SUSPEND_TIMEOUT = 10  # the demo's --suspend-timeout, short so the test waits little


def quickstart_command() -> list[str]:
    """The demo command exactly as README.md gives it (the line starting ``labxblock demo``)."""
    lines = [line.strip() for line in README.read_text().splitlines()]
    command = next(line for line in lines if line.startswith("labxblock demo"))
    argv = shlex.split(command)
    # The console script of this virtualenv, as `pip install` put it on the PATH.
    return [str(Path(sys.executable).parent / argv[0]), *argv[1:]]


@dataclass
class RunningDemo:
    url: str
    directory: Path
    output: list[str]

    def lab_state(self) -> str | None:
        with sqlite3.connect(self.directory / "demo.sqlite3", timeout=10) as db:
            row = db.execute("SELECT state FROM labxblock_lab ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else None


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[RunningDemo]:
    yield from run_demo(tmp_path / "demo", "--suspend-timeout", str(SUSPEND_TIMEOUT))


def run_demo(directory: Path, *options: str) -> Iterator[RunningDemo]:
    """Run the quickstart's command until the test is done, then Ctrl-C it and check it cleaned up."""
    if not Path("/usr/sbin/sshd").exists():
        missing_service("the demo's local provider needs /usr/sbin/sshd (openssh-server)")
    argv = [*quickstart_command(), "--dir", str(directory), "--port", "0", *options]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    output: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            output.append(line)
            if "Open http" in line:
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(120) or proc.poll() is not None, "".join(output)
        match = re.search(r"Open (http://\S+)", "".join(output))
        assert match, "".join(output)
        assert len(_processes_of(directory)) >= 5, "the check below would see nothing"  # web, worker…
        yield RunningDemo(match.group(1), directory, output)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            status = proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        reader.join(5)
        print("".join(output))
    assert status == 0, "".join(output)
    assert "stopped." in "".join(output)
    labs = directory / "labs"
    assert not labs.exists() or [p for p in labs.iterdir()] == [], "Ctrl-C left labs behind"
    assert _processes_of(directory) == [], "Ctrl-C left processes behind"


def _processes_of(directory: Path) -> list[int]:
    """Pids of live processes started by the demo in ``directory`` (labs inherit its environment)."""
    marker = f"LABXBLOCK_DEMO_DIR={directory}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(b"\0")
                    and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"):  # zombies are dead
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _terminal(driver, timeout: float = 90):
    """Switch into the lab's terminal iframe once the lab is ready; return xterm's keyboard input."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.switch_to.default_content()
    frame = WebDriverWait(driver, timeout).until(
        lambda d: next((f for f in d.find_elements(By.CSS_SELECTOR, "iframe.labxblock-terminal")
                        if f.is_displayed()), None)
    )
    driver.switch_to.frame(frame)
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"
    )
    return WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
    )


def _screen(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, ".xterm-rows").text


def _type_and_see(driver, keyboard, command: str, expect: str, timeout: float = 20) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    # Wait for a prompt first: keys typed before the shell reads are dropped by tmux.
    WebDriverWait(driver, timeout).until(lambda d: _screen(d).strip() != "")
    keyboard.send_keys(command + "\n")
    WebDriverWait(driver, timeout).until(lambda d: expect in _screen(d))


def _wait_state(demo: RunningDemo, state: str, timeout: float) -> float:
    started = time.monotonic()
    while (now := demo.lab_state()) != state:
        assert time.monotonic() - started < timeout, f"lab still {now}, not {state}"
        time.sleep(0.5)
    return time.monotonic() - started


def test_the_demo_lab_works_suspends_when_left_and_resumes_with_the_same_shell(chromium, demo) -> None:
    chromium.get(demo.url)
    keyboard = _terminal(chromium)
    assert demo.lab_state() == "ready"
    _type_and_see(chromium, keyboard, "export MARK=42", "MARK=42")
    _type_and_see(chromium, keyboard, "echo mark-$MARK", "mark-42\n")
    chromium.switch_to.default_content()
    screenshot(chromium, "demo-lab")
    if os.environ.get("LABXBLOCK_UPDATE_SCREENSHOTS") == "1":  # refresh the README's picture of the demo
        (ROOT / "docs" / "screenshot-demo.png").write_bytes(chromium.get_screenshot_as_png())

    chromium.get("about:blank")  # the learner leaves: keepalives stop
    waited = _wait_state(demo, "suspended", SUSPEND_TIMEOUT + 40)
    print(f"suspended {waited:.1f} s after leaving (timeout {SUSPEND_TIMEOUT} s)")
    stopped = _frozen_states(demo.directory / "labs")
    assert stopped and set(stopped) == {"T"}, stopped  # every process of the lab is really stopped

    chromium.get(demo.url)
    keyboard = _terminal(chromium)
    assert demo.lab_state() == "ready"
    _type_and_see(chromium, keyboard, "echo again-$MARK", "again-42")
    screenshot(chromium, "demo-lab-resumed")


def _frozen_states(labs: Path) -> list[str]:
    """The /proc state letter of every process of the (one) lab."""
    from labxblock.providers.local import LocalProvider
    from labxblock.providers.local_procs import lab_processes

    provider = LocalProvider("default", {"root": str(labs)})
    (lab,) = provider.list("labxblock-demo")
    state = provider._read(labs / lab.ref.name)
    return [p.state for p in lab_processes(state["id"], state["sshd_pid"], state["sshd_start"])]


def test_without_redis_the_serverless_broker_carries_beats_ticks_to_the_worker(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    running = run_demo(directory, "--broker", "filesystem")
    demo = next(running)
    assert "(broker filesystem)" in "".join(demo.output)
    worker_log, started = directory / "logs" / "worker.log", time.monotonic()
    while not re.search(r"labxblock\.tasks\.reconcile\[\S+\] succeeded", worker_log.read_text()):
        assert time.monotonic() - started < 30, worker_log.read_text()[-2000:]
        time.sleep(0.5)
    with pytest.raises(StopIteration):
        next(running)  # Ctrl-C, and the checks that everything stopped


def test_a_redis_answering_ping_is_found_and_a_silent_port_is_not(redis_server) -> None:
    from labxblock.demo.runner import broker_url, redis_answers
    from labxblock.providers.local import free_port

    assert redis_answers(("127.0.0.1", redis_server.port))
    assert not redis_answers(("127.0.0.1", free_port()))
    assert broker_url("filesystem") == "filesystem://"
    assert broker_url("redis").startswith("redis://127.0.0.1:6379/")


def test_a_second_run_in_the_same_directory_gives_a_working_lab_again(chromium, tmp_path: Path) -> None:
    """The first run's Ctrl-C deleted its lab: the second starts clean and launches a new one."""
    for attempt in ("first", "second"):
        running = run_demo(tmp_path / "demo")
        demo = next(running)
        chromium.get(demo.url)
        _type_and_see(chromium, _terminal(chromium), f"echo {attempt}-run-ok", f"{attempt}-run-ok\n")
        chromium.get("about:blank")
        with pytest.raises(StopIteration):
            next(running)
