"""README is the front door and must stay true: every setting is listed there."""

from __future__ import annotations

from pathlib import Path

from labxblock.conf import settings_help
from labxblock.providers.openstack_config import KNOWN_KEYS

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme():
    missing = []
    for key, _default, _help in settings_help():
        name = key.rsplit(".", 1)[-1]
        if name not in ("name", "options") and f"`{name}`" not in README:
            missing.append(key)
    assert not missing, f"README does not list: {missing}"


def test_every_openstack_provider_key_is_documented_in_the_readme():
    assert not [key for key in KNOWN_KEYS if f"`{key}`" not in README]


def test_readme_gives_the_test_command_that_ci_runs():
    ci = (Path(__file__).parents[2] / ".ci" / "run").read_text()
    assert "```sh\nmake test\n```" in README and "make test" in ci
