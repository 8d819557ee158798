"""Start, watch and stop the demo's processes: web server, Celery worker and beat, gateway.

Each child runs in a session (process group) of its own, so a Ctrl-C at the terminal
reaches the demo only, and stopping a child also stops whatever it forked. Ctrl-C,
SIGTERM or SIGHUP (handled by the demo even if it was started with them ignored)
stops them all and deletes the labs the demo started; if the demo is killed outright,
its watchdog (``watchdog.py``) does that. Nothing it started outlives it, not even the
redis-server it starts when no other Redis is at hand (``broker.py``).
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
from labxblock.demo.broker import Broker, PrivateRedis, redis_error
from labxblock.demo.scenario import SCENARIO_ID
from labxblock.demo.watchdog import Watchdog, delete_labs, die_with_parent, stop_children

SETTINGS = "labxblock.demo.settings"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
BROKER = "redis"  # the child that is the demo's own redis-server, and its log
BROKER_START_SECONDS = 15


@dataclass
class Options:
    """What ``labxblock demo`` was asked for."""

    directory: Path
    broker: Broker  # broker.choose(): given, found on 127.0.0.1:6379, or the demo's own
    port: int = 8000
    gateway_port: int = 8001
    suspend_timeout: int = 30


def prepare(directory: Path) -> None:
    """The demo directory and its keys (made once, so stored lab secrets stay readable)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for sub in ("labs", "logs", "redis", "djpyfs"):
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
    watchdog: Watchdog | None = None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.options.port}/scenario/{SCENARIO_ID}/"

    def setup_env(self) -> None:
        opts = self.options
        keys = json.loads((opts.directory / "keys.json").read_text())
        web, gateway = f"http://127.0.0.1:{opts.port}", f"http://127.0.0.1:{opts.gateway_port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "PYTHONUNBUFFERED": "1",
            "LABXBLOCK_DEMO_DIR": str(opts.directory),
            "LABXBLOCK_DEMO_BROKER_URL": opts.broker.url,
            "LABXBLOCK_DEMO_GATEWAY_URL": gateway,
            "LABXBLOCK_DEMO_SUSPEND_TIMEOUT": str(opts.suspend_timeout),
            "LABXBLOCK_GATEWAY_TICKET_KEYS": keys["ticket"],
            "LABXBLOCK_GATEWAY_MODES": "console",
            "LABXBLOCK_GATEWAY_LISTEN": f"127.0.0.1:{opts.gateway_port}",
            "LABXBLOCK_GATEWAY_ALLOWED_ORIGINS": gateway,  # the gateway's own page opens the socket
            "LABXBLOCK_GATEWAY_FRAME_ANCESTORS": web,  # the workbench frames it
            "LABXBLOCK_GATEWAY_ALLOWED_NETWORKS": "127.0.0.0/8",  # the local provider's labs
        }

    def run(self, name: str, *args: str) -> None:
        """Run a one-off command to completion (migrations); its output goes to its log."""
        with (self.options.directory / "logs" / f"{name}.log").open("ab") as log:
            done = subprocess.run([sys.executable, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=False)
        if done.returncode:
            raise RuntimeError(f"{name} failed:\n{self.log_tail(name)}")

    def say(self, text: str) -> None:
        """A line of progress: the start takes a while, and whoever waits sees what it is doing."""
        print(f"  [{time.monotonic() - self.started_at:4.1f} s] {text}", flush=True)

    def start(self, name: str, *args: str) -> None:
        """Start a long-running Python child (``python -m …``); see :meth:`spawn`."""
        self.spawn(name, [sys.executable, *args])

    def spawn(self, name: str, argv: list[str], *, stdin: bytes | None = None,
              cwd: Path | None = None) -> None:
        """Start a long-running child in its own process group, logging to ``logs/<name>.log``."""
        assert self.watchdog is not None, "start_all starts the watchdog first"
        log = (self.options.directory / "logs" / f"{name}.log").open("ab")
        self.logs.append(log)
        self.children[name] = proc = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches us only; we stop them
            preexec_fn=die_with_parent,  # safe here: the demo starts its children from one thread
        )
        self.watchdog.watch(proc.pid)
        if proc.stdin is not None:  # what it reads to the end before it starts (Redis: its configuration)
            with contextlib.suppress(BrokenPipeError), proc.stdin:  # if it died at once, its log says why
                proc.stdin.write(stdin or b"")

    def start_redis(self, redis: PrivateRedis) -> None:
        """The demo's own redis-server, before anything that sends tasks; ready once it answers."""
        self.say(f"starting its own redis-server (the Celery broker) on 127.0.0.1:{redis.port}…")
        self.spawn(BROKER, redis.argv(), stdin=redis.config(), cwd=redis.directory)
        deadline = time.monotonic() + BROKER_START_SECONDS
        while (error := redis_error(redis.url)) is not None:
            self.check_children()
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer within {BROKER_START_SECONDS} s ({error}):\n"
                                   f"{self.log_tail(BROKER)}")
            time.sleep(0.1)

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.options.directory / "logs" / f"{name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def start_all(self) -> None:
        opts = self.options
        self.watchdog = Watchdog(opts.directory, self.env)  # first: it must know of every child
        if opts.broker.private:
            self.start_redis(opts.broker.private)
        self.say("preparing the database (migrate)…")
        self.run("migrate", "-m", "django", "migrate", "--run-syncdb", "--noinput")
        # A clean slate: the last run's labs were deleted at its end (or are deleted now, if it was
        # killed), so their rows go too; the page launches a fresh lab.
        self.say("clearing the last run's labs…")
        self.delete_labs()
        self.run("forget-labs", "-m", "django", "shell", "-c",
                 "from labxblock.models import Lab; print(Lab.objects.all().delete())")
        self.say(f"starting the terminal gateway on 127.0.0.1:{opts.gateway_port}…")
        self.start("gateway", "-m", "labxblock.gateway.cli")
        self.say("starting the Celery worker (lab tasks, checks) and beat (ticks)…")
        app = "labxblock.demo.celery_app"
        queues = QueueSettings()  # the demo's settings keep the default queues; one worker takes them all
        self.start("worker", "-m", "celery", "-A", app, "worker", "--loglevel", "INFO", "--pool", "prefork",
                   "--queues", ",".join((queues.calls, queues.ticks, queues.checks, queues.observe)),
                   "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
                   "--hostname", f"demo-{opts.port}@%h")
        self.start("beat", "-m", "celery", "-A", app, "beat", "--loglevel", "INFO", "--max-interval", "1",
                   "--schedule", str(opts.directory / "beat-schedule"))
        self.say(f"starting the web server (the xblock-sdk workbench) on 127.0.0.1:{opts.port}…")
        self.start("web", "-m", "django", "runserver", f"127.0.0.1:{opts.port}", "--noreload")
        self.say("waiting for the web server and the gateway to answer…")

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
        """Stop every child and what it left in its process group, then the labs; then the watchdog.

        The broker goes last: the worker, stopping, still acknowledges the tasks it finishes.
        """
        stop_children(proc.pid for name, proc in self.children.items() if name != BROKER)
        stop_children(proc.pid for name, proc in self.children.items() if name == BROKER)
        for proc in self.children.values():
            proc.wait()  # exited already: collect the status
        for log in self.logs:
            log.close()
        self.delete_labs()
        if self.watchdog is not None:
            self.watchdog.done()

    def delete_labs(self) -> int:
        """Delete the local labs (the next start recreates what a learner opens)."""
        return delete_labs(self.options.directory)


def main(options: Options) -> int:
    """Run the demo until Ctrl-C or SIGTERM; 1 if it could not start or a part of it died."""
    prepare(options.directory)
    demo = Demo(options)
    demo.setup_env()

    stopping = False

    def stop_on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:  # a second Ctrl-C while stopping must not cut the clean-up short
            stopping = True
            raise KeyboardInterrupt

    # Installed whatever was inherited: a supervisor or a test may start the demo with SIGINT ignored.
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop_on_signal)
    status = 0
    try:
        print(f"labxblock demo in {options.directory} (broker: {options.broker.describe()}); starting…",
              flush=True)
        demo.start_all()
        demo.wait_until_up()
        demo.say("ready.")
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
        stopping = True
        demo.stop()
    print("stopped.", flush=True)
    return status
