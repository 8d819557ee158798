"""Real Celery worker and beat processes for the tests, against the private Redis.

Workers consume labxblock's queues only, as the README's workers do; the host app's
router (tests/settings.py) would put any task not sent to one of them on the
platform's default queue, which no test worker consumes.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from labxblock.conf import QueueSettings
from tests.services.process import ServiceProcess

ROOT = Path(__file__).parents[2]
QUEUES = QueueSettings()  # the default queue names, which the test settings keep
ALL_QUEUES = (QUEUES.calls, QUEUES.ticks, QUEUES.checks, QUEUES.observe)


def process_env(broker_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a worker needs to share the test's database, broker and settings."""
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "LABXBLOCK_TEST_BROKER_URL": broker_url,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.update(extra or {})
    return env


@dataclass
class CeleryProcesses:
    """Workers and an optional beat; each can be killed and restarted by a test."""

    workdir: Path
    broker_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[ServiceProcess] = field(default_factory=list)
    beat: ServiceProcess | None = None
    _supervisor: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start_worker(self, concurrency: int = 2, name: str | None = None,
                     queues: Sequence[str] = ALL_QUEUES, pool: str = "prefork") -> ServiceProcess:
        """A worker consuming ``queues`` (all of labxblock's by default)."""
        name = name or f"w{len(self.workers) + 1}"
        argv = [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
                "--queues", ",".join(queues), "--pool", pool, "--concurrency", str(concurrency),
                "--loglevel", "INFO", "--hostname", f"{name}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        env = process_env(self.broker_url, self.extra_env)
        proc = ServiceProcess(f"celery worker {name}", argv, self.workdir / f"{name}.log", env=env, cwd=ROOT)
        log = self.workdir / f"{name}.log"
        proc.start(lambda: log.exists() and " ready." in log.read_text(errors="replace"), timeout=60)
        self.workers.append(proc)
        return proc

    def start_calls_worker(self, concurrency: int = 4, observe: bool = True) -> ServiceProcess:
        """The README's worker for cloud calls and checks: threads, since each task waits on I/O. It also
        takes the observations (``observe``), as a small site's one worker does: one process fewer."""
        queues = (QUEUES.calls, QUEUES.checks, *((QUEUES.observe,) if observe else ()))
        return self.start_worker(concurrency, queues=queues, pool="threads")

    def start_observe_worker(self, concurrency: int = 8) -> ServiceProcess:
        """The README's worker for observations, audits and probes (threads: each waits on the cloud)."""
        name = f"observe{len(self.workers) + 1}"
        return self.start_worker(concurrency, name=name, queues=(QUEUES.observe,), pool="threads")

    def start_ticks_worker(self) -> ServiceProcess:
        """The README's worker for beat's ticks: two prefork processes."""
        return self.start_worker(2, name=f"ticks{len(self.workers) + 1}", queues=(QUEUES.ticks,))

    def start_beat(self) -> ServiceProcess:
        argv = [sys.executable, "-m", "celery", "-A", "tests.celery_app", "beat", "--loglevel", "INFO",
                "--schedule", str(self.workdir / "beat-schedule"), "--max-interval", "1"]
        log = self.workdir / "beat.log"
        self.beat = ServiceProcess("celery beat", argv, log, env=process_env(self.broker_url, self.extra_env),
                                   cwd=ROOT)
        self.beat.start(lambda: log.exists() and "beat: Starting" in log.read_text(errors="replace"),
                        timeout=60)
        return self.beat

    def supervise(self, interval: float = 0.5) -> None:
        """Restart a worker or beat that exits by itself, as systemd's ``Restart=always`` would.

        Operators run Celery under such a supervisor; a test that provokes Celery's own
        crashes (a broker restart can make a worker exit) should run it so too.
        """

        def watch() -> None:
            while not self._stopping.wait(interval):
                for proc in [*self.workers, self.beat]:
                    if proc is not None and proc.exited:
                        with open(proc.log_path, "a") as log:  # the log says why it starts again
                            log.write(f"--- {proc.name} exited ({proc.proc.returncode}): restarted ---\n")
                        proc.start(ready=lambda: True)

        self._stopping.clear()
        self._supervisor = threading.Thread(target=watch, name="celery supervisor", daemon=True)
        self._supervisor.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
        for proc in [*self.workers, self.beat]:
            if proc is not None:
                proc.stop()
        self.workers.clear()
        self.beat = None


@pytest.fixture
def celery_processes(redis_server, tmp_path: Path) -> Iterator[CeleryProcesses]:
    """Start workers/beat with ``celery_processes.start_worker()``; all stop after the test."""
    procs = CeleryProcesses(workdir=tmp_path, broker_url=redis_server.url)
    try:
        yield procs
    finally:
        procs.stop()
