"""validate()'s rules as pure functions: a test per warning an author can get, and the rules behind them."""

from __future__ import annotations

from pathlib import Path

import pytest

from labxblock import authoring

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
HOST_KEY_OUTPUT = f"  host_key:\n    value: {HOST_KEY}\n"
# The rig's template, with the lab's host key given as a good template gives it.
RIG_TEMPLATE = Path(__file__).parents[1] / "services/openstack/templates/lab_good.yaml"
GOOD = RIG_TEMPLATE.read_text() + HOST_KEY_OUTPUT
# The same lab with a check account (outputs is the template's last section).
CHECK_USER = "  check_user:\n    value: checker\n"
CHECK_KEY = "  check_private_key:\n    value: {get_attr: [server, private_key]}\n"
CHECKED = GOOD + CHECK_USER + CHECK_KEY
KNOWN = frozenset({"default", "os2"})


def values(**overrides):
    base = {
        "template": CHECKED, "environment": "", "providers": [], "ports": [], "checks": [],
        "protocol": "ssh", "key_type": "ed25519", "lab_group": "",
        "launch_timeout": None, "suspend_timeout": None, "delete_timeout": None,
    }
    return {**base, **overrides}


def problems(files=None, **overrides):
    files = files or {}
    found = authoring.check(values(**overrides), read=files.get, known_providers=KNOWN)
    return [(p.field, p.text()) for p in found]


def test_a_good_lab_has_no_problems() -> None:
    assert problems() == []


def test_no_template() -> None:
    assert problems(template="") == [("template", "No template: set one, or give each provider a template.")]


def test_template_is_not_yaml() -> None:
    [(field, text)] = problems(template="heat_template_version: [2021\nparameters: {run: x")
    assert field == "template"
    # The line and column PyYAML stopped at: the author finds the typo without counting lines.
    assert text == ("The template (inline) is not valid YAML at line 2, column 11: "
                    "expected ',' or ']', but got ':'")


def test_template_file_missing_from_course() -> None:
    assert problems(template="/static/lab.yaml") == [
        ("template", "The template file /static/lab.yaml is not among the course's files.")
    ]


def test_template_file_is_read_from_course_files() -> None:
    assert problems({"lab.yaml": GOOD}, template="/static/lab.yaml") == []
    assert problems({"lab.yaml": GOOD}, template="lab.yaml") == []


def test_template_without_run_parameter() -> None:
    text = GOOD.replace("  run:\n", "  not_run:\n")
    assert problems(template=text) == [("template", 'The template (inline) has no "run" parameter.')]


def test_template_without_contract_outputs() -> None:
    text = GOOD.replace("  public_ip:\n", "  address:\n").replace("  private_key:\n", "  key:\n")
    assert problems(template=text) == [
        ("template", "The template (inline) lacks the outputs: public_ip, private_key.")
    ]


def test_a_template_without_host_key_is_warned_that_the_key_is_trusted_on_first_use() -> None:
    assert problems(template=GOOD.replace(HOST_KEY_OUTPUT, "")) == [
        ("template", "The template (inline) has no host_key output: the lab's SSH host key is then trusted "
                     "the first time the lab answers. Output it so that it is verified from the start.")
    ]


def test_unknown_provider_name() -> None:
    found = problems(providers=[{"name": "default"}, {"name": "aws"}])
    assert found == [("providers", "Unknown provider aws; this site has: default, os2.")]


def test_provider_names_not_checked_when_site_settings_are_unknown() -> None:
    found = authoring.check(values(providers=[{"name": "aws"}]), read={}.get, known_providers=None)
    assert found == []


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ({"name": "web", "number": 0}, "Port 1: the number must be between 1 and 65535."),
        ({"name": "web", "number": 70000}, "Port 1: the number must be between 1 and 65535."),
        ({"name": "web", "number": "22"}, "Port 1: the number must be between 1 and 65535."),
        ({"name": "", "number": 22}, "Port 1 needs a name."),
    ],
)
def test_bad_port(port, message) -> None:
    assert problems(ports=[port]) == [("ports", message)]


