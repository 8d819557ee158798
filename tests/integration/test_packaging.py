"""The wheel carries everything an operator's ``pip install`` needs, on every supported Python."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import missing_service

ROOT = Path(__file__).parents[2]
SUPPORTED = ("3.11", "3.12")

ENTRY_POINTS_SCRIPT = """
import json
from importlib.metadata import entry_points
groups = ("xblock.v1", "lms.djangoapp", "cms.djangoapp", "labxblock.providers", "tutor.plugin.v1")
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


@dataclass
class Build:
    wheel: Path
    log: str  # what `python -m build` printed


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (built,) = out.glob("labxblock-*.whl")
    return Build(built, result.stdout + result.stderr)


def test_wheel_contains_templates_static_migrations_and_locale(build: Build) -> None:
    names = zipfile.ZipFile(build.wheel).namelist()
    assert "labxblock/templates/student_view.html" in names
    assert "labxblock/templates/gateway/guac.html" in names
    assert any(n.startswith("labxblock/static/css/") for n in names)
    assert any(n.startswith("labxblock/static/vendor/") for n in names)
    assert "labxblock/migrations/0001_initial.py" in names
    assert any(n.startswith("labxblock/locale/") and n.endswith(".po") for n in names)
    # The Tutor plugin's patches and templates are data files, not modules.
    assert "labxblock/tutor/patches/openedx-common-settings" in names
    assert "labxblock/tutor/templates/labxblock/k8s/gateway.yml" in names
    # Nothing of the tests or the developer's tree leaks into an operator's install.
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", ".venv/")) or "__pycache__" in n]


def test_build_says_nothing_about_data_directories(build: Build) -> None:
    # setuptools warns once per data directory it finds importable but not listed as a package.
    assert "is absent from the `packages` configuration" not in build.log


@dataclass
class FreshInstall:
    venv: Path
    cwd: Path  # not ROOT: import the installed copy

    def run(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), capture_output=True, text=True, cwd=self.cwd, env=env, check=False)


@pytest.fixture(scope="module", params=SUPPORTED)
def fresh_install(request: pytest.FixtureRequest, build: Build, tmp_path_factory) -> FreshInstall:
    """``pip install <wheel>`` (no extras) into a new virtualenv of each supported Python."""
    python = find_python(request.param)
    if python is None:
        missing_service(f"no Python {request.param} interpreter on this machine")
    root = tmp_path_factory.mktemp(f"py{request.param}")
    venv = root / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(build.wheel)],
        capture_output=True, text=True,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    return FreshInstall(venv, root)


@pytest.mark.slow
def test_pip_install_into_fresh_virtualenv(fresh_install: FreshInstall) -> None:
    python = str(fresh_install.venv / "bin" / "python")
    shown = fresh_install.run(python, "-c", ENTRY_POINTS_SCRIPT)
    assert shown.returncode == 0, shown.stderr
    groups = json.loads(shown.stdout)
    assert groups["xblock.v1"] == ["hastexo=labxblock.legacy.block:HastexoLabBlock",
                                   "labxblock=labxblock.block:LabBlock",
                                   "stackamole=labxblock.legacy.block:StackamoleLabBlock"]
    assert groups["lms.djangoapp"] == ["labxblock=labxblock.apps:LabXBlockConfig"]
    assert groups["cms.djangoapp"] == ["labxblock=labxblock.apps:LabXBlockConfig"]
    assert groups["tutor.plugin.v1"] == ["labxblock=labxblock.tutor.plugin"]
    assert "openstack=labxblock.providers.openstack:OpenStackProvider" in groups["labxblock.providers"]
    # The block class and the provider import with nothing but the declared dependencies.
    imported = fresh_install.run(
        python, "-c",
        "import labxblock.block, labxblock.legacy.block, labxblock.providers.openstack, "
        "xblock.utils.resources",
    )
    assert imported.returncode == 0, imported.stderr


@pytest.mark.slow
def test_gateway_without_its_extra_says_which_extra_to_install(fresh_install: FreshInstall) -> None:
    gateway = str(fresh_install.venv / "bin" / "labxblock-gateway")
    result = fresh_install.run(gateway, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert 'pip install "labxblock[gateway]"' in result.stderr
    assert "Traceback" not in result.stderr
    assert fresh_install.run(gateway, "--help").returncode == 0


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
