"""labxblock in a settings chain shaped like edx-platform's, run as the platform runs it.

Real ``django-admin`` and ``celery beat`` processes on ``tests.edx_site``: edx-django-utils'
own ``get_plugin_apps``/``add_plugins``, a YAML file read by ``production``, and an
operator's patch after it (Tutor's order). What an operator sets anywhere in that chain
is what the ticks and the validated settings use; a site with no labxblock settings,
or wrong ones, still runs every platform command.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services.process import ServiceProcess, log_tail
from tests.settings import XBLOCK_SETTINGS as TEST_XBLOCK_SETTINGS

ROOT = Path(__file__).parents[2]
DJANGO_ADMIN = Path(sys.executable).with_name("django-admin")
TICKS_QUEUE = "edx-site.ticks"


def site(tmp_path: Path, yaml_tokens: dict[str, Any], settings: str = "tests.edx_site.tutor"
         ) -> dict[str, str]:
    """The environment of a process on the edx-like site whose YAML holds ``yaml_tokens``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "lms.yml").write_text(yaml.safe_dump(yaml_tokens))
    return {
        "DJANGO_SETTINGS_MODULE": settings,
        "LMS_CFG": str(tmp_path / "lms.yml"),
        "EDX_SITE_DB": str(tmp_path / "lms.sqlite3"),
        "EDX_SITE_STATIC_ROOT": str(tmp_path / "static"),
        "PYTHONPATH": str(ROOT),
    }


def configured_yaml() -> dict[str, Any]:
    labxblock = copy.deepcopy(TEST_XBLOCK_SETTINGS["labxblock"])
    labxblock.update(install_id="yamlsite", reconcile_interval_seconds=2, suspend_idle_interval_seconds=7,
                     queues={"ticks": TICKS_QUEUE})
    return {"XBLOCK_SETTINGS": {"labxblock": labxblock},
            "CELERY_BROKER_TRANSPORT_OPTIONS": {"visibility_timeout": 3600}}


def run(env: dict[str, str], *argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``django-admin`` as an operator runs it, in the site's environment only."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LABXBLOCK_"))}
    return subprocess.run([str(DJANGO_ADMIN), *argv], env={**inherited, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_validated_settings_hold_the_yaml_and_the_operators_patch(tmp_path):
    env = site(tmp_path / "site", configured_yaml())
    code = ("import json; from labxblock.conf import get_settings; s = get_settings(); "
            "print(json.dumps([s.install_id, s.reconcile_interval_seconds, s.suspend_idle_interval_seconds, "
            "s.queues.ticks]))")
    answer = run(env, "shell", "-c", code)
    assert answer.returncode == 0, answer.stderr
    values = json.loads(answer.stdout.strip().splitlines()[-1])
    assert values == ["yamlsite", 5, 7, TICKS_QUEUE]  # the patch's 5 over the YAML's 2; the YAML's 7


@pytest.mark.redis
def test_beat_started_on_the_site_ticks_at_the_operators_interval(tmp_path, redis_server):
    env = {**site(tmp_path / "site", configured_yaml()), "EDX_SITE_BROKER_URL": redis_server.url}
    argv = [sys.executable, "-m", "celery", "-A", "tests.celery_app", "beat", "--loglevel", "INFO",
            "--schedule", str(tmp_path / "beat-schedule"), "--max-interval", "1"]
    log = tmp_path / "beat.log"
    beat = ServiceProcess("celery beat (edx site)", argv, log, env=env, cwd=ROOT)
    beat.start(lambda: log.exists() and "beat: Starting" in log.read_text(errors="replace"), timeout=60)
    try:
        def reconciles() -> int:
            queued = redis_server.queued(TICKS_QUEUE)
            return sum(message["headers"]["task"] == "labxblock.tasks.reconcile" for message in queued)

        deadline = time.monotonic() + 20
        while reconciles() == 0:  # the first comes one interval after beat starts
            assert time.monotonic() < deadline, log_tail(log)
            time.sleep(0.1)
        first, started = reconciles(), time.monotonic()
        time.sleep(15)
        sent = reconciles() - first
        elapsed = time.monotonic() - started
        # Every 5 s: 3 in 15 s (the YAML's 2 s would give 7, the default 1 s 15).
        assert 2 <= sent <= 4, f"{sent} reconcile ticks in {elapsed:.1f} s\n{log_tail(log)}"
        assert "labxblock: beat runs reconcile every 5 s" in log.read_text()
    finally:
        beat.stop()
        with redis_server.client() as client:
            client.delete(TICKS_QUEUE)


BROKEN = {
    "absent": ({}, 'XBLOCK_SETTINGS["labxblock"]: expected a mapping with at least install_id'),
    "wrong": ({"XBLOCK_SETTINGS": {"labxblock": {"install_id": "Not A Slug"}}},
              "labxblock.install_id: expected a slug of 1-20 characters"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_platform_commands_succeed_without_labxblock_settings_and_warn_naming_the_key(tmp_path, case):
    tokens, message = BROKEN[case]
    env = site(tmp_path, tokens, settings="tests.edx_site.production")
    project = tmp_path / "project"  # what the translation commands scan and write
    (project / "locale").mkdir(parents=True)
    (project / "views.py").write_text('from django.utils.translation import gettext as _\n_("Hello")\n')

    check = run(env, "check")
    assert check.returncode == 0, check.stderr
    assert f"(labxblock.W001) {message}" in check.stderr and "WARNINGS" in check.stderr
    for argv, cwd in [
        (("migrate", "--noinput"), ROOT),
        (("collectstatic", "--noinput"), ROOT),
        (("makemessages", "--locale", "fr"), project),
        (("compilemessages", "--locale", "fr"), project),
    ]:
        done = run(env, *argv, cwd=cwd)
        assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    assert (project / "locale/fr/LC_MESSAGES/django.mo").exists()
    assert (tmp_path / "static").is_dir()