def test_duplicate_port() -> None:
    ports = [{"name": "a", "number": 22}, {"name": "b", "number": 22}]
    assert problems(ports=ports) == [("ports", "Port 22 is listed twice.")]


@pytest.mark.parametrize("script", ["", "   \n\t", None])
def test_empty_check_script(script) -> None:
    checks = [{"name": "ok", "script": "true"}, {"name": "empty", "script": script}]
    assert problems(checks=checks) == [("checks", "Check script 2 is empty.")]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"weight": 0}, "Check 1: the weight must be a number greater than 0."),
        ({"weight": -2}, "Check 1: the weight must be a number greater than 0."),
        ({"weight": "3"}, "Check 1: the weight must be a number greater than 0."),
        ({"timeout": 0}, "Check 1: the timeout must be between 1 and 600 seconds."),
        ({"timeout": 601}, "Check 1: the timeout must be between 1 and 600 seconds."),
        ({"timeout": True}, "Check 1: the timeout must be between 1 and 600 seconds."),
        ({"hint": ["a"]}, "Check 1: hint must be text."),
        ({"host": "db server"}, "Check 1: the host must look like user@host:port."),
        ({"host": "db:70000"}, "Check 1: the host must look like user@host:port."),
        ({"host": "db:ssh"}, "Check 1: the host must look like user@host:port."),
        ({"retries": 3}, "Check 1 has unknown settings: retries."),
    ],
)
def test_bad_check_setting(extra, message) -> None:
    assert problems(checks=[{"name": "a", "script": "true", **extra}]) == [("checks", message)]


@pytest.mark.parametrize("host", ["", "db", "admin@db:2222", "[fd00::5]:22", "10.0.0.5"])
def test_good_check_hosts(host) -> None:
    check = {"name": "a", "script": "true", "weight": 2.5, "timeout": 600, "hint": "Do it.", "host": host}
    assert problems(checks=[check]) == []


def test_check_specs_fill_defaults_and_skip_what_cannot_run() -> None:
    checks = [
        {"script": "true"},
        {"name": "empty", "script": "  "},
        "not an object",
        {"name": "full", "script": "false", "weight": 3, "hint": "Start nginx.", "host": " db:2222 ",
         "timeout": 5},
        {"name": "typos", "script": "true", "weight": 0, "timeout": 10_000, "hint": 7, "host": None},
    ]
    assert authoring.check_specs(values(checks=checks)) == [
        {"name": "Check 1", "script": "true", "weight": 1.0, "hint": "", "host": "", "timeout": 30},
        {"name": "full", "script": "false", "weight": 3.0, "hint": "Start nginx.", "host": "db:2222",
         "timeout": 5},
        {"name": "typos", "script": "true", "weight": 1.0, "hint": "", "host": "", "timeout": 30},
    ]


BAD_KIND = "Lifecycle script 1: the kind must be one of: setup, after_resume, before_suspend."


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        ({"kind": "on_boot"}, BAD_KIND),
        ({"kind": None}, BAD_KIND),
        ({"script": " "}, "Lifecycle script 1 is empty."),
        ({"timeout": 601}, "Lifecycle script 1: the timeout must be between 1 and 600 seconds."),
        ({"name": 3}, "Lifecycle script 1: name must be text."),
        ({"host": "db server"}, "Lifecycle script 1: the host must look like user@host:port."),
        ({"weight": 2}, "Lifecycle script 1 has unknown settings: weight."),
    ],
)
def test_bad_lifecycle_script(hook, message) -> None:
    entry = {"kind": "before_suspend", "name": "stop", "script": "true", **hook}
    assert problems(hooks=[entry]) == [("hooks", message)]


