"""labxblock.tutor.render: the plugin's defaults, secrets, Celery commands and settings literals."""

from __future__ import annotations

import ast
import datetime
import re

import pytest
from cryptography.fernet import Fernet

from labxblock.conf import INSTALL_ID_RE, LabSettings
from labxblock.tutor import render


def test_timeout_defaults_are_labxblocks_own():
    # The plugin writes these keys always: they must say what labxblock would do without them.
    fields = LabSettings.__dataclass_fields__
    for key in ("launch_timeout", "suspend_timeout", "delete_timeout"):
        assert render.DEFAULTS[key.upper()] == fields[key].default, key


def test_generated_secrets_are_valid_and_different_each_time():
    first, second = render.unique_values(), render.unique_values()
    assert INSTALL_ID_RE.fullmatch(first["INSTALL_ID"])
    for name in ("SECRET_KEYS", "TICKET_KEYS"):
        (key,) = first[name]
        Fernet(key)  # raises if not a Fernet key
    assert first["SECRET_KEYS"] != first["TICKET_KEYS"]  # one key never serves two purposes
    assert re.fullmatch(r"[0-9a-f]{32}", first["GUACAMOLE_JSON_SECRET_KEY"])
    assert all(first[k] != second[k] for k in first)


@pytest.mark.parametrize(
    ("role", "queue", "concurrency", "expected"),
    [
        ("calls", "labxblock", 64,
         "celery --app=lms.celery worker --loglevel=info --hostname=labxblock.calls.%h --queues=labxblock"
         " --pool=threads --concurrency=64 --prefetch-multiplier=1 --without-gossip --without-mingle"),
        ("ticks", "labxblock.ticks", 2,
         "celery --app=lms.celery worker --loglevel=info --hostname=labxblock.ticks.%h"
         " --queues=labxblock.ticks --pool=prefork --concurrency=2 --max-tasks-per-child=100"
         " --prefetch-multiplier=1 --without-gossip --without-mingle"),
        ("checks", "site.checks", 8,
         "celery --app=lms.celery worker --loglevel=info --hostname=labxblock.checks.%h --queues=site.checks"
         " --pool=threads --concurrency=8 --prefetch-multiplier=1 --without-gossip --without-mingle"),
        ("observe", "labxblock.observe", 8,
         "celery --app=lms.celery worker --loglevel=info --hostname=labxblock.observe.%h"
         " --queues=labxblock.observe --pool=threads --concurrency=8 --prefetch-multiplier=1"
         " --without-gossip --without-mingle"),
        ("beat", "", 0,
         "celery --app=lms.celery beat --loglevel=info --schedule=/tmp/labxblock-celerybeat-schedule"),
    ],
)  # fmt: skip
def test_celery_commands(role, queue, concurrency, expected):
    assert " ".join(render.celery_args(role, queue, concurrency)) == expected


def test_unknown_worker_role_is_refused():
    with pytest.raises(ValueError, match="unknown worker role 'cloud'"):
        render.celery_args("cloud", "q", 1)


@pytest.mark.parametrize(
    "value",
    [
        {"default": {"type": "openstack", "verify": True, "capacity": None, "ratio": 0.5, "ports": [22]}},
        "it's \"quoted\"\n\u00e9\U0001f600",
        [],
        {},
    ],
)
def test_python_literal_reads_back_as_the_same_value(value):
    assert ast.literal_eval(render.python_literal(value, "LABXBLOCK_PROVIDERS")) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"default": {"since": datetime.date(2024, 1, 1)}}, r"PROVIDERS\.default\.since: a date cannot"),
        ({"default": {"ports": [22, float("nan")]}}, r"PROVIDERS\.default\.ports\[1\]: a float cannot"),
        ({1: "x"}, "LABXBLOCK_PROVIDERS: keys must be strings"),
    ],
)
def test_python_literal_names_the_key_it_cannot_write(value, message):
    with pytest.raises(ValueError, match=message):
        render.python_literal(value, "LABXBLOCK_PROVIDERS")


