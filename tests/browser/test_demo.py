"""The one-command demo, as a newcomer runs it: the command from README.md, headless Chromium.

Type into the lab's terminal, leave, watch the lab be suspended (its processes
frozen), come back: the same shell, with the variable set before, answers.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import screenshot
from tests.browser.demo_harness import (
    PROGRESS,
    ROOT,
    RunningDemo,
    assert_cleaned_up,
    processes_of,
    run_demo,
    running,
    terminal,
    type_and_see,
    wait_stopped,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SUSPEND_TIMEOUT = 10  # the demo's --suspend-timeout, short so the test waits little


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[RunningDemo]:
    yield from run_demo(tmp_path / "demo", "--suspend-timeout", str(SUSPEND_TIMEOUT))


def _wait_state(demo: RunningDemo, state: str, timeout: float) -> float:
    started = time.monotonic()
    while (now := demo.lab_state()) != state:
        assert time.monotonic() - started < timeout, f"lab still {now}, not {state}"
        time.sleep(0.5)
    return time.monotonic() - started


def test_the_demo_lab_works_suspends_when_left_and_resumes_with_the_same_shell(chromium, demo) -> None:
    chromium.get(demo.url)
    keyboard = terminal(chromium)
    assert demo.lab_state() == "ready"
    type_and_see(chromium, keyboard, "export MARK=42", "MARK=42")
    type_and_see(chromium, keyboard, "echo mark-$MARK", "mark-42\n")
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
    keyboard = terminal(chromium)
    assert demo.lab_state() == "ready"
    type_and_see(chromium, keyboard, "echo again-$MARK", "again-42")
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
        type_and_see(chromium, terminal(chromium), f"echo {attempt}-run-ok", f"{attempt}-run-ok\n")
        chromium.get("about:blank")
        with pytest.raises(StopIteration):
            next(running)


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT])
def test_started_with_sigint_ignored_it_says_what_it_starts_and_a_signal_stops_everything(
        tmp_path: Path, stop_with: signal.Signals) -> None:
    """As a supervisor or a script's `&` starts it: its own signal handling, and a clean stop."""
    with running(tmp_path / "demo", ignore_sigint=True) as demo:
        started = "".join(demo.output)
        progress = [line.strip() for line in demo.output if PROGRESS.match(line)]
        # What it is doing during the start, before the URL: each part, as it starts it.
        for part in ("migrate", "terminal gateway", "Celery worker", "web server", "waiting", "ready"):
            assert any(part in line for line in progress), (part, started)
        assert started.index(progress[-1]) < started.index("Open http")
        demo.proc.send_signal(stop_with)
        assert wait_stopped(demo) == 0
        assert "stopped." in "".join(demo.output)
        assert_cleaned_up(demo)


def test_killed_outright_what_it_started_goes_too(chromium, tmp_path: Path) -> None:
    """SIGKILL (a test's timeout, an OOM kill): the watchdog stops the children and deletes the lab."""
    with running(tmp_path / "demo") as demo:
        chromium.get(demo.url)
        terminal(chromium)  # a lab runs: its sshd and tmux are the demo's too
        chromium.get("about:blank")
        assert list((demo.directory / "labs").iterdir())
        before = len(processes_of(demo.directory))
        os.kill(demo.proc.pid, signal.SIGKILL)
        demo.proc.wait(5)
        killed_at = time.monotonic()
        assert_cleaned_up(demo, timeout=15)
    print(f"{before} processes gone {time.monotonic() - killed_at:.1f} s after the demo was killed")
    assert "the demo died" in demo.log("watchdog"), demo.log("watchdog")
