"""Real Keystone + Heat from PyPI on 127.0.0.1, started by the tests themselves.

Fixture ``openstack_rig`` (session scope, started only when a test asks for it)
yields an :class:`OpenStackRig`, a frozen dataclass:

- the openstack provider's config keys, for a NON-admin user (role ``member``
  and ``heat_stack_owner`` in project ``labs``): ``auth_url`` (Keystone v3,
  ``http://127.0.0.1:PORT/v3``), ``username``, ``password``, ``project_name``,
  ``user_domain_name``, ``project_domain_name`` (both ``Default``),
  ``region_name`` (``RegionOne``), ``interface`` (``public``);
  ``rig.provider_config()`` returns exactly these as a dict;
- ``application_credential_id`` / ``application_credential_secret``: an
  application credential of the same user on the same project;
  ``rig.app_credential_config()`` returns ``auth_url``, those two,
  ``region_name`` and ``interface``. Heat creates a Keystone trust for every
  stack and Keystone >= 2026.1 refuses trusts to application-credential tokens
  (HTTP 403 on stack create) unless ``[security_compliance]
  allow_insecure_application_credential_trust_escalation``; the fixture's
  Keystone enables it, ``running_rig(app_credential_trusts=False)`` does not;
- for diagnostics: ``heat_url`` (API root; the catalog has
  ``{heat_url}/v1/%(tenant_id)s``), ``keystone_url``, ``keystone_log``,
  ``heat_log``, ``keystone_pid``, ``heat_pid``, ``timings`` (seconds per
  start-up step), and ``rig.memory_mb()``.

Templates for the rig's Heat are in ``TEMPLATES_DIR`` (``template_text(name)``):
``lab_good.yaml``, ``lab_fail_create.yaml``, ``lab_slow_suspend.yaml``; they use
the resource ``LabXBlock::Test::Server`` from ``openstack/heat_plugins``.

The services run in a virtualenv of their own, ``CACHE_DIR/openstack-venv``,
installed from ``openstack/constraints.txt`` and reused while a stamp matches.
Command line (from the repository root, project venv)::

    python -m tests.services.openstack_rig install   # create/refresh the venv, print the time taken
    python -m tests.services.openstack_rig serve     # start the rig, print its config, wait for Ctrl-C
    python -m tests.services.openstack_rig freeze    # rebuild constraints.txt from a fresh install
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.services import CACHE_DIR, missing_service

HERE = Path(__file__).parent / "openstack"
TEMPLATES_DIR = HERE / "templates"
PLUGIN_DIR = HERE / "heat_plugins"
CONSTRAINTS = HERE / "constraints.txt"
VENV = CACHE_DIR / "openstack-venv"
STAMP = VENV / ".labxblock-stamp"
PYTHON = os.environ.get("LABXBLOCK_OPENSTACK_PYTHON", "python3.11")
PACKAGES = ("keystone==30.0.0", "openstack-heat==27.0.1", "python-keystoneclient")

START_TIMEOUT = 60.0  # seconds for each service to answer HTTP
STOP_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class OpenStackRig:
    """A running rig: the provider's config keys plus diagnostics (see the module docstring)."""

    auth_url: str
    username: str
    password: str
    project_name: str
    user_domain_name: str
    project_domain_name: str
    region_name: str
    interface: str
    application_credential_id: str
    application_credential_secret: str
    heat_url: str
    keystone_url: str
    keystone_log: Path
    heat_log: Path
    keystone_pid: int
    heat_pid: int
    timings: Mapping[str, float]

    def provider_config(self) -> dict[str, str]:
        """Password auth, exactly the openstack provider's keys."""
        keys = (
            "auth_url",
            "username",
            "password",
            "project_name",
            "user_domain_name",
            "project_domain_name",
            "region_name",
            "interface",
        )
        return {k: getattr(self, k) for k in keys}

    def app_credential_config(self) -> dict[str, str]:
        """Application-credential auth for the same user and project."""
        keys = (
            "auth_url",
            "application_credential_id",
            "application_credential_secret",
            "region_name",
            "interface",
        )
        return {k: getattr(self, k) for k in keys}

    def memory_mb(self) -> dict[str, float]:
        """Resident memory of each service process now, in MiB."""
        return {"keystone": _rss_mb(self.keystone_pid), "heat": _rss_mb(self.heat_pid)}


def template_text(name: str) -> str:
    """One of the sample templates in ``TEMPLATES_DIR``."""
    return (TEMPLATES_DIR / name).read_text()


# ---------------------------------------------------------------- install


