"""What the engine benchmarks share: a private MariaDB, Redis, a cloud (the HTTP cloud fake, or
real Keystone + Heat from the tests' rig), Celery workers and beat, all on 127.0.0.1, started by
:class:`Rig` and stopped when it exits (also on Ctrl-C or SIGTERM).

The workers are the README's ("Processes to run"): ``--workers`` processes of the calls worker
(threads pool, ``--concurrency`` threads each; it also takes the checks queue), one observe
worker (threads, 8: observations, audits, probes), one ticks worker (prefork, 2 processes) and
one beat.

The order matters: MariaDB and Redis are started and their addresses exported before Django
reads ``tests.settings``; the lab settings (the cloud's address, intervals, rate budget) are
exported in ``LABXBLOCK_TEST_LAB_SETTINGS`` before the workers start, so every process shares
one database, one broker and one configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLOUD_START_TIMEOUT = 20.0
CALLS_THREADS = 64  # threads of a calls-worker process: the README's worker (Processes to run)
OBSERVE_THREADS = 8  # threads of the observe worker (observations, audits, probes), as the README's
MARIADB_BUFFER_POOL = "128M"  # innodb_buffer_pool_size's default in MariaDB 10.11


def cores() -> int:
    """Cores this process may run on (what ``nproc`` prints)."""
    return len(os.sched_getaffinity(0))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q`` % of values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def print_table(title: str, rows: Iterable[tuple[str, str]], *, goal: str | None = None,
                met: bool | None = None) -> None:
    """A small two-column table, then the goal and whether it was met."""
    rows = list(rows)
    width = max([len(k) for k, _ in rows] + [10])
    print(f"\n== {title} ==")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    if goal is not None:
        print(f"  {'goal':<{width}}  {goal}: {'MET' if met else 'MISSED'}")
    sys.stdout.flush()


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser showing the script's docstring as it is written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_common_arguments(parser: argparse.ArgumentParser, *, reconcile: int, suspend_idle: int, apm: int,
                         workers: int = 2, concurrency: int = CALLS_THREADS) -> None:
    """Options every engine benchmark takes (defaults chosen by each script)."""
    group = parser.add_argument_group("engine")
    group.add_argument("--workers", type=int, default=workers,
                       help="processes of the calls worker (threads pool); a ticks worker and beat beside")
    group.add_argument("--concurrency", type=int, default=concurrency,
                       help="threads of each calls-worker process")
    group.add_argument("--reconcile-interval", type=int, default=reconcile,
                       help="reconcile_interval_seconds (>= 1)")
    group.add_argument("--suspend-idle-interval", type=int, default=suspend_idle,
                       help="suspend_idle_interval_seconds (>= 1)")
    group.add_argument("--actions-per-minute", type=int, default=apm,
                       help="the provider's actions_per_minute (suspend/resume/delete budget)")
    group.add_argument("--keep", action="store_true", help="keep the work directory (service logs)")


def engine_rows(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The engine settings of a run, as table rows."""
    return [
        ("cores (nproc)", str(cores())),
        ("calls worker", f"{args.workers} process(es) x {args.concurrency} threads; observe worker "
                         f"1 x {OBSERVE_THREADS} threads; ticks worker 1 x 2 (prefork); beat"),
        ("reconcile interval", f"{args.reconcile_interval} s"),
        ("suspend-idle interval", f"{args.suspend_idle_interval} s"),
        ("actions_per_minute", f"{args.actions_per_minute} (rate-limited calls in any minute)"),
    ]


