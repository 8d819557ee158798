"""A private MariaDB server for the tests, when ``LABXBLOCK_TEST_DB=mariadb``.

Started at ``pytest_configure`` (before Django connects) in a temp directory on
127.0.0.1 and a free port, with a real user and password; stopped at
``pytest_unconfigure``. The connection parameters are exported as
``LABXBLOCK_TEST_MARIADB_*`` (read by ``tests/settings.py`` in child processes)
and patched into the already-loaded Django settings of this process.

The marker ``mariadb`` means "this depends on the database engine: run it again
on MariaDB" (``make test-mariadb`` selects ``-m mariadb``); such tests run on
SQLite too. If MariaDB was asked for but its binaries are missing, marked tests
call ``missing_service`` (skip locally, fail in CI) and the rest of the run
falls back to SQLite. A test that only makes sense on MariaDB uses the
``mariadb`` fixture, which skips on SQLite runs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import missing_service
from tests.services.process import ServiceProcess, free_port

MARIADBD = os.environ.get("LABXBLOCK_MARIADBD", shutil.which("mariadbd") or "/usr/sbin/mariadbd")
INSTALL_DB = os.environ.get(
    "LABXBLOCK_MARIADB_INSTALL_DB", shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
)
STARTUP_TIMEOUT = 30.0


@dataclass
class MariaDB:
    """A running private server and how to reach it."""

    process: ServiceProcess
    directory: Path
    port: int
    name: str
    user: str
    password: str
    startup_seconds: float = 0.0

    @property
    def socket(self) -> str:
        return str(self.directory / "sock")

    def env(self) -> dict[str, str]:
        return {
            "LABXBLOCK_TEST_MARIADB_PORT": str(self.port),
            "LABXBLOCK_TEST_MARIADB_NAME": self.name,
            "LABXBLOCK_TEST_MARIADB_USER": self.user,
            "LABXBLOCK_TEST_MARIADB_PASSWORD": self.password,
        }

    def stop(self) -> None:
        self.process.stop(timeout=20)
        shutil.rmtree(self.directory, ignore_errors=True)

    def halt(self) -> None:
        """Shut the server down and keep its data, as an outage would: clients get connection errors."""
        self.process.stop(timeout=20)

    def start_again(self) -> None:
        """Start a halted server on the same data, port and socket."""
        self.process.start(ready=lambda: _answers(self.socket), timeout=STARTUP_TIMEOUT)


_server: MariaDB | None = None
_missing: str | None = None


def _root_flags() -> list[str]:
    # mariadbd refuses to run as root unless told to (containers run tests as root).
    return ["--user=root"] if os.geteuid() == 0 else []


def _answers(sock: str) -> bool:
    import MySQLdb

    try:
        MySQLdb.connect(unix_socket=sock, user="root").close()
    except MySQLdb.OperationalError:
        return False
    return True


def start_mariadb(buffer_pool: str = "64M") -> MariaDB:
    """Initialise a data directory, start mariadbd, create the database and user.

    ``buffer_pool`` is InnoDB's cache: small for tests; benchmarks give the server's default.
    """
    import MySQLdb

    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="labxblock-mariadb-"))
    data = directory / "data"
    subprocess.run(
        [INSTALL_DB, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
         "--skip-test-db", "--skip-name-resolve", *_root_flags()],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    argv = [
        MARIADBD, "--no-defaults", *_root_flags(), f"--datadir={data}", f"--socket={directory / 'sock'}",
        f"--port={port}", "--bind-address=127.0.0.1", f"--pid-file={directory / 'pid'}",
        f"--tmpdir={directory}", "--skip-log-bin", "--skip-name-resolve",
        "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
        # Durability buys nothing for a throwaway test database; speed does.
        f"--innodb-buffer-pool-size={buffer_pool}", "--innodb-flush-log-at-trx-commit=0",
        "--innodb-doublewrite=0", "--max-connections=500",
    ]  # fmt: skip
    process = ServiceProcess("mariadbd", argv, directory / "mariadbd.log")
    server = MariaDB(process, directory, port, "labxblock_test", "labxblock", secrets.token_hex(12))
    try:
        process.start(ready=lambda: _answers(server.socket), timeout=STARTUP_TIMEOUT)
    except RuntimeError:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    root = MySQLdb.connect(unix_socket=server.socket, user="root")
    with root.cursor() as cur:
        cur.execute(f"CREATE DATABASE {server.name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        # All privileges: the test runner drops and recreates its database.
        for host in ("127.0.0.1", "localhost"):
            cur.execute(f"CREATE USER '{server.user}'@'{host}' IDENTIFIED BY %s", (server.password,))
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{server.user}'@'{host}'")
    root.close()
    server.startup_seconds = time.monotonic() - started
    return server


def pytest_configure(config: pytest.Config) -> None:
    global _server, _missing
    if os.environ.get("LABXBLOCK_TEST_DB", "sqlite") != "mariadb" or _server is not None:
        return
    if not (os.access(MARIADBD, os.X_OK) and os.access(INSTALL_DB, os.X_OK)):
        _missing = f"MariaDB binaries not found ({MARIADBD}, {INSTALL_DB})"
        _use_sqlite_instead()
        return
    _server = start_mariadb()
    os.environ.update(_server.env())
    _patch_django_settings(_server)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None


def pytest_report_header(config: pytest.Config) -> str | None:
    if _server is not None:
        return f"mariadb: private server on 127.0.0.1:{_server.port}, up in {_server.startup_seconds:.2f} s"
    return f"mariadb: unavailable ({_missing})" if _missing else None


def _patch_django_settings(server: MariaDB) -> None:
    # pytest-django imported tests.settings before this plugin ran, so the
    # values read from the environment then are placeholders; no connection
    # has been opened yet.
    from django.conf import settings

    db = settings.DATABASES["default"]
    db.update(NAME=server.name, USER=server.user, PASSWORD=server.password, PORT=str(server.port))
    db.setdefault("TEST", {})["NAME"] = server.name
    _forget_connection_settings()


def _use_sqlite_instead() -> None:
    from django.conf import settings

    os.environ["LABXBLOCK_TEST_DB"] = "sqlite"
    path = os.environ.setdefault(
        "LABXBLOCK_TEST_SQLITE", str(Path(tempfile.mkdtemp(prefix="labxblock-db-")) / "labxblock.sqlite3")
    )
    settings.DATABASES["default"] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {"timeout": 30},
        "TEST": {"NAME": path},
    }
    _forget_connection_settings()


def _forget_connection_settings() -> None:
    from django.db import connections

    connections.__dict__.pop("settings", None)  # a cached_property, rebuilt on next use


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("mariadb") is None:
        return
    if _missing:
        missing_service(_missing)


@pytest.fixture(scope="session")
def mariadb() -> MariaDB:
    """The running private MariaDB server (skips or fails as above when there is none)."""
    if _missing:
        missing_service(_missing)
    if _server is None:
        pytest.skip("needs MariaDB: run with LABXBLOCK_TEST_DB=mariadb")
    return _server
