"""README is the front door and must stay true: every setting is listed there."""

from __future__ import annotations

import re
from pathlib import Path

from labxblock.conf import QueueSettings, settings_help
from labxblock.providers.openstack_config import KNOWN_KEYS
from labxblock.tutor import render

README = (Path(__file__).parents[2] / "README.md").read_text()


def section(title: str) -> str:
    """The README's text under ``## title``, up to the next section."""
    start = README.index(f"\n## {title}\n")
    return README[start:README.index("\n## ", start + 1)]


def test_every_setting_is_documented_in_the_settings_section():
    settings, missing = section("Settings"), []
    for key, _default, _help in settings_help():
        name = key.rsplit(".", 1)[-1]
        if name not in ("name", "options") and f"`{name}`" not in settings:
            missing.append(key)
    assert not missing, f"README's Settings do not list: {missing}"


def test_the_settings_table_shows_the_default_queues_and_the_workers_consume_them():
    queues, processes = QueueSettings(), section("Processes to run")
    row = next(line for line in section("Settings").splitlines() if line.startswith("| `queues` |"))
    for kind in ("calls", "ticks", "checks", "observe"):
        name = getattr(queues, kind)
        assert f"`{kind}`: `{name}`" in row
        assert f"worker -Q {name} " in processes  # one worker command per queue, for sites without Tutor


def test_every_openstack_provider_key_is_documented_in_the_readme():
    assert not [key for key in KNOWN_KEYS if f"`{key}`" not in README]


def test_readme_gives_the_test_command_that_ci_runs():
    ci = (Path(__file__).parents[2] / ".ci" / "run").read_text()
    assert "```sh\nmake test\n```" in README and "make test" in ci


def test_the_tutor_config_table_lists_every_key_with_its_default():
    rows = dict(re.findall(r"^\| `(LABXBLOCK_[A-Z_]+)` \| ([^|]+) \|", README, re.MULTILINE))
    expected = {f"LABXBLOCK_{key}": f"`{value}`" for key, value in render.DEFAULTS.items()}
    expected = {key: '`""`' if value == "``" else value for key, value in expected.items()}
    expected.update({f"LABXBLOCK_{key}": "generated" for key in render.unique_values()})
    assert {key: cell.strip() for key, cell in rows.items()} == expected


def test_the_commands_for_sites_without_tutor_are_the_plugins():
    def command(role: str) -> str:
        if role == "beat":
            return " ".join(render.celery_args(role))
        queue, concurrency = (render.DEFAULTS[f"{role.upper()}_{key}"] for key in ("QUEUE", "CONCURRENCY"))
        return " ".join(render.celery_args(role, queue, concurrency))

    commands = [command(role) for role in (*render.ROLES, "beat")]
    section = README[README.index("### Sites without Tutor"):README.index("## Settings")]
    assert [line for line in section.splitlines() if line.startswith("celery ")] == commands
