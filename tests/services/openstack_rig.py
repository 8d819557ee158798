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
  ``heat_log``, ``keystone_pid``, ``heat_pid`` (at start), ``timings`` (seconds
  per start-up step), and ``rig.memory_mb()``;
- for fault tests: ``rig.kill_heat()`` SIGKILLs Heat (its API and engine are one
  process, so the engine dies mid-action) and ``rig.start_heat()`` starts it again
  on the same database and port.

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
import json
import secrets
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.services import missing_service
from tests.services.openstack_venv import (
    CONSTRAINTS,
    VENV,
    clean_env,
    ensure_venv,
    freeze_constraints,
    venv_is_current,
)
from tests.services.process import free_port, log_tail

HERE = Path(__file__).parent / "openstack"
TEMPLATES_DIR = HERE / "templates"
PLUGIN_DIR = HERE / "heat_plugins"

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
    control: Any = dataclasses.field(default=None, repr=False, compare=False)  # the _Rig that runs it

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
        heat = self.control.heat.pid if self.control is not None else self.heat_pid
        return {"keystone": _rss_mb(self.keystone_pid), "heat": _rss_mb(heat)}

    def kill_heat(self) -> None:
        """SIGKILL Heat: its engine dies with whatever it was doing (stacks stay IN_PROGRESS)."""
        self.control.kill_heat()

    def start_heat(self) -> None:
        """Start Heat again (same configuration, database and port); returns once it answers."""
        self.control.start_heat()


def template_text(name: str) -> str:
    """One of the sample templates in ``TEMPLATES_DIR``."""
    return (TEMPLATES_DIR / name).read_text()


# ---------------------------------------------------------------- processes


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
                env=clean_env(self.venv, **env),
            )

    def _run(self, args: list[str], log: Path) -> None:
        proc = self._popen(args, log)
        if proc.wait(timeout=120):
            raise RigError(f"{' '.join(args)} failed (rc={proc.returncode})\n{self.log_tails()}")

    def log_tails(self) -> str:
        return "\n".join(f"--- tail of {log} ---\n{log_tail(log)}" for log in self.logs)

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
        ks_port, heat_port = free_port(), free_port()
        keystone_url = f"http://127.0.0.1:{ks_port}"
        heat_url = f"http://127.0.0.1:{heat_port}"
        # Hex, not url-safe base64: keystone-manage reads a password that starts with "-" as an option.
        admin_password, heat_password, user_password = (secrets.token_hex(12) for _ in range(3))
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
        self.heat_args = [self._bin("python"), str(HERE / "heat_launcher.py"), str(heat_conf), str(heat_port)]
        self.heat_log, self.heat_url = heat_log, heat_url
        heat = self.heat = self._popen(self.heat_args, heat_log)
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
            env=clean_env(self.venv),
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
            control=self,
        )

    def kill_heat(self) -> None:
        self.heat.kill()
        self.heat.wait(timeout=STOP_TIMEOUT)

    def start_heat(self) -> None:
        self.procs.remove(self.heat)
        self.heat = self._popen(self.heat_args, self.heat_log)
        self.procs.append(self.heat)
        self._wait_http(f"{self.heat_url}/", self.heat, "Heat")

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
            shown = {f.name: getattr(rig, f.name) for f in dataclasses.fields(rig) if f.name != "control"}
            print(json.dumps(shown, default=str, indent=2), flush=True)
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