GOOD = {
    "LABXBLOCK_TERMINAL_MODE": "gateway",
    "LABXBLOCK_GATEWAY_PATH": "/lab-terminal/",
    "LABXBLOCK_GUACAMOLE_URL": "",
    "OPENEDX_EXTRA_PIP_REQUIREMENTS": ["labxblock[gateway] @ git+https://git.example.org/labxblock.git@v0.1.0"],
}
OURS = GOOD["OPENEDX_EXTRA_PIP_REQUIREMENTS"]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({}, None),
        ({"OPENEDX_EXTRA_PIP_REQUIREMENTS": ["labxblock[gateway]==0.1.0"]}, None),
        ({"OPENEDX_EXTRA_PIP_REQUIREMENTS": ["labxblock[gateway] @ https://f.example.org/labxblock-0.1.0-py3-none-any.whl"]},
         None),
        ({"OPENEDX_EXTRA_PIP_REQUIREMENTS": []}, "OPENEDX_EXTRA_PIP_REQUIREMENTS does not name labxblock"),
        ({"OPENEDX_EXTRA_PIP_REQUIREMENTS": ["labxblock==0.1.0"]}, "without its gateway extra"),
        ({"OPENEDX_EXTRA_PIP_REQUIREMENTS": ["labxblock==0.1.0"], "LABXBLOCK_TERMINAL_MODE": "guacamole-json",
          "LABXBLOCK_GUACAMOLE_URL": "https://guacamole.example.org/"}, None),
        ({"LABXBLOCK_TERMINAL_MODE": "guacamole-json"}, "LABXBLOCK_GUACAMOLE_URL is empty"),
        ({"LABXBLOCK_TERMINAL_MODE": "vnc"}, "LABXBLOCK_TERMINAL_MODE is 'vnc'"),
        ({"LABXBLOCK_GATEWAY_PATH": "lab-terminal"}, "LABXBLOCK_GATEWAY_PATH is 'lab-terminal'"),
        # The old package beside labxblock: both register its XBlock names.
        ({"OPENEDX_EXTRA_PIP_REQUIREMENTS": [*OURS, "stackamole-xblock==9.5.0"]},
         "names stackamole-xblock, whose XBlock name labxblock registers too"),
        ({"OPENEDX_EXTRA_PIP_REQUIREMENTS": [*OURS, "git+https://github.com/hastexo/hastexo-xblock.git@v8.7.0"]},
         "the old package answers until serve_legacy_block_types is true"),
        ({"OPENEDX_EXTRA_PIP_REQUIREMENTS": [*OURS, "Hastexo_XBlock"]}, "names hastexo-xblock"),
        ({"OPENEDX_EXTRA_PIP_REQUIREMENTS": [*OURS, "stackamole-tools"]}, None),
        ({"LABXBLOCK_GATEWAY_REPLICAS": 3, "LABXBLOCK_GATEWAY_REDIS_URL": "redis://redis:6379/5"}, None),
        ({"LABXBLOCK_GATEWAY_REPLICAS": 3}, "is 3 but LABXBLOCK_GATEWAY_REDIS_URL is empty"),
        ({"LABXBLOCK_GATEWAY_REPLICAS": 0}, "LABXBLOCK_GATEWAY_REPLICAS is 0: expected a whole number"),
        ({"LABXBLOCK_GATEWAY_REPLICAS": "2"}, "LABXBLOCK_GATEWAY_REPLICAS is '2'"),
        ({"LABXBLOCK_GATEWAY_REDIS_URL": "http://redis:6379"}, "LABXBLOCK_GATEWAY_REDIS_URL: expected a redis://"),
    ],
)  # fmt: skip
def test_config_problems(changes, problem):
    problems = render.config_problems({**GOOD, **changes})
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


@pytest.mark.parametrize(("replicas", "redis_url", "expected"), [
    (1, "", 1), (3, "redis://redis:6379/5", 3), (3, "", 1), (3, "  ", 1), (0, "redis://r/0", 1),
    ("3", "redis://r/0", 1), (True, "redis://r/0", 1),
])  # fmt: skip
def test_more_than_one_gateway_replica_only_with_a_shared_redis(replicas, redis_url, expected):
    assert render.gateway_replicas(replicas, redis_url) == expected
