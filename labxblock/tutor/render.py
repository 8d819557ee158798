"""What the Tutor plugin computes: its config keys, generated secrets, Celery commands, Python literals.

Pure Python (no Tutor, no Django), so the README, the tests and sites without
Tutor share one definition of each process's command line.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

# The queues of decision 1 (cloud calls, beat ticks, progress checks), and the observations'
# (lists, reads and probes of the cloud: short, never behind a burst of calls).
ROLES = ("calls", "ticks", "checks", "observe")

# Config defaults, without the LABXBLOCK_ prefix. Timeouts mirror labxblock.conf's
# own defaults (a unit test keeps them in step) so the rendered settings say what runs.
DEFAULTS: dict[str, Any] = {
    "PROVIDERS": {},
    "TERMINAL_MODE": "gateway",
    "GATEWAY_HOST": "{{ LMS_HOST }}",
    "GATEWAY_PATH": "/lab-terminal/",
    "GUACAMOLE_URL": "",
    "LAUNCH_TIMEOUT": 2400,
    "SUSPEND_TIMEOUT": 120,
    "DELETE_TIMEOUT": 14 * 86400,
    "EXTRA_SETTINGS": {},
    "CALLS_QUEUE": "labxblock",
    "TICKS_QUEUE": "labxblock.ticks",
    "CHECKS_QUEUE": "labxblock.checks",
    "OBSERVE_QUEUE": "labxblock.observe",
    "CALLS_CONCURRENCY": 64,
    "TICKS_CONCURRENCY": 2,
    "CHECKS_CONCURRENCY": 8,
    "OBSERVE_CONCURRENCY": 8,
    "DOCKER_IMAGE_GUACD": "docker.io/guacamole/guacd:1.6.0",
    "GATEWAY_REPLICAS": 1,
    "GATEWAY_REDIS_URL": "",
}

# Redis redelivers a task whose worker died after visibility_timeout; kombu's
# default is 3600 s and labxblock never asks for less.
MIN_VISIBILITY_TIMEOUT = 3600

# Where beat keeps its last-run times: a scratch file, since losing it only
# makes each tick run once at start.
BEAT_SCHEDULE_FILE = "/tmp/labxblock-celerybeat-schedule"  # noqa: S108

_GATEWAY_EXTRA_RE = re.compile(r"labxblock[^\s\[]*\[[^\]]*\bgateway\b[^\]]*\]")
# The packages labxblock replaces: they register the same XBlock names (a PyPI name, or a git URL's).
_LEGACY_PACKAGE_RE = re.compile(r"\b(stackamole|hastexo)[-_]xblock\b", re.I)
_LEGACY_HINT = (
    "whose XBlock name labxblock registers too: this plugin's settings make labxblock's select function "
    "choose (XBLOCK_SELECT_FUNCTION), so the old package answers until serve_legacy_block_types is true "
    'and labxblock after; see labxblock\'s README, "Moving from stackamole / hastexo"'
)


def unique_values() -> dict[str, Any]:
    """Secrets made once per site (Tutor keeps them in config.yml), without the prefix."""
    return {
        # Lowercase letters and digits: fits install_id's [a-z0-9-]{1,20}.
        "INSTALL_ID": secrets.token_hex(5),
        "SECRET_KEYS": [Fernet.generate_key().decode()],
        "TICKET_KEYS": [Fernet.generate_key().decode()],
        "GUACAMOLE_JSON_SECRET_KEY": secrets.token_hex(16),
    }


def celery_args(role: str, queue: str = "", concurrency: int = 0) -> list[str]:
    """The command line of one labxblock Celery process in the LMS image.

    ``role`` is a queue role (``calls``, ``ticks``, ``checks``, ``observe``) or ``beat``.
    Cloud calls, observations and checks wait on the network, so they run in threads; ticks are short
    and CPU-bound, so they run in processes (prefork). Flags that Tutor gives its
    own ``lms-worker`` are kept (no gossip, no mingle, one message prefetched).
    """
    if role == "beat":
        return ["celery", "--app=lms.celery", "beat", "--loglevel=info", f"--schedule={BEAT_SCHEDULE_FILE}"]
    if role not in ROLES:
        raise ValueError(f"unknown worker role {role!r}; expected beat or one of {', '.join(ROLES)}")
    args = [
        "celery", "--app=lms.celery", "worker", "--loglevel=info",
        f"--hostname=labxblock.{role}.%h", f"--queues={queue}",
        "--pool=prefork" if role == "ticks" else "--pool=threads", f"--concurrency={concurrency}",
    ]
    if role == "ticks":
        args.append("--max-tasks-per-child=100")  # as Tutor's lms-worker: bounds a leaking process
    return [*args, "--prefetch-multiplier=1", "--without-gossip", "--without-mingle"]


def python_literal(value: Any, name: str) -> str:
    """``value`` (plain YAML data) as Python source for a settings file.

    Raises ValueError naming the config key path for anything a settings file
    could not hold as a literal (dates, objects, non-finite numbers).
    """
    if value is None or isinstance(value, bool | int | str):
        return repr(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(python_literal(v, f"{name}[{i}]") for i, v in enumerate(value)) + "]"
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{name}: keys must be strings, got {key!r}")
            items.append(f"{key!r}: {python_literal(item, f'{name}.{key}')}")
        return "{" + ", ".join(items) + "}"
    raise ValueError(
        f"{name}: a {type(value).__name__} cannot go into XBLOCK_SETTINGS; "
        "use strings, numbers, booleans, null, lists and mappings"
    )


def config_problems(config: dict[str, Any]) -> list[str]:
    """What an operator should fix in the plugin's config; empty when all is well."""
    problems = []
    mode = config.get("LABXBLOCK_TERMINAL_MODE")
    if mode not in ("gateway", "console", "guacamole-json"):
        problems.append(
            f"LABXBLOCK_TERMINAL_MODE is {mode!r}: expected gateway, console or guacamole-json"
        )
    path = str(config.get("LABXBLOCK_GATEWAY_PATH", ""))
    if not (path.startswith("/") and path.endswith("/") and len(path) > 1):
        problems.append(f"LABXBLOCK_GATEWAY_PATH is {path!r}: expected a path like /lab-terminal/")
    if mode == "guacamole-json" and not config.get("LABXBLOCK_GUACAMOLE_URL"):
        problems.append("LABXBLOCK_GUACAMOLE_URL is empty: guacamole-json mode needs the Guacamole app's URL")
    problems += _gateway_problems(config)
    requirements = [str(r) for r in config.get("OPENEDX_EXTRA_PIP_REQUIREMENTS") or []]
    return problems + _requirement_problems(requirements, mode) + _legacy_problems(requirements)