def test_lifecycle_specs_fill_defaults_and_keep_the_first_five_of_a_kind() -> None:
    hooks = [{"kind": "setup", "script": f"echo {i}"} for i in range(7)]
    hooks += [{"kind": "before_suspend", "name": "stop", "script": "stop", "timeout": 9, "host": " db "},
              {"kind": "nope", "script": "x"}, {"kind": "after_resume", "script": ""}, "not an object"]
    specs = authoring.hook_specs(values(hooks=hooks))
    assert [s["script"] for s in specs if s["kind"] == "setup"] == [f"echo {i}" for i in range(5)]
    assert specs[0] == {"kind": "setup", "name": "setup script 1", "script": "echo 0", "host": "",
                        "timeout": 30}
    assert specs[-1] == {"kind": "before_suspend", "name": "stop", "script": "stop", "host": "db",
                         "timeout": 9}
    assert ("hooks", "Only the first 5 setup scripts run; the others are left out.") in problems(hooks=hooks)


@pytest.mark.parametrize("hours", [0, -1, "20", True, 100_001])
def test_a_bad_time_budget_is_a_problem_and_counts_as_none(hours) -> None:
    assert problems(time_budget_hours=hours) == [
        ("time_budget_hours", "The lab time must be a number of hours above 0 and at most 100000, or empty.")]
    assert authoring.time_budget_seconds(values(time_budget_hours=hours)) is None


def test_a_time_budget_in_hours_is_given_to_labs_in_seconds() -> None:
    assert problems(time_budget_hours=20) == problems(time_budget_hours=0.25) == []
    assert authoring.time_budget_seconds(values(time_budget_hours=0.25)) == 900
    assert authoring.time_budget_seconds(values(time_budget_hours=None)) is None


def test_provider_without_template_falls_back_to_the_blocks_template() -> None:
    assert problems(providers=[{"name": "default"}, {"name": "os2", "template": "/static/other.yaml"}],
                    files={"other.yaml": GOOD}) == []
    assert problems(template="", providers=[{"name": "default", "template": GOOD}, {"name": "os2"}]) == [
        ("providers", "Provider os2 has no template.")
    ]


def test_bad_protocol_key_type_and_timeout() -> None:
    found = problems(protocol="telnet", key_type="dsa", launch_timeout=0)
    assert [f for f, _ in found] == ["protocol", "key_type", "launch_timeout"]


def test_rdp_security_must_be_one_guacd_knows() -> None:
    assert problems(rdp_security="tls") == []
    expected = ("rdp_security", "The RDP security must be one of: any, nla, tls, rdp.")
    assert problems(rdp_security="ssl") == [expected]


def test_inline_rule_is_a_line_break() -> None:
    assert authoring.is_inline("a: 1\n")
    assert not authoring.is_inline("/static/lab.yaml")
    assert authoring.asset_path("/static/labs/lab.yaml") == "labs/lab.yaml"


def test_same_template_shares_a_lab_and_groups_override() -> None:
    run = "course-v1:Org+C+R"
    a = authoring.lab_key(run, values(template="/static/a.yaml"))
    assert a == authoring.lab_key(run, values(template="/static/a.yaml", display_name="other"))
    assert a != authoring.lab_key(run, values(template="/static/b.yaml"))
    assert a != authoring.lab_key("course-v1:Org+C+R2", values(template="/static/a.yaml"))
    assert authoring.lab_key(run, values(lab_group="week1")) == "week1"
    assert len(a) <= 64 and a.startswith("tpl-")


def test_checks_without_a_check_account_warn_that_the_learner_can_forge_them() -> None:
    checks = [{"name": "a", "script": "true"}]
    assert problems(template=GOOD) == []  # no checks, nothing to forge
    assert problems(template=GOOD, checks=checks) == [("checks", (
        "The checks run as the learner, who can make them all pass (a forced command in their own "
        "authorized_keys) and read the scripts. Give the template (inline) a check account the learner "
        "cannot change: the outputs check_user and check_private_key."))]
    assert problems(checks=checks) == []


@pytest.mark.parametrize(("half", "output", "missing"), [(CHECK_USER, "check_user", "check_private_key"),
                                                         (CHECK_KEY, "check_private_key", "check_user")])
def test_half_a_check_account_is_a_problem(half, output, missing) -> None:
    assert problems(template=GOOD + half, checks=[{"script": "true"}]) == [("template", (
        f"The template (inline) outputs {output} without {missing}: the checks will not run."))]

