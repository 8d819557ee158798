"""Start, watch and stop the demo's processes: web server, Celery worker and beat, gateway.

Each child runs in a process group of its own, so stopping it stops whatever it
forked (the worker's pool). Ctrl-C or SIGTERM stops them all and deletes the
labs the demo started, so nothing it started outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cryptography.fernet import Fernet

from labxblock.conf import QueueSettings
from labxblock.demo.scenario import SCENARIO_ID

SETTINGS = "labxblock.demo.settings"
REDIS = ("127.0.0.1", 6379)


@dataclass
class Options:
    """What ``labxblock demo`` was asked for."""

    directory: Path
    port: int = 8000
    gateway_port: int = 8001
    suspend_timeout: int = 30
    broker: str = "auto"  # auto | redis | filesystem



def redis_answers(address: tuple[str, int] = REDIS) -> bool:
    """Whether a Redis server answers PING at ``address``."""
    try:
        with socket.create_connection(address, timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def broker_url(choice: str) -> str:
    """Redis if asked or if one runs on 127.0.0.1:6379, else kombu's serverless filesystem broker."""
    if choice == "redis" or (choice == "auto" and redis_answers()):
        return f"redis://{REDIS[0]}:{REDIS[1]}/0"
    return "filesystem://"


def prepare(directory: Path) -> None:
    """The demo directory and its keys (made once, so stored lab secrets stay readable)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for sub in ("labs", "logs", "broker", "broker-control", "djpyfs"):
        (directory / sub).mkdir(exist_ok=True)
    for stale in directory.glob("beat-schedule*"):  # beat's shelf; a killed beat may leave it unreadable
        stale.unlink()
    keys = directory / "keys.json"
    if not keys.exists():
        keys.touch(mode=0o600)
        keys.write_text(json.dumps({"django": Fernet.generate_key().decode(),
                                    "secret": Fernet.generate_key().decode(),
                                    "ticket": Fernet.generate_key().decode()}))


@dataclass
class Demo:
    """The running demo: its children, by name."""

    options: Options
    env: dict[str, str] = field(default_factory=dict)
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.options.port}/scenario/{SCENARIO_ID}/"

    def setup_env(self, broker: str) -> None:
        opts = self.options
        keys = json.loads((opts.directory / "keys.json").read_text())
        web, gateway = f"http://127.0.0.1:{opts.port}", f"http://127.0.0.1:{opts.gateway_port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "PYTHONUNBUFFERED": "1",
            "LABXBLOCK_DEMO_DIR": str(opts.directory),
            "LABXBLOCK_DEMO_BROKER_URL": broker,
            "LABXBLOCK_DEMO_GATEWAY_URL": gateway,
            "LABXBLOCK_DEMO_SUSPEND_TIMEOUT": str(opts.suspend_timeout),
            "LABXBLOCK_GATEWAY_TICKET_KEYS": keys["ticket"],
            "LABXBLOCK_GATEWAY_MODES": "console",
            "LABXBLOCK_GATEWAY_LISTEN": f"127.0.0.1:{opts.gateway_port}",
            "LABXBLOCK_GATEWAY_ALLOWED_ORIGINS": gateway,  # the gateway's own page opens the socket
            "LABXBLOCK_GATEWAY_FRAME_ANCESTORS": web,  # the workbench frames it
        }

    def run(self, name: str, *args: str) -> None:
        """Run a one-off command to completion (migrations); its output goes to its log."""
        with (self.options.directory / "logs" / f"{name}.log").open("ab") as log:
            done = subprocess.run([sys.executable, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=False)
        if done.returncode:
            raise RuntimeError(f"{name} failed:\n{self.log_tail(name)}")

    def start(self, name: str, *args: str) -> None:
        """Start a long-running child in its own process group, logging to ``logs/<name>.log``."""
        log = (self.options.directory / "logs" / f"{name}.log").open("ab")
        self.logs.append(log)
        self.children[name] = subprocess.Popen(
            [sys.executable, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # Ctrl-C reaches us only; we stop them
        )

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.options.directory / "logs" / f"{name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def start_all(self) -> None:
        opts = self.options
        self.run("migrate", "-m", "django", "migrate", "--run-syncdb", "--noinput")
        # A clean slate: the last run's labs were deleted at its end (or are deleted now, if it was
        # killed), so their rows go too; the page launches a fresh lab.
        self.delete_labs()
        self.run("forget-labs", "-m", "django", "shell", "-c",
                 "from labxblock.models import Lab; print(Lab.objects.all().delete())")
        self.start("gateway", "-m", "labxblock.gateway.cli")
        app = "labxblock.demo.celery_app"
        queues = QueueSettings()  # the demo's settings keep the default queues; one worker takes them all
        self.start("worker", "-m", "celery", "-A", app, "worker", "--loglevel", "INFO", "--pool", "prefork",
                   "--queues", ",".join((queues.calls, queues.ticks, queues.checks)),
                   "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
                   "--hostname", f"demo-{opts.port}@%h")
        self.start("beat", "-m", "celery", "-A", app, "beat", "--loglevel", "INFO", "--max-interval", "1",
                   "--schedule", str(opts.directory / "beat-schedule"))
        self.start("web", "-m", "django", "runserver", f"127.0.0.1:{opts.port}", "--noreload")

    def wait_until_up(self, timeout: float = 60) -> None:
        """Until the page and the gateway answer; a child that exits meanwhile fails the start."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_children()
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.options.gateway_port), timeout=1).close()
                with urllib.request.urlopen(self.url, timeout=10) as answer:  # noqa: S310 (our http URL)
                    if answer.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo did not answer at {self.url} within {timeout:.0f} s")
            time.sleep(0.3)

    def check_children(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode}:\n{self.log_tail(name)}")

    def stop(self) -> None:
        """Stop every child (its whole process group), then the labs the demo started."""
        for proc in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # what a child left in its group
                os.killpg(proc.pid, signal.SIGKILL)
        for log in self.logs:
            log.close()
        self.delete_labs()

    def delete_labs(self) -> int:
        """Delete the local labs (the next start recreates what a learner opens)."""
        from labxblock.providers.local import LocalProvider

        provider = LocalProvider("default", {"root": str(self.options.directory / "labs")})
        labs = provider.list("labxblock-demo")
        for info in labs:
            provider.delete(info.ref)
        return len(labs)


def main(options: Options) -> int:
    """Run the demo until Ctrl-C or SIGTERM; 1 if it could not start or a part of it died."""
    prepare(options.directory)
    demo = Demo(options)
    broker = broker_url(options.broker)
    demo.setup_env(broker)

    def stop_on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_signal)
    status = 0
    try:
        print(f"labxblock demo in {options.directory} (broker {broker.split(':')[0]}); starting…", flush=True)
        demo.start_all()
        demo.wait_until_up()
        print(f"\n  Open {demo.url}\n\n  Logs in {options.directory / 'logs'}. Ctrl-C stops everything.\n",
              flush=True)
        while True:
            demo.check_children()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    except RuntimeError as exc:
        print(f"labxblock demo: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        demo.stop()
    print("stopped.", flush=True)
    return status
