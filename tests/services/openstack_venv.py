"""The Keystone + Heat virtualenv of the test rig: built once from pinned constraints, then reused.

Apart from the project's own environment (the services pull in every python-*client);
kept in ``CACHE_DIR`` and rebuilt only when ``openstack/constraints.txt`` changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.services import CACHE_DIR
from tests.services.process import log_tail

CONSTRAINTS = Path(__file__).parent / "openstack" / "constraints.txt"
VENV = CACHE_DIR / "openstack-venv"
STAMP = VENV / ".labxblock-stamp"
PYTHON = os.environ.get("LABXBLOCK_OPENSTACK_PYTHON", "python3.11")
PACKAGES = ("keystone==30.0.0", "openstack-heat==27.0.1", "python-keystoneclient")


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
            env=clean_env(venv),
        )
    if rc:
        raise RuntimeError(f"pip {' '.join(args)} failed (rc={rc}):\n{log_tail(log, 40)}")


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


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
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
