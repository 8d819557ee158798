"""A Tutor site in a temporary root, made with the real ``tutor`` command (no Docker needed).

``make_site`` does what an operator does: ``tutor config save``, ``tutor plugins
enable labxblock``, then ``tutor config save --set …``. The helpers read back what
Tutor rendered under ``env/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

TUTOR = Path(sys.executable).parent / "tutor"

# Values an operator would set; the provider's secret is a marker to look for in the rendered files.
PROVIDER_SECRET = "app-cred-secret-5f0e2a9c"
PROVIDERS = {
    "default": {
        "type": "openstack",
        "auth_url": "https://keystone.example.org/v3",
        "application_credential_id": "0c1e2f",
        "application_credential_secret": PROVIDER_SECRET,
        "region_name": "RegionOne",
    }
}
REQUIREMENT = "labxblock[gateway] @ git+https://git.example.org/labxblock.git@v0.1.0"
SITE_SETTINGS = (
    "--set", "LMS_HOST=lms.example.org",
    "--set", "ENABLE_HTTPS=true",
    "--set", f"LABXBLOCK_PROVIDERS={json.dumps(PROVIDERS)}",
    "--append", f"OPENEDX_EXTRA_PIP_REQUIREMENTS={REQUIREMENT}",
)  # fmt: skip


@dataclass
class TutorSite:
    root: Path
    saved_output: str = ""  # what the last `tutor config save` of make_site printed

    def env(self) -> dict[str, str]:
        # The developer's own TUTOR_* variables would override the config under test.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUTOR_")}
        env.update(TUTOR_ROOT=str(self.root), TUTOR_PLUGINS_ROOT=str(self.root / "plugins-root"))
        return env

    def tutor(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(TUTOR), *args], env=self.env(), capture_output=True, text=True, timeout=180, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tutor {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def pull_tags(self, image: str) -> list[str]:
        """What ``tutor images pull <image>`` would pull (Tutor's own code, short of Docker)."""
        script = (
            "import sys\n"
            "from tutor import config, hooks\n"
            "from tutor.commands.images import find_remote_image_tags\n"
            "hooks.Actions.CORE_READY.do()\n"
            "hooks.Actions.PROJECT_ROOT_READY.do(sys.argv[1])\n"
            "site = config.load(sys.argv[1])\n"
            "print(*find_remote_image_tags(site, hooks.Filters.IMAGES_PULL, sys.argv[2]), sep='\\n')\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, str(self.root), image],
            env=self.env(), capture_output=True, text=True, check=True,
        )
        return result.stdout.split()

    def config(self) -> dict[str, Any]:
        return yaml.safe_load((self.root / "config.yml").read_text())

    def text(self, relative: str) -> str:
        return (self.root / "env" / relative).read_text()

    def env_files(self) -> dict[str, str]:
        """Every rendered text file, by path relative to env/."""
        files = {}
        for path in (self.root / "env").rglob("*"):
            if path.is_file():
                try:
                    files[str(path.relative_to(self.root / "env"))] = path.read_text()
                except UnicodeDecodeError:
                    continue
        return files

    def compose_services(self) -> dict[str, dict[str, Any]]:
        """The services `tutor local` runs: docker-compose.yml merged with docker-compose.prod.yml."""
        services: dict[str, dict[str, Any]] = {}
        for name in ("local/docker-compose.yml", "local/docker-compose.prod.yml"):
            for service, spec in yaml.safe_load(self.text(name))["services"].items():
                services.setdefault(service, {}).update(spec)
        return services

    def k8s_objects(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every object `tutor k8s` applies from the files kustomization.yml lists, by (kind, name)."""
        resources = yaml.safe_load(self.text("kustomization.yml"))["resources"]
        objects = {}
        for resource in resources:
            for doc in yaml.safe_load_all(self.text(resource)):
                if doc:
                    objects[(doc["kind"], doc["metadata"]["name"])] = doc
        return objects


def make_site(root: Path, *settings: str) -> TutorSite:
    """A fresh site with the plugin enabled and ``settings`` saved (``--set``/``--append`` arguments)."""
    site = TutorSite(root)
    site.tutor("config", "save")
    site.tutor("plugins", "enable", "labxblock")
    result = site.tutor("config", "save", *settings)
    site.saved_output = result.stdout + result.stderr
    return site


@pytest.fixture(scope="session")
def tutor_site(tmp_path_factory: pytest.TempPathFactory) -> TutorSite:
    """One site with the operator's usual values (HTTPS, a provider, the pip requirement); read-only."""
    return make_site(tmp_path_factory.mktemp("tutor-site"), *SITE_SETTINGS)
