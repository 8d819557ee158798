"""The wheel carries everything an operator's ``pip install`` needs, on every supported Python."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.services import missing_service

ROOT = Path(__file__).parents[2]
SUPPORTED = ("3.11", "3.12")

ENTRY_POINTS_SCRIPT = """
import json
from importlib.metadata import entry_points
groups = ("xblock.v1", "lms.djangoapp", "cms.djangoapp", "labxblock.providers")
print(json.dumps({g: sorted(f"{e.name}={e.value}" for e in entry_points(group=g)) for g in groups}))
"""


def find_python(version: str) -> str | None:
    """An interpreter for ``version``: on PATH, else under pyenv (whose shims hide non-global ones)."""
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:
        return found
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(str(pyenv_root / "versions" / f"{version}.*" / "bin" / f"python{version}")))
    return candidates[-1] if candidates else None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True,
    )
    (built,) = out.glob("labxblock-*.whl")
    return built


def test_wheel_contains_templates_static_migrations_and_locale(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "labxblock/templates/student_view.html" in names
    assert any(n.startswith("labxblock/static/css/") for n in names)
    assert "labxblock/migrations/0001_initial.py" in names
    assert any(n.startswith("labxblock/locale/") and n.endswith(".po") for n in names)
    # Nothing of the tests or the developer's tree leaks into an operator's install.
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", ".venv/"))]


@pytest.mark.slow
@pytest.mark.parametrize("version", SUPPORTED)
def test_pip_install_into_fresh_virtualenv(version: str, wheel: Path, tmp_path: Path) -> None:
    python = find_python(version)
    if python is None:
        missing_service(f"no Python {version} interpreter on this machine")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
        capture_output=True, text=True,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    shown = subprocess.run(
        [str(venv / "bin" / "python"), "-c", ENTRY_POINTS_SCRIPT],
        check=True, capture_output=True, text=True, cwd=tmp_path,  # not ROOT: import the installed copy
    )
    groups = json.loads(shown.stdout)
    assert groups["xblock.v1"] == ["labxblock=labxblock.block:LabBlock"]
    assert groups["lms.djangoapp"] == ["labxblock=labxblock.apps:LabXBlockConfig"]
    assert groups["cms.djangoapp"] == ["labxblock=labxblock.apps:LabXBlockConfig"]
    assert "openstack=labxblock.providers.openstack:OpenStackProvider" in groups["labxblock.providers"]
    # The block class and the provider import with nothing but the declared dependencies.
    subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import labxblock.block, labxblock.providers.openstack, xblock.utils.resources"],
        check=True, cwd=tmp_path,
    )


def test_no_deprecated_or_duplicate_dependencies() -> None:
    from importlib.metadata import requires

    declared = [r.split(";")[0].strip().lower() for r in requires("labxblock") or []]
    names = {r.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip() for r in declared}
    assert "xblock-utils" not in names  # deprecated: its code lives in XBlock as xblock.utils
    assert "web-fragments" not in names  # XBlock bundles it
    for required in ("xblock", "django", "celery", "python-heatclient", "keystoneauth1",
                     "python-novaclient", "paramiko", "cryptography", "pyyaml"):
        spec = next(r for r in declared if r.startswith(required))
        assert ">=" in spec and "<" in spec.replace("<=", ""), f"{required} needs a version range: {spec}"
