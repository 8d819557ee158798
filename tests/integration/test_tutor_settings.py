"""The Tutor plugin's settings, rendered by the real ``tutor`` (no Docker): files, merge, config, secrets."""

from __future__ import annotations

import json
import py_compile
from pathlib import Path
from typing import Any

import pytest

from labxblock.conf import load_settings
from labxblock.legacy import names
from tests.tutor_site import PROVIDER_SECRET, PROVIDERS, SITE_SETTINGS, TutorSite, make_site

pytestmark = pytest.mark.slow  # each site is a few `tutor` runs

SETTINGS_FILES = [
    f"apps/openedx/settings/{service}/{kind}.py"
    for service in ("lms", "cms")
    for kind in ("production", "development")
]


def run_patch(site: TutorSite, **namespace: Any) -> dict[str, Any]:
    """Execute the rendered settings patch in a namespace shaped like edx-platform's settings module."""
    snippet = site.tutor("config", "patches", "show", "openedx-common-settings").stdout
    exec(compile(snippet, "openedx-common-settings", "exec"), namespace)
    return namespace


def test_settings_files_compile_and_hold_the_patch(tutor_site):
    snippet = tutor_site.tutor("config", "patches", "show", "openedx-common-settings").stdout.strip()
    config = tutor_site.config()
    assert 'XBLOCK_SETTINGS.setdefault("labxblock", {}).update({' in snippet
    for name in SETTINGS_FILES:
        py_compile.compile(str(tutor_site.root / "env" / name), doraise=True)
        text = tutor_site.text(name)
        assert snippet in text, name
        assert config["LABXBLOCK_SECRET_KEYS"][0] in text and config["LABXBLOCK_TICKET_KEYS"][0] in text
        assert repr(config["LABXBLOCK_INSTALL_ID"]) in text


def test_patch_merges_into_the_platforms_settings(tutor_site):
    xblock_settings = {
        "drag-and-drop-v2": {"marker": 1},
        "labxblock": {"reconcile_interval_seconds": 5, "install_id": "from-yaml"},
    }
    broker = {"fanout_patterns": True, "fanout_prefix": True, "visibility_timeout": 600}
    ns = run_patch(tutor_site, XBLOCK_SETTINGS=xblock_settings, BROKER_TRANSPORT_OPTIONS=broker)

    assert ns["XBLOCK_SETTINGS"] is xblock_settings and ns["BROKER_TRANSPORT_OPTIONS"] is broker
    assert xblock_settings["drag-and-drop-v2"] == {"marker": 1}
    lab = xblock_settings["labxblock"]
    assert lab["reconcile_interval_seconds"] == 5  # set earlier, not by the plugin: kept
    assert lab["install_id"] == tutor_site.config()["LABXBLOCK_INSTALL_ID"]  # the plugin's value wins
    assert lab["providers"] == PROVIDERS
    assert lab["gateway_url"] == "https://lms.example.org/lab-terminal/"
    assert lab["queues"] == {"calls": "labxblock", "ticks": "labxblock.ticks", "checks": "labxblock.checks",
                             "observe": "labxblock.observe"}
    # Only visibility_timeout changes, raised to kombu's default; the platform's keys stay.
    assert broker == {"fanout_patterns": True, "fanout_prefix": True, "visibility_timeout": 3600}
    assert not [name for name in ns if name.startswith("_labxblock")]
    # The old packages' XBlock names: labxblock's select chooses, the platform's choice for the rest.
    assert ns["XBLOCK_SELECT_FUNCTION"] is names.select


@pytest.mark.parametrize(
    ("existing", "expected"),
    [({"visibility_timeout": 7200}, {"visibility_timeout": 7200}), (None, {"visibility_timeout": 3600})],
)
def test_visibility_timeout_is_never_shortened(tutor_site, existing, expected):
    namespace: dict[str, Any] = {"XBLOCK_SETTINGS": {}}
    if existing is not None:
        namespace["BROKER_TRANSPORT_OPTIONS"] = existing
    assert run_patch(tutor_site, **namespace)["BROKER_TRANSPORT_OPTIONS"] == expected