def _stamp_value() -> str:
    # Requirement lines only: editing a comment should not cost a reinstall.
    lines = [ln.strip() for ln in CONSTRAINTS.read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    digest = hashlib.sha256("\n".join(lines).encode())
    digest.update(" ".join(PACKAGES).encode())
    return digest.hexdigest()


def venv_is_current() -> bool:
    """True when the services venv exists and was installed from the current constraints."""
    python = VENV / "bin" / "python"
    return python.exists() and STAMP.exists() and STAMP.read_text().strip() == _stamp_value()


def _pip(venv: Path, *args: str, log: Path) -> None:
    # pip's output (including noise from this machine's pip.conf) goes to a log, shown only on failure.
    with log.open("a") as out:
        rc = subprocess.call(
            [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_clean_env(venv),
        )
    if rc:
        raise RuntimeError(f"pip {' '.join(args)} failed (rc={rc}):\n{_tail(log, 40)}")


def ensure_venv() -> Path:
    """Create or refresh the services venv unless the stamp says it is current; return its path.

    A file lock keeps parallel test processes (xdist workers, CI steps) from
    installing over each other.
    """
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / "openstack-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if venv_is_current():
            return VENV
        if shutil.which(PYTHON) is None:
            raise FileNotFoundError(f"{PYTHON} not found: the Keystone/Heat venv needs Python 3.11")
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([PYTHON, "-m", "venv", str(VENV)], check=True)
        log = CACHE_DIR / "openstack-venv-install.log"
        log.write_text("")
        # pip/setuptools/wheel first, at the versions in the constraints, then everything else.
        _pip(VENV, "install", "-c", str(CONSTRAINTS), "pip", "setuptools", "wheel", log=log)
        _pip(VENV, "install", "-c", str(CONSTRAINTS), *PACKAGES, log=log)
        STAMP.write_text(_stamp_value())
        return VENV


def freeze_constraints() -> None:
    """Install PACKAGES unconstrained into a scratch venv and write its ``pip freeze --all``."""
    with tempfile.TemporaryDirectory(prefix="openstack-freeze-") as tmp:
        venv, log = Path(tmp) / "venv", Path(tmp) / "pip.log"
        subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
        _pip(venv, "install", "--upgrade", "pip", "setuptools", "wheel", log=log)
        _pip(venv, "install", *PACKAGES, log=log)
        frozen = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "freeze", "--all"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    header = (
        "# Services venv for tests/services/openstack_rig.py (Keystone + Heat), Python 3.11.\n"
        "# Regenerate: python -m tests.services.openstack_rig freeze (pip freeze --all, fresh install).\n"
    )
    CONSTRAINTS.write_text(header + frozen)


# ---------------------------------------------------------------- processes


def _clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: nothing from the project's venv or the developer's OS_* settings leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in {"HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "TZ"} or k.startswith("PIP_")
    }
    env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text[-lines:])


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RigError(RuntimeError):
    """The rig failed to start; the message carries the tail of the service logs."""


class _Rig:
    """Starts and stops the two service processes; all state lives in ``workdir``."""

    def __init__(self, venv: Path, workdir: Path, *, app_credential_trusts: bool = True) -> None:
        self.venv = venv
        self.app_credential_trusts = app_credential_trusts
        self.workdir = workdir
        self.state = workdir / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.timings: dict[str, float] = {}

    def _bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def _popen(self, args: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
        if log not in self.logs:
            self.logs.append(log)
        with log.open("ab") as out:
            return subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=_clean_env(self.venv, **env),
            )

    def _run(self, args: list[str], log: Path) -> None:
        proc = self._popen(args, log)
        if proc.wait(timeout=120):
            raise RigError(f"{' '.join(args)} failed (rc={proc.returncode})\n{self.log_tails()}")

    def log_tails(self) -> str:
        return "\n".join(f"--- tail of {log} ---\n{_tail(log)}" for log in self.logs)

    def _wait_http(self, url: str, proc: subprocess.Popen[bytes], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RigError(f"{what} exited with rc={proc.returncode}\n{self.log_tails()}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer (Heat's / answers 300) means it is serving
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RigError(f"{what} not answering {url} after {START_TIMEOUT:.0f}s\n{self.log_tails()}")

    def _render(self, name: str, **values: str) -> Path:
        target = self.workdir / name.removesuffix(".in")
        target.write_text(string.Template((HERE / name).read_text()).substitute(values))
        return target

    def start(self) -> OpenStackRig:
        ks_port, heat_port = _free_port(), _free_port()
        keystone_url = f"http://127.0.0.1:{ks_port}"
        heat_url = f"http://127.0.0.1:{heat_port}"
        admin_password, heat_password, user_password = (secrets.token_urlsafe(12) for _ in range(3))
        heat_etc = self.venv / "etc" / "heat"
        ks_log, heat_log, setup_log = (self.workdir / n for n in ("keystone.log", "heat.log", "setup.log"))

        ks_conf = self._render(
            "keystone.conf.in", state=str(self.state), app_cred_trusts=str(self.app_credential_trusts).lower()
        )
        heat_conf = self._render(
            "heat.conf.in",
            state=str(self.state),
            plugin_dir=str(PLUGIN_DIR),
            heat_etc=str(heat_etc),
            keystone_url=keystone_url,
            heat_password=heat_password,
            auth_encryption_key=secrets.token_hex(16),  # exactly 32 characters
        )

        t0 = time.monotonic()
        # Heat's schema does not depend on Keystone: build it while Keystone sets up.
        heat_sync = self._popen(
            [self._bin("heat-manage"), "--config-file", str(heat_conf), "db_sync"], setup_log
        )
        self.procs.append(heat_sync)  # so that stop() reaps it if Keystone's setup fails
        self._run(
            [
                self._bin("python"),
                str(HERE / "keystone_setup.py"),
                str(ks_conf),
                admin_password,
                keystone_url,
            ],
            setup_log,
        )
        self.timings["keystone_setup"] = time.monotonic() - t0

        t0 = time.monotonic()
        keystone = self._popen(
            [self._bin("python"), str(HERE / "keystone_launcher.py"), str(ks_port)],
            ks_log,
            OS_KEYSTONE_CONFIG_FILES=str(ks_conf),
        )
        self.procs.append(keystone)
        if heat_sync.wait(timeout=120):
            raise RigError(f"heat-manage db_sync failed (rc={heat_sync.returncode})\n{self.log_tails()}")
        # Heat needs Keystone only when a request comes in: let it start while Keystone is bootstrapped.
        t_heat = time.monotonic()
        heat = self._popen(
            [self._bin("python"), str(HERE / "heat_launcher.py"), str(heat_conf), str(heat_port)], heat_log
        )
        self.procs.append(heat)
        self._wait_http(f"{keystone_url}/v3", keystone, "Keystone")
        self.timings["keystone_start"] = time.monotonic() - t0

        t0 = time.monotonic()
        params = {
            "keystone_url": keystone_url,
            "admin_password": admin_password,
            "heat_url": heat_url,
            "heat_password": heat_password,
            "user": "labxblock",
            "user_password": user_password,
            "project": "labs",
        }
        boot = subprocess.run(
            [self._bin("python"), str(HERE / "keystone_bootstrap.py")],
            input=json.dumps(params),
            capture_output=True,
            text=True,
            timeout=120,
            env=_clean_env(self.venv),
            cwd=self.workdir,
        )
        with setup_log.open("a") as out:
            out.write(boot.stderr)
        if boot.returncode:
            raise RigError(f"keystone_bootstrap.py failed (rc={boot.returncode})\n{self.log_tails()}")
        created = json.loads(boot.stdout)
        self.timings["keystone_bootstrap"] = time.monotonic() - t0

        self._wait_http(f"{heat_url}/", heat, "Heat")
        self.timings["heat_start"] = time.monotonic() - t_heat

        return OpenStackRig(
            auth_url=f"{keystone_url}/v3",
            username="labxblock",
            password=user_password,
            project_name="labs",
            user_domain_name="Default",
            project_domain_name="Default",
            region_name="RegionOne",
            interface="public",
            application_credential_id=created["application_credential_id"],
            application_credential_secret=created["application_credential_secret"],
            heat_url=heat_url,
            keystone_url=keystone_url,
            keystone_log=ks_log,
            heat_log=heat_log,
            keystone_pid=keystone.pid,
            heat_pid=heat.pid,
            timings=dict(self.timings),
        )

    def stop(self) -> None:
        """Terminate every process, newest first; kill what does not exit in time."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        self.procs.clear()


@contextlib.contextmanager
def running_rig(workdir: Path | None = None, *, app_credential_trusts: bool = True) -> Iterator[OpenStackRig]:
    """Install if needed, start Keystone + Heat, yield the rig, stop them. Raises RigError on failure.

    ``app_credential_trusts=False`` leaves Keystone's default: Heat then answers a stack create
    authenticated by an application credential with HTTP 403 (it cannot create the stack's trust).
    """
    venv = ensure_venv()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labxblock-openstack-")))
        rig = _Rig(venv, workdir, app_credential_trusts=app_credential_trusts)
        try:
            yield rig.start()
        finally:
            rig.stop()


@pytest.fixture(scope="session")
def openstack_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenStackRig]:
    """Real Keystone + Heat on loopback for this test session (see the module docstring)."""
    try:
        venv = ensure_venv()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        missing_service(f"Keystone/Heat virtualenv unavailable: {exc}")
    rig = _Rig(venv, tmp_path_factory.mktemp("openstack"))
    try:
        yield rig.start()
    finally:
        rig.stop()


# ---------------------------------------------------------------- command line


def _main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "install":
        t0 = time.monotonic()
        current = venv_is_current()
        ensure_venv()
        verb = "already current" if current else "installed"
        print(f"openstack venv {verb} at {VENV} in {time.monotonic() - t0:.1f}s")
        return 0
    if command == "freeze":
        freeze_constraints()
        print(f"wrote {CONSTRAINTS}")
        return 0
    if command == "serve":
        with running_rig() as rig:
            print(json.dumps(dataclasses.asdict(rig), default=str, indent=2), flush=True)
            print(f"memory (MiB): {rig.memory_mb()}  -- Ctrl-C to stop", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        return 0
    print(
        f"usage: python -m tests.services.openstack_rig install|serve|freeze, not {argv!r}", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