def gateway_replicas(replicas: Any, redis_url: Any) -> int:
    """How many gateway pods ``tutor k8s`` runs: more than one only with a shared Redis.

    Without one, each process remembers only the tickets it accepted, so a ticket could open
    one session per replica; the plugin then runs one (and ``config_problems`` says why).
    """
    if not _whole_replicas(replicas):
        return 1
    return replicas if str(redis_url or "").strip() else 1


def _whole_replicas(replicas: Any) -> bool:
    return isinstance(replicas, int) and not isinstance(replicas, bool) and replicas >= 1


def _gateway_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    replicas = config.get("LABXBLOCK_GATEWAY_REPLICAS", 1)
    redis_url = str(config.get("LABXBLOCK_GATEWAY_REDIS_URL") or "").strip()
    if not _whole_replicas(replicas):
        problems.append(f"LABXBLOCK_GATEWAY_REPLICAS is {replicas!r}: expected a whole number, 1 or more "
                        "(running 1)")
    elif replicas > 1 and not redis_url:
        problems.append(f"LABXBLOCK_GATEWAY_REPLICAS is {replicas} but LABXBLOCK_GATEWAY_REDIS_URL is empty: "
                        "without a Redis they share, a ticket could open one session per replica, so one "
                        "replica runs; set LABXBLOCK_GATEWAY_REDIS_URL (e.g. redis://redis:6379/5)")
    if redis_url and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        problems.append("LABXBLOCK_GATEWAY_REDIS_URL: expected a redis://, rediss:// or unix:// URL "
                        "(the gateway refuses to start with it)")
    return problems


def _legacy_problems(requirements: list[str]) -> list[str]:
    """The old package next to labxblock: the names both register make XBlock refuse to choose."""
    found = sorted({m.group(0).lower().replace("_", "-") for r in requirements
                    for m in [_LEGACY_PACKAGE_RE.search(r)] if m})
    return [f"OPENEDX_EXTRA_PIP_REQUIREMENTS names {name}, {_LEGACY_HINT}" for name in found]


def _requirement_problems(requirements: Iterable[str], mode: Any) -> list[str]:
    requirements = [str(r) for r in requirements]
    if not any("labxblock" in r for r in requirements):
        return [
            "OPENEDX_EXTRA_PIP_REQUIREMENTS does not name labxblock: the openedx image needs it, e.g. "
            "tutor config save --append 'OPENEDX_EXTRA_PIP_REQUIREMENTS=labxblock[gateway]' "
            "(or a git URL or wheel URL, see labxblock's README), then tutor images build openedx"
        ]
    if mode in ("gateway", "console") and not any(_GATEWAY_EXTRA_RE.search(r) for r in requirements):
        return [
            "OPENEDX_EXTRA_PIP_REQUIREMENTS names labxblock without its gateway extra: the terminal "
            "gateway runs from the openedx image and needs labxblock[gateway]"
        ]
    return []
