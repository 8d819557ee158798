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

from labxblock.demo.broker import redis_error
from labxblock.demo.watchdog import gone
from tests.browser.conftest import screenshot
from tests.browser.demo_harness import (
    PROGRESS,
    ROOT,
    RunningDemo,
    assert_cleaned_up,
    own_redis,
    processes_of,
    redis_servers,
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


def _ticks_reach_the_worker(directory: Path) -> None:
    """Beat's reconcile tick went through the broker and the worker ran it."""
    worker_log, started = directory / "logs" / "worker.log", time.monotonic()
    while not re.search(r"labxblock\.tasks\.reconcile\[\S+\] succeeded", worker_log.read_text()):
        assert time.monotonic() - started < 30, worker_log.read_text()[-2000:]
        time.sleep(0.5)


def test_with_no_redis_to_find_it_runs_its_own_private_redis_server_and_stops_it_on_ctrl_c(
        tmp_path: Path) -> None:
    import redis

    directory = tmp_path / "demo"
    with running(directory) as demo:  # it looks for a Redis where none runs (demo_harness.start_demo)
        output = "".join(demo.output)
        port = int(re.search(r"\(broker: its own redis-server on 127\.0\.0\.1:(\d+)\)", output).group(1))
        pid, url = own_redis(directory)
        assert url.startswith("redis://:") and url.endswith(f"@127.0.0.1:{port}/0")
        assert Path(f"/proc/{pid}/cwd").resolve() == directory / "redis"  # its data in the demo's directory
        with redis.Redis.from_url(url) as client:
            assert client.config_get("save") == {"save": ""}  # no persistence
            assert client.config_get("appendonly") == {"appendonly": "no"}
            assert client.config_get("bind") == {"bind": "127.0.0.1"}
        with pytest.raises(redis.AuthenticationError), redis.Redis(host="127.0.0.1", port=port) as stranger:
            stranger.ping()  # another local user cannot send the worker tasks
        _ticks_reach_the_worker(directory)
        password = url.split(":")[2].split("@")[0]
        assert password not in output
        for log in (directory / "logs").iterdir():
            assert password not in log.read_text(errors="replace"), log
        for other in processes_of(directory):  # any user may read a command line
            assert password not in Path(f"/proc/{other}/cmdline").read_bytes().decode(errors="replace")

        demo.proc.send_signal(signal.SIGINT)
        assert wait_stopped(demo) == 0
        assert "stopped." in "".join(demo.output)
        assert_cleaned_up(demo)
        assert gone(pid), f"its redis-server {pid} outlived the demo"
        assert redis_error(url), "something still answers on its port"
        assert list((directory / "redis").iterdir()) == []  # nothing saved


def test_given_a_broker_url_it_uses_that_redis_and_starts_none(tmp_path: Path, redis_server) -> None:
    directory = tmp_path / "demo"
    running = run_demo(directory, "--broker", redis_server.url)
    demo = next(running)
    assert f"(broker: {redis_server.url})" in "".join(demo.output)
    assert redis_servers(directory) == []
    _ticks_reach_the_worker(directory)
    with redis_server.client() as client:
        assert client.exists("_kombu.binding.labxblock.ticks")  # the worker's queues are there
    with pytest.raises(StopIteration):
        next(running)  # Ctrl-C, and the checks that everything stopped


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
        redis_pid, redis_url = own_redis(demo.directory)
        os.kill(demo.proc.pid, signal.SIGKILL)
        demo.proc.wait(5)
        killed_at = time.monotonic()
        assert_cleaned_up(demo, timeout=15)
        # Exited, if perhaps a zombie: orphans go to PID 1, which need not reap them (a container's).
        assert gone(redis_pid), f"its redis-server {redis_pid} outlived the demo"
        assert redis_error(redis_url), "something still answers on its redis-server's port"
    print(f"{before} processes gone {time.monotonic() - killed_at:.1f} s after the demo was killed")
    assert "the demo died" in demo.log("watchdog"), demo.log("watchdog")