class CloudProcess:
    """The HTTP cloud fake in its own process (its GIL is not ours), controlled over HTTP."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.log_path = workdir / "cloudfake.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it while it runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.cloudfake", "--port", "0", "--config", json.dumps(config)],
            stdout=subprocess.PIPE, stderr=log, cwd=ROOT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        log.close()
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], CLOUD_START_TIMEOUT)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"cloud fake did not start: {self.log_path.read_text(errors='replace')}")
        info = json.loads(line)
        self.base_url: str = info["base_url"]
        self.provider_config: dict[str, Any] = info["provider_config"]
        from tests.cloudfake.control import FakeControl

        self.control = FakeControl(self.base_url)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class Rig:
    """MariaDB + Django (migrated) + Redis [+ a cloud + workers + beat]; a context manager.

    ``engine=False`` sets up the database and the broker only (the tick benchmark sends
    tasks but runs the ticks itself). ``heat=True`` runs real Keystone + Heat (the tests'
    rig, ``tests/services/openstack_rig.py``) instead of the cloud fake; ``self.heat`` is
    the running rig then.
    """

    def __init__(self, *, engine: bool = True, workers: int = 2, concurrency: int = CALLS_THREADS,
                 beat: bool = True, cloud: dict[str, Any] | None = None,
                 provider: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
                 keep: bool = False, buffer_pool: str = MARIADB_BUFFER_POOL, heat: bool = False) -> None:
        self.engine, self.n_workers, self.concurrency, self.beat = engine, workers, concurrency, beat
        self.cloud_config = cloud or {}
        self.provider_overrides = provider or {}
        self.setting_overrides = settings or {}
        self.keep = keep
        self.buffer_pool = buffer_pool
        self.use_heat = heat
        self.workdir = Path(tempfile.mkdtemp(prefix="labxblock-bench-"))
        self._stack = contextlib.ExitStack()
        self.cloud: CloudProcess | None = None
        self.heat: Any = None  # tests.services.openstack_rig.OpenStackRig
        self.lab_settings: dict[str, Any] = {}
        self.lab_port: Any = None
        self.procs: Any = None
        self.timings: dict[str, float] = {}

    # --- start and stop --------------------------------------------------------------

    def __enter__(self) -> Rig:
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()
        if self.keep or kind not in (None, KeyboardInterrupt):
            print(f"(service logs kept in {self.workdir})", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def _timed(self, what: str, fn: Callable[[], Any]) -> Any:
        started = time.monotonic()
        value = fn()
        self.timings[what] = time.monotonic() - started
        return value

    def _start(self) -> None:
        from tests.services.mariadb import start_mariadb

        # By default MariaDB's own cache size, not the tests' smaller one: what an untuned server has.
        server = self._timed("mariadb", partial(start_mariadb, buffer_pool=self.buffer_pool))
        self._stack.callback(server.stop)
        db_env = {**server.env(), "LABXBLOCK_TEST_DB": "mariadb"}
        os.environ.update(db_env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

        from tests.services.redis import RedisServer

        (self.workdir / "redis").mkdir()
        redis = self._timed("redis", RedisServer(self.workdir / "redis").start)
        self._stack.callback(redis.stop)
        os.environ["LABXBLOCK_TEST_BROKER_URL"] = redis.url
        if self.engine:
            self._start_cloud()

        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        from tests.celery_app import app as celery_app

        celery_app.conf.broker_url = redis.url  # this process sends tasks too (after commit)
        self._stack.callback(connections.close_all)
        self._timed("migrate", lambda: call_command("migrate", verbosity=0))
        if not self.engine:
            return

        from tests.engine_harness import LabPort, active_lab_settings, lab_settings
        from tests.services.celery_procs import CeleryProcesses

        provider = {"type": "openstack", **self._provider_config(), **self.provider_overrides}
        # The site's defaults, not the tests' quick ticks and short deadlines; each script sets its own.
        site = {"reap_interval_seconds": 300, "suspend_idle_interval_seconds": 15,
                "retry_backoff_seconds": 10, "retry_backoff_max_seconds": 600, "state_deadline_seconds": {}}
        self.lab_settings = lab_settings({"default": provider}, **{**site, **self.setting_overrides})
        self._stack.enter_context(active_lab_settings(self.lab_settings))
        self.lab_port = LabPort()
        self._stack.callback(self.lab_port.close)

        self.procs = CeleryProcesses(workdir=self.workdir, broker_url=redis.url, extra_env=db_env)
        self._stack.callback(self.procs.stop)
        started = time.monotonic()
        for _ in range(self.n_workers):
            self.procs.start_calls_worker(concurrency=self.concurrency, observe=False)
        self.procs.start_observe_worker(concurrency=OBSERVE_THREADS)
        self.timings["workers"] = time.monotonic() - started
        if self.beat:
            self._timed("ticks worker", self.procs.start_ticks_worker)
            self._timed("beat", self.procs.start_beat)

    def _start_cloud(self) -> None:
        if not self.use_heat:
            self.cloud = self._timed("cloud", lambda: CloudProcess(self.workdir, self.cloud_config))
            self._stack.callback(self.cloud.stop)
            return
        from tests.services.openstack_rig import running_rig

        (self.workdir / "openstack").mkdir()
        rig = running_rig(self.workdir / "openstack")
        self.heat = self._timed("keystone+heat", lambda: self._stack.enter_context(rig))

    def _provider_config(self) -> dict[str, Any]:
        if self.heat is not None:  # its labs answer on this host (the lab port)
            return {**self.heat.provider_config(), "allowed_networks": ["127.0.0.0/8"]}
        assert self.cloud is not None
        return dict(self.cloud.provider_config)

    def worker_pids(self) -> dict[str, int]:
        """The running Celery processes by name (each with its pool's children, if prefork)."""
        procs = [*self.procs.workers, self.procs.beat] if self.procs else []
        return {p.name: p.proc.pid for p in procs if p is not None and p.running}

    # --- helpers for the scripts -----------------------------------------------------

    def users(self, count: int, prefix: str = "learner") -> list[Any]:
        """``count`` fresh users (one INSERT), in order."""
        from django.contrib.auth import get_user_model

        user_model = get_user_model()
        names = [f"{prefix}{i:06d}" for i in range(count)]
        user_model.objects.bulk_create(
            [user_model(username=n, email=f"{n}@example.com", password="!") for n in names], batch_size=1000
        )
        by_name = {u.username: u for u in user_model.objects.filter(username__in=names)}
        return [by_name[n] for n in names]

    def spec(self, **kwargs: Any) -> Any:
        """A lab whose template answers on this rig's lab port."""
        from tests.engine_harness import lab_spec

        return lab_spec(self.lab_port.port, **kwargs)

    def counters(self) -> dict[str, int]:
        assert self.cloud is not None
        return self.cloud.control.counters()


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1], utime [11])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (a prefork worker's pool, say)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        fields = _proc_stat(member)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


class CpuMeter:
    """CPU seconds each named process tree used between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self.used: dict[str, float] = {}
        self._before: dict[str, float] = {}
        self.seconds = 0.0
        self._started = 0.0

    def start(self) -> CpuMeter:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._started = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        self.seconds = time.monotonic() - self._started
        self.used = {name: cpu_seconds(pid) - self._before[name] for name, pid in self.pids.items()}
        return self.used

    def share(self, name: str | None = None) -> float:
        """Cores used on average over the window: one process tree's, or all together."""
        used = self.used[name] if name else sum(self.used.values())
        return used / self.seconds if self.seconds else math.nan


def watch_states(ids: Iterable[int], done: Callable[[str], bool], timeout: float,
                 interval: float = 0.05, stop_on: Callable[[str], bool] | None = None,
                 ) -> tuple[dict[int, float], dict[int, str]]:
    """Poll the labs' states until each is ``done`` or ``timeout`` passes.

    Returns (monotonic time each lab was first seen done, last state of each lab). A lab
    whose state matches ``stop_on`` (e.g. failed) is given up on.
    """
    from labxblock.models import Lab

    pending, seen, last = set(ids), {}, {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        now = time.monotonic()
        for pk, state in Lab.objects.filter(pk__in=pending).values_list("pk", "state"):
            last[pk] = state
            if done(state):
                seen[pk] = now
                pending.discard(pk)
            elif stop_on is not None and stop_on(state):
                pending.discard(pk)
        if pending:
            time.sleep(interval)
    return seen, last


def state_counts(ids: Iterable[int]) -> dict[str, int]:
    """How many of the labs are in each state."""
    from django.db.models import Count

    from labxblock.models import Lab

    rows = Lab.objects.filter(pk__in=list(ids)).values("state").annotate(n=Count("pk"))
    return {row["state"]: row["n"] for row in rows}


@contextlib.contextmanager
def db_timer(slow_sql_chars: int = 160) -> Iterator[dict[str, Any]]:
    """Sum the duration and count of every query on the default connection inside the block.

    Also sums them by their first word and keeps (at least) the ten slowest as
    (seconds, shortened SQL, SQL, params).
    """
    from django.db import connection

    stats: dict[str, Any] = {"seconds": 0.0, "queries": 0, "by_kind": {}, "slowest": []}

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool,
                context: dict[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent = time.perf_counter() - started
            stats["seconds"] += spent
            stats["queries"] += 1
            kind = sql.split(None, 1)[0].upper() if sql.strip() else "?"
            seconds, count = stats["by_kind"].get(kind, (0.0, 0))
            stats["by_kind"][kind] = (seconds + spent, count + 1)
            slowest = stats["slowest"]
            slowest.append((spent, " ".join(sql.split())[:slow_sql_chars], sql, params))
            if len(slowest) > 40:
                slowest.sort(reverse=True)
                del slowest[10:]

    with connection.execute_wrapper(wrapper):
        yield stats


def max_db_connections() -> int:
    """The most connections MariaDB held at once since it started (``Max_used_connections``)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Max_used_connections'")
        return int(cursor.fetchone()[1])


def utc_now() -> datetime:
    from django.utils import timezone

    return timezone.now()


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's main: exit 130 on Ctrl-C, 1 on a crash (traceback shown), else 0."""
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