def test_rendered_settings_pass_labxblocks_validation(tutor_site):
    namespace = run_patch(tutor_site, XBLOCK_SETTINGS={}, BROKER_TRANSPORT_OPTIONS={})
    settings = load_settings(namespace["XBLOCK_SETTINGS"]["labxblock"])
    config = tutor_site.config()
    assert settings.install_id == config["LABXBLOCK_INSTALL_ID"]
    assert settings.secret_keys == tuple(config["LABXBLOCK_SECRET_KEYS"])
    assert settings.ticket_keys == tuple(config["LABXBLOCK_TICKET_KEYS"])
    assert settings.terminal_mode == "gateway" and settings.providers["default"].type == "openstack"
    queues = settings.queues
    assert (queues.calls, queues.ticks, queues.checks, queues.observe) == (
        "labxblock", "labxblock.ticks", "labxblock.checks", "labxblock.observe"
    )


def test_second_config_save_keeps_the_generated_secrets(tutor_site):
    before = tutor_site.config()
    generated = ["LABXBLOCK_INSTALL_ID", "LABXBLOCK_SECRET_KEYS", "LABXBLOCK_TICKET_KEYS",
                 "LABXBLOCK_GUACAMOLE_JSON_SECRET_KEY"]  # fmt: skip
    assert all(before.get(key) for key in generated), "generated once and kept in config.yml"
    # Defaults stay out of config.yml, so a newer labxblock's defaults reach the site.
    assert "LABXBLOCK_SUSPEND_TIMEOUT" not in before
    tutor_site.tutor("config", "save")
    after = tutor_site.config()
    assert {k: after[k] for k in generated} == {k: before[k] for k in generated}
    assert before["LABXBLOCK_SECRET_KEYS"][0] in tutor_site.text(SETTINGS_FILES[0])


def test_secrets_appear_only_where_they_are_needed(tutor_site):
    files = tutor_site.env_files()
    config = tutor_site.config()

    def where(value: str) -> list[str]:
        return sorted(name for name, text in files.items() if value in text)

    settings = sorted(SETTINGS_FILES)
    assert where(PROVIDER_SECRET) == settings
    assert where(config["LABXBLOCK_SECRET_KEYS"][0]) == settings
    # The gateway needs the ticket keys: in the compose file's environment and the k8s Secret only.
    assert where(config["LABXBLOCK_TICKET_KEYS"][0]) == sorted(
        [*settings, "local/docker-compose.prod.yml", "plugins/labxblock/k8s/gateway.yml"]
    )
    assert where(config["LABXBLOCK_GUACAMOLE_JSON_SECRET_KEY"]) == []  # unused in gateway mode


def test_config_save_says_what_the_image_lacks(tmp_path: Path, tutor_site):
    assert "labxblock:" not in tutor_site.saved_output
    bare = make_site(tmp_path / "bare", "--set", "LMS_HOST=lms.example.org")
    assert "labxblock: OPENEDX_EXTRA_PIP_REQUIREMENTS does not name labxblock" in bare.saved_output
    result = bare.tutor("config", "save", "--append", "OPENEDX_EXTRA_PIP_REQUIREMENTS=labxblock==0.1.0")
    assert "names labxblock without its gateway extra" in result.stdout + result.stderr


def test_a_value_settings_cannot_hold_stops_config_save_naming_the_key(tmp_path: Path):
    site = make_site(tmp_path, *SITE_SETTINGS)
    # An unquoted date in YAML is a date, which no settings literal can hold.
    broken = json.dumps({"default": {**PROVIDERS["default"], "since": "D"}}).replace('"D"', "2024-01-01")
    result = site.tutor("config", "save", "--set", f"LABXBLOCK_PROVIDERS={broken}", check=False)
    assert result.returncode != 0
    message = "LABXBLOCK_PROVIDERS.default.since: a date cannot go into XBLOCK_SETTINGS"
    assert message in result.stdout + result.stderr
