"""labxblock.conf: one test per rule of XBLOCK_SETTINGS["labxblock"]."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core import checks
from django.test import override_settings

from labxblock import conf
from labxblock.conf import LabSettings, LabSettingsError, load_settings
from labxblock.providers.base import Provider

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


class FakeProvider(Provider):
    """Accepts any config except one without ``region``; abstract methods unused."""

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = []
        if "region" not in config:
            problems.append(("region", "a region name"))
        if config.get("password") == "":
            problems.append(("password", "a non-empty string"))
        return problems

    create = get = list = suspend = resume = delete = None  # type: ignore[assignment]


FakeProvider.__abstractmethods__ = frozenset()


def fake_registry(type_name: str) -> type[Provider]:
    if type_name == "fake":
        return FakeProvider
    raise KeyError(f"no provider type {type_name!r}; installed: fake")


def valid() -> dict[str, Any]:
    return {
        "install_id": "site-1",
        "providers": {"default": {"type": "fake", "region": "r1", "password": "hunter2-cloud"}},
        "secret_keys": [KEY_A],
        "ticket_keys": [KEY_B],
        "gateway_url": "wss://gw.example.org/",
    }


def load(raw: dict[str, Any]) -> LabSettings:
    return load_settings(raw, load_class=fake_registry)


def error(raw: dict[str, Any]) -> str:
    with pytest.raises(LabSettingsError) as info:
        load(raw)
    return str(info.value)


def with_(**changes: Any) -> dict[str, Any]:
    raw = valid()
    raw.update(changes)
    return raw


def test_defaults_applied():
    s = load(valid())
    assert s.install_id == "site-1"
    assert s.terminal_mode == "gateway"
    assert s.suspend_timeout == 120
    assert s.delete_timeout == 14 * 86400
    assert s.reconcile_interval_seconds == 1
    assert s.deadline_seconds("creating") == conf.DEFAULT_STATE_DEADLINES["creating"]
    assert s.deadline_seconds("ready") is None
    p = s.providers["default"]
    assert (p.name, p.type, p.capacity, p.actions_per_minute) == ("default", "fake", None, 120)
    assert dict(p.options) == {"region": "r1", "password": "hunter2-cloud"}


def test_frozen():
    s = load(valid())
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.suspend_timeout = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.providers["default"].options["region"] = "r2"  # type: ignore[index]
    with pytest.raises(TypeError):
        s.providers["other"] = s.providers["default"]  # type: ignore[index]


def test_repr_hides_secrets():
    text = repr(load(valid()))
    assert KEY_A not in text and KEY_B not in text and "hunter2-cloud" not in text


def test_missing_default_provider():
    raw = with_(providers={"os1": valid()["providers"]["default"]})
    assert error(raw) == "labxblock.providers.default: expected a provider named 'default', but it is missing"


def test_missing_provider_type():
    raw = with_(providers={"default": {"region": "r1"}})
    assert error(raw).startswith("labxblock.providers.default.type: expected a provider type name")


def test_unknown_provider_type_with_real_registry():
    raw = with_(providers={"default": {"type": "no-such-cloud-xyz"}})
    with pytest.raises(LabSettingsError) as info:
        load_settings(raw)
    assert str(info.value).startswith("labxblock.providers.default.type: expected an installed provider type")
    assert "no-such-cloud-xyz" in str(info.value)


@pytest.mark.parametrize("capacity", ["ten", -1, 2.5, True])
def test_bad_capacity(capacity):
    raw = valid()
    raw["providers"]["os1"] = {"type": "fake", "region": "r", "capacity": capacity}
    assert error(raw) == (
        f"labxblock.providers.os1.capacity: expected an integer ≥ 0 or null, got {capacity!r}"
    )


def test_capacity_zero_and_null_are_allowed():
    raw = valid()
    raw["providers"]["drained"] = {"type": "fake", "region": "r", "capacity": 0, "actions_per_minute": 6}
    s = load(raw)
    assert s.providers["drained"].capacity == 0
    assert s.providers["drained"].actions_per_minute == 6
    assert s.providers["default"].capacity is None


def test_bad_actions_per_minute():
    raw = valid()
    raw["providers"]["default"]["actions_per_minute"] = 0
    assert error(raw) == "labxblock.providers.default.actions_per_minute: expected an integer ≥ 1, got 0"


def test_provider_check_config_problems_named_with_full_key_without_values():
    raw = valid()
    raw["providers"]["default"] = {"type": "fake", "password": ""}
    message = error(raw)
    assert "labxblock.providers.default.region: expected a region name" in message
    assert "labxblock.providers.default.password: expected a non-empty string" in message


def test_provider_options_are_not_echoed_in_errors():
    raw = valid()
    raw["providers"]["default"] = {"type": "fake", "password": "s3cret-cloud-pw"}
    assert "s3cret-cloud-pw" not in error(raw)


@pytest.mark.parametrize("value", [0, -5, "10s", 1.5, None])
def test_bad_timeout(value):
    assert error(with_(suspend_timeout=value)) == (
        f"labxblock.suspend_timeout: expected an integer ≥ 1, got {value!r}"
    )


def test_timeouts_and_intervals_can_be_set():
    s = load(
        with_(launch_timeout=600, delete_timeout=86400, reap_interval_seconds=60, orphan_grace_seconds=10)
    )
    assert (s.launch_timeout, s.delete_timeout, s.reap_interval_seconds, s.orphan_grace_seconds) == (
        600, 86400, 60, 10,
    )  # fmt: skip


def test_the_sites_time_budget_is_none_unless_set_and_then_whole_seconds():
    assert load(valid()).time_budget_seconds is None
    assert load(with_(time_budget_seconds=72000)).time_budget_seconds == 72000
    assert load(with_(time_budget_seconds=None)).time_budget_seconds is None
    for bad in (0, -1, "20h", 1.5, True):
        assert error(with_(time_budget_seconds=bad)) == (
            f"labxblock.time_budget_seconds: expected an integer ≥ 1 or null, got {bad!r}"
        )


def test_state_deadlines_merge_with_defaults():
    s = load(with_(state_deadline_seconds={"creating": 60}))
    assert s.deadline_seconds("creating") == 60
    assert s.deadline_seconds("deleting") == conf.DEFAULT_STATE_DEADLINES["deleting"]


def test_state_deadline_for_resting_state_is_an_error():
    message = error(with_(state_deadline_seconds={"ready": 60}))
    assert message.startswith("labxblock.state_deadline_seconds.ready: unknown state")


def test_bad_state_deadline():
    assert error(with_(state_deadline_seconds={"resuming": "soon"})) == (
        "labxblock.state_deadline_seconds.resuming: expected an integer ≥ 1, got 'soon'"
    )


def test_ticket_ttl_is_capped_at_a_minute():
    assert error(with_(ticket_ttl_seconds=600)).startswith(
        "labxblock.ticket_ttl_seconds: expected at most 60"
    )


def test_bad_terminal_mode():
    assert error(with_(terminal_mode="vnc")) == (
        "labxblock.terminal_mode: expected one of gateway, guacamole-json, console, got 'vnc'"
    )


@pytest.mark.parametrize("mode", ["gateway", "console"])
def test_missing_gateway_url(mode):
    raw = with_(terminal_mode=mode)
    del raw["gateway_url"]
    assert error(raw).startswith("labxblock.gateway_url: expected an http(s) or ws(s) URL")
    assert "missing" in error(raw)


@pytest.mark.parametrize("url", ["gw.example.org", "ftp://gw.example.org/", "wss://", 42])
def test_bad_gateway_url(url):
    assert error(with_(gateway_url=url)).startswith("labxblock.gateway_url: expected an http(s) or ws(s) URL")


def test_guacamole_json_mode_needs_url_and_key():
    raw = with_(terminal_mode="guacamole-json")
    del raw["gateway_url"]
    assert error(raw).startswith("labxblock.guacamole_url: expected an http(s) URL")
    raw["guacamole_url"] = "https://guac.example.org/guacamole/"
    assert error(raw).startswith("labxblock.guacamole_json_secret_key: expected 32 hex digits")
    raw["guacamole_json_secret_key"] = "4C0B569E4C96DF157EEE1B65DD0E4D41"
    s = load(raw)
    assert s.guacamole_json_secret_key == "4c0b569e4c96df157eee1b65dd0e4d41"
    assert s.gateway_url is None


def test_bad_guacamole_secret_is_not_echoed():
    raw = with_(terminal_mode="guacamole-json", guacamole_url="https://g.example.org/")
    raw["guacamole_json_secret_key"] = "not-hex-but-a-secret-value-xyz!!"
    message = error(raw)
    assert (
        message == "labxblock.guacamole_json_secret_key: expected 32 hex digits (required for guacamole-json)"
    )


def test_bad_fernet_key_is_not_echoed():
    bad = "this-is-my-secret-but-not-fernet"
    message = error(with_(secret_keys=[KEY_A, bad]))
    assert message == "labxblock.secret_keys[1]: is not a valid Fernet key (32 url-safe base64 bytes)"
    assert bad not in message


@pytest.mark.parametrize("name", ["secret_keys", "ticket_keys"])
@pytest.mark.parametrize("value", [[], KEY_A, None])
def test_empty_or_non_list_keys(name, value):
    assert error(with_(**{name: value})) == f"labxblock.{name}: expected a non-empty list of Fernet keys"


def test_missing_secret_keys():
    raw = valid()
    del raw["secret_keys"]
    assert error(raw) == "labxblock.secret_keys: expected a non-empty list of Fernet keys, but it is missing"


def test_key_rotation_list_keeps_order():
    assert load(with_(secret_keys=[KEY_B, KEY_A])).secret_keys == (KEY_B, KEY_A)


@pytest.mark.parametrize("install_id", ["", "Site", "my_site", "a" * 21, 7, "site.1"])
def test_bad_install_id(install_id):
    assert error(with_(install_id=install_id)).startswith(
        "labxblock.install_id: expected a slug of 1-20 characters a-z, 0-9 and -"
    )


def test_missing_install_id():
    raw = valid()
    del raw["install_id"]
    assert error(raw).endswith("but it is missing")


def test_unknown_key():
    assert error(with_(suspend_timout=60)) == "labxblock.suspend_timout: unknown setting"


def test_unknown_keys_are_all_named():
    message = error(with_(b_typo=1, a_typo=2))
    assert message == "labxblock.a_typo: unknown setting (also unknown: b_typo)"


def test_settings_help_covers_every_field():
    rows = {key: (default, text) for key, default, text in conf.settings_help()}
    for f in dataclasses.fields(LabSettings):
        assert rows[f"labxblock.{f.name}"][1], f.name
    assert rows["labxblock.install_id"][0] == "required"
    assert rows["labxblock.suspend_timeout"][0] == "120"


def test_get_settings_reads_django_settings_once_and_follows_override(settings):
    conf.reset_settings_cache()
    first = conf.get_settings()
    assert conf.get_settings() is first
    xblock_settings = copy.deepcopy(settings.XBLOCK_SETTINGS)
    xblock_settings["labxblock"]["install_id"] = "other"
    with override_settings(XBLOCK_SETTINGS=xblock_settings):
        assert conf.get_settings().install_id == "other"
    assert conf.get_settings().install_id == first.install_id


@pytest.mark.parametrize(("xblock_settings", "key", "expected"), [
    ({"labxblock": {"install_id": "BAD"}}, "labxblock.install_id", "a slug of 1-20 characters"),
    ({}, 'XBLOCK_SETTINGS["labxblock"]', "a mapping with at least install_id"),
    ({"labxblock": "on"}, "labxblock", "a mapping"),
    (["labxblock"], "XBLOCK_SETTINGS", "a mapping"),
])
def test_system_check_warns_naming_the_key_and_what_is_expected(xblock_settings, key, expected):
    with override_settings(XBLOCK_SETTINGS=xblock_settings):
        messages = conf.settings_check()
    # A warning, never an error: migrate, collectstatic and the image build's commands still run.
    assert [(m.id, m.level) for m in messages] == [("labxblock.W001", checks.WARNING)]
    assert messages[0].msg.startswith(f"{key}: expected {expected}")
    assert conf.settings_check() == []


def test_an_operation_needing_settings_fails_with_the_checks_message_logged(caplog):
    with override_settings(XBLOCK_SETTINGS={}):
        (warning,) = conf.settings_check()
        with pytest.raises(LabSettingsError) as info:
            conf.require_settings("the reconcile tick")
    assert str(info.value) == warning.msg
    (record,) = [r for r in caplog.records if r.name == "labxblock.conf"]
    assert record.levelname == "ERROR"
    assert "the reconcile tick" in record.getMessage() and warning.msg in record.getMessage()


def test_an_unconfigured_site_logs_each_problem_once_and_notices_the_fix(caplog, monkeypatch):
    """Keepalives and status polls do not flood the log, nor parse the settings each time."""
    from django.conf import settings

    now = [1000.0]
    monkeypatch.setattr(conf, "_clock", lambda: now[0])
    good = copy.deepcopy(settings.XBLOCK_SETTINGS["labxblock"])
    with override_settings(XBLOCK_SETTINGS={}):
        for operation in ("the keepalive handler", "the status handler", "the keepalive handler"):
            with pytest.raises(LabSettingsError, match="but it is missing"):
                conf.require_settings(operation)
        settings.XBLOCK_SETTINGS["labxblock"] = {"install_id": "BAD"}  # edited in place: no signal
        now[0] += conf.FAILURE_MEMORY_SECONDS - 1
        with pytest.raises(LabSettingsError, match="but it is missing"):  # the failure, remembered
            conf.require_settings("the terminal handler")
        now[0] += 2
        with pytest.raises(LabSettingsError, match=r"labxblock\.install_id"):  # read again: a new problem
            conf.require_settings("the terminal handler")
        settings.XBLOCK_SETTINGS["labxblock"] = good
        now[0] += conf.FAILURE_MEMORY_SECONDS
        assert conf.require_settings("the status handler").install_id == good["install_id"]
    errors = [r.getMessage() for r in caplog.records if r.name == "labxblock.conf"]
    assert len(errors) == 2, errors
    assert "the keepalive handler refused" in errors[0] and "but it is missing" in errors[0]
    assert "the terminal handler refused" in errors[1] and "labxblock.install_id" in errors[1]


def test_queues_default_and_merge_key_by_key():
    assert load(valid()).queues == conf.QueueSettings("labxblock", "labxblock.ticks", "labxblock.checks",
                                                      "labxblock.observe")
    s = load(with_(queues={"checks": "lab-checks"}))
    assert (s.queues.calls, s.queues.ticks, s.queues.checks) == ("labxblock", "labxblock.ticks", "lab-checks")


@pytest.mark.parametrize(("queues", "message"), [
    ("labxblock", "labxblock.queues: expected a mapping, got 'labxblock'"),
    ({"calls": ""}, "labxblock.queues.calls: expected a non-empty queue name, got ''"),
    ({"ticks": 5}, "labxblock.queues.ticks: expected a non-empty queue name, got 5"),
    ({"checks": "  "}, "labxblock.queues.checks: expected a non-empty queue name, got '  '"),
    ({"cals": "x"}, "labxblock.queues.cals: unknown queue; expected one of calls, checks, observe, ticks"),
])
def test_bad_queues_name_the_full_key(queues, message):
    assert error(with_(queues=queues)) == message


def test_test_settings_are_valid_with_the_openstack_provider(settings):
    pytest.importorskip("labxblock.providers.openstack")
    s = load_settings(settings.XBLOCK_SETTINGS["labxblock"])
    assert s.providers["default"].type == "openstack"


def test_policy_for_the_lifecycle_follows_settings():
    s = load(with_(state_deadline_seconds={"creating": 60}, max_attempts=3, retry_backoff_seconds=2))
    policy = s.policy
    assert policy.deadline_seconds["creating"] == 60
    assert (policy.max_attempts, policy.retry_backoff_seconds) == (3, 2)
    assert policy.retry_backoff_max_seconds == s.retry_backoff_max_seconds


def test_default_deadlines_are_the_lifecycles():
    from labxblock.lifecycle import DEFAULT_DEADLINES

    assert dict(load(valid()).state_deadline_seconds) == {str(k): v for k, v in DEFAULT_DEADLINES.items()}


def provider_with(**changes: Any) -> dict[str, Any]:
    return with_(providers={"default": {**valid()["providers"]["default"], **changes}})


def test_allowed_networks_default_to_everywhere_and_are_parsed():
    from labxblock.addresses import EVERYWHERE

    assert load(valid()).providers["default"].allowed_networks == EVERYWHERE
    allowed = load(provider_with(allowed_networks=["10.20.0.0/16", "127.0.0.1"])).providers["default"]
    assert [str(n) for n in allowed.allowed_networks] == ["10.20.0.0/16", "127.0.0.1/32"]
    assert "allowed_networks" not in allowed.options  # conf's key, not the provider's


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["10.0.0.0/8", "10.0.0.0/33"],
         "labxblock.providers.default.allowed_networks[1]: '10.0.0.0/33' is not"),
        (["ten"], "labxblock.providers.default.allowed_networks[0]: 'ten' is not a network"),
        ("10.0.0.0/8", "labxblock.providers.default.allowed_networks: expected a non-empty list of networks"),
        ([], "labxblock.providers.default.allowed_networks: expected a non-empty list of networks"),
    ],
)
def test_a_bad_allowed_network_is_named_by_its_position(value, message):
    assert error(provider_with(allowed_networks=value)).startswith(message)


def test_secret_outputs_default_and_rules():
    s = load(valid())
    secret = ["private_key", "password", "check_private_key", "admin_password", "db_secret", "api_key"]
    assert all(s.is_secret_output(name) for name in secret)
    assert not any(s.is_secret_output(name) for name in ("public_ip", "port", "host_key", "user", "url"))
    narrowed = load(with_(secret_outputs=["*_token"]))
    assert narrowed.is_secret_output("api_token") and not narrowed.is_secret_output("admin_password")
    assert narrowed.is_secret_output("private_key") and narrowed.is_secret_output("password")  # always


@pytest.mark.parametrize("listed", [["*_token"], [], ["check_*"], ["*"]])
def test_the_check_accounts_key_is_always_secret_and_its_user_never(listed):
    """An operator's secret_outputs can neither leave the check key in plain JSON nor hide check_user,
    which the checks read as plain text to log in."""
    s = load(with_(secret_outputs=listed))
    assert s.is_secret_output("check_private_key")
    assert not s.is_secret_output("check_user")


def test_check_user_cannot_be_listed_as_secret():
    message = "labxblock.secret_outputs[1]: 'check_user' is a public output of the template contract"
    assert error(with_(secret_outputs=["*_password", "check_user"])).startswith(message)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("*_password", "labxblock.secret_outputs: expected a list of output names or patterns"),
        (["*_password", ""], "labxblock.secret_outputs[1]: expected an output name or pattern"),
        (["a b"], "labxblock.secret_outputs[0]: expected an output name or pattern"),
        (["host_key"], "labxblock.secret_outputs[0]: 'host_key' is a public output of the template contract"),
    ],
)
def test_bad_secret_outputs(value, message):
    assert error(with_(secret_outputs=value)).startswith(message)


# Moving from stackamole/hastexo (labxblock.legacy).


def test_serving_the_old_block_names_is_off_unless_turned_on():
    assert load(valid()).serve_legacy_block_types is False
    assert load({**valid(), "serve_legacy_block_types": True}).serve_legacy_block_types is True


@pytest.mark.parametrize("value", ["true", 1, None])
def test_serving_the_old_block_names_takes_true_or_false_only(value):
    message = error({**valid(), "serve_legacy_block_types": value})
    assert message.startswith("labxblock.serve_legacy_block_types: expected true or false")


def test_studio_test_labs_default_on_with_half_an_hour_and_five_per_course():
    def studio(s: LabSettings) -> tuple[Any, ...]:
        return s.studio_test_labs, s.studio_test_lab_timeout, s.studio_test_labs_per_course

    assert studio(load(valid())) == (True, 1800, 5)
    changes = {"studio_test_labs": False, "studio_test_lab_timeout": 600, "studio_test_labs_per_course": None}
    assert studio(load(with_(**changes))) == (False, 600, None)


@pytest.mark.parametrize(("changes", "message"), [
    ({"studio_test_labs": "no"}, "labxblock.studio_test_labs: expected true or false, got 'no'"),
    ({"studio_test_lab_timeout": 0}, "labxblock.studio_test_lab_timeout: expected an integer ≥ 1, got 0"),
    ({"studio_test_labs_per_course": 0},
     "labxblock.studio_test_labs_per_course: expected an integer ≥ 1 or null, got 0"),
    ({"studio_test_labs_per_course": True},
     "labxblock.studio_test_labs_per_course: expected an integer ≥ 1 or null, got True"),
])
def test_bad_studio_test_lab_settings_name_the_key(changes, message):
    assert error(with_(**changes)) == message


def test_launch_ahead_per_hour_defaults_to_three_and_may_be_zero():
    assert load(valid()).launch_ahead_per_hour == 3
    assert load(with_(launch_ahead_per_hour=0)).launch_ahead_per_hour == 0  # hidden blocks start none
    assert error(with_(launch_ahead_per_hour=-1)) == (
        "labxblock.launch_ahead_per_hour: expected an integer ≥ 0, got -1"
    )
