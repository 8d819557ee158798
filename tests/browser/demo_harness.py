"""Running ``labxblock demo`` as a newcomer does (the command from README.md), for the browser tests."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labxblock.demo.broker import LOCAL_REDIS_ENV
from labxblock.providers.local import free_port
from tests.services import missing_service

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
PROGRESS = re.compile(r"^  \[ *\d+\.\d s\] ")  # "  [ 2.6 s] starting the terminal gateway…"


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
    proc: subprocess.Popen[str]

    def lab_state(self) -> str | None:
        with sqlite3.connect(self.directory / "demo.sqlite3", timeout=10) as db:
            row = db.execute("SELECT state FROM labxblock_lab ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def lab(self, student: str) -> dict[str, Any] | None:
        """The lab of the workbench's ``?student=`` (its state, desired state and stack name)."""
        with sqlite3.connect(self.directory / "demo.sqlite3", timeout=10) as db:
            row = db.execute(
                "SELECT l.state, l.desired, l.stack_name FROM labxblock_lab l JOIN auth_user u "
                "ON u.id = l.learner_id WHERE u.username = ?", (f"workbench-{student}",)
            ).fetchone()
        return dict(zip(("state", "desired", "stack_name"), row, strict=True)) if row else None

    def page(self, student: str) -> str:
        return f"{self.url}?student={student}"

    def log(self, name: str) -> str:
        return (self.directory / "logs" / f"{name}.log").read_text(errors="replace")


def start_demo(directory: Path, *options: str, ignore_sigint: bool = False) -> RunningDemo:
    """Start the quickstart's command and wait for its URL; the progress it prints on the way is kept."""
    if not Path("/usr/sbin/sshd").exists():
        missing_service("the demo's local provider needs /usr/sbin/sshd (openssh-server)")
    argv = [*quickstart_command(), "--dir", str(directory), "--port", "0", *options]
    # Whether or not a Redis runs on 127.0.0.1:6379 (CI installs redis-server; a developer may run
    # one, shared by every test's demo): the demo looks on a port where nothing runs, finds no
    # Redis, and runs (and must stop) a redis-server of its own, as on a machine without Redis.
    env = {**os.environ, LOCAL_REDIS_ENV: f"redis://127.0.0.1:{free_port()}/0"}
    own_redis = "--broker" not in options
    restore: Callable[[], Any] | None = None
    if ignore_sigint:  # as a supervisor or a non-interactive shell's `&` may start it
        def restore() -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True, preexec_fn=restore)
    output: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            output.append(line)
            if "Open http" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(120) or proc.poll() is not None, "".join(output)
        match = re.search(r"Open (http://\S+)", "".join(output))
        assert match, "".join(output)
        assert len(processes_of(directory)) >= 5, "the checks of its end would see nothing"  # web, worker…
        assert not own_redis or len(redis_servers(directory)) == 1, "".join(output)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return RunningDemo(match.group(1), directory, output, proc)


def run_demo(directory: Path, *options: str) -> Iterator[RunningDemo]:
    """Run the quickstart's command until the test is done, then Ctrl-C it and check it cleaned up."""
    with running(directory, *options) as demo:
        yield demo
        demo.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert wait_stopped(demo) == 0, "".join(demo.output)
        assert_cleaned_up(demo)


@contextlib.contextmanager
def running(directory: Path, *options: str, ignore_sigint: bool = False) -> Iterator[RunningDemo]:
    """The demo for one test; whatever the test did, nothing of it outlives the test."""
    demo = start_demo(directory, *options, ignore_sigint=ignore_sigint)
    try:
        yield demo
    finally:
        if demo.proc.poll() is None:
            demo.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                wait_stopped(demo)
        sweep(directory)


def wait_stopped(demo: RunningDemo, timeout: float = 30) -> int:
    try:
        return demo.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(demo.proc.pid, signal.SIGKILL)
        raise
    finally:
        print("".join(demo.output))


def assert_cleaned_up(demo: RunningDemo, *, timeout: float = 0) -> None:
    """Nothing the demo started runs any more, its labs are gone, and its workers stopped cleanly."""
    deadline = time.monotonic() + timeout
    while processes_of(demo.directory) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {pid: _command(pid) for pid in processes_of(demo.directory)}
    assert not left, f"the demo left processes behind: {left}"
    labs = demo.directory / "labs"
    assert not labs.exists() or list(labs.iterdir()) == [], "the demo left labs behind"
    # Stopped with the right signal and waited for, a worker ends its pool itself: no errors.
    assert not re.search(r"ERROR/MainProcess.*exited with 'signal", demo.log("worker")), demo.log("worker")


def own_redis(directory: Path) -> tuple[int, str]:
    """The pid of the demo's own redis-server and the broker URL the demo gave its children."""
    (pid,) = redis_servers(directory)
    for other in processes_of(directory):
        environ = dict(var.split("=", 1) for var in _environ(other) if "=" in var)
        if "LABXBLOCK_DEMO_BROKER_URL" in environ:
            return pid, environ["LABXBLOCK_DEMO_BROKER_URL"]
    raise AssertionError("no child of the demo has its broker URL")


def redis_servers(directory: Path) -> list[int]:
    """The redis-server processes the demo in ``directory`` started."""
    return [pid for pid in processes_of(directory) if _comm(pid) == "redis-server"]


def _comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return "?"


def _environ(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return []


def sweep(directory: Path) -> None:
    """Kill what a failed test's demo left behind, so that the next tests run on a clean machine."""
    for pid in processes_of(directory):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _command(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    return "?"


def processes_of(directory: Path) -> list[int]:
    """Pids of live processes started by the demo in ``directory``.

    Labs and the demo's Python children inherit its environment; its redis-server
    overwrites its environment with its process title, but works in ``<directory>/redis``.
    """
    marker = f"LABXBLOCK_DEMO_DIR={directory}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit()
                    and (marker in (entry / "environ").read_bytes().split(b"\0")
                         or Path(os.readlink(entry / "cwd")) == directory / "redis")
                    and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"):  # zombies are dead
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def terminal(driver, timeout: float = 90):
    """Switch into the lab's terminal iframe once the lab is ready; return xterm's keyboard input."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.switch_to.default_content()
    frame = WebDriverWait(driver, timeout).until(
        lambda d: next((f for f in d.find_elements(By.CSS_SELECTOR, "iframe.labxblock-terminal")
                        if f.is_displayed()), None)
    )
    driver.switch_to.frame(frame)
    return keyboard(driver)


def keyboard(driver):
    """xterm's keyboard input on the current page, once its session is ready."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"
    )
    return WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
    )


def screen(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, ".xterm-rows").text


def type_and_see(driver, keys, command: str, expect: str, timeout: float = 20) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    # Wait for a prompt first: keys typed before the shell reads are dropped by tmux.
    WebDriverWait(driver, timeout).until(lambda d: screen(d).strip() != "")
    keys.send_keys(command + "\n")
    WebDriverWait(driver, timeout).until(lambda d: expect in screen(d))
