"""The openstack provider's configuration: validation and the Keystone auth it implies.

Pure functions over the provider's config mapping (the ``providers.<name>``
section of the site settings), so they are tested without a cloud.

Keys (besides ``type``, ``capacity``, ``actions_per_minute``, which conf.py owns):

- ``auth_url``: Keystone, with or without ``/v3``.
- password auth: ``username``, ``password``, ``user_domain_name``/``user_domain_id``,
  and ``project_id``, or ``project_name`` with ``project_domain_name``/``project_domain_id``.
- or application-credential auth: ``application_credential_secret`` with
  ``application_credential_id`` (or ``application_credential_name`` + ``username`` +
  user domain). The credential fixes the project.
- ``region_name``; ``interface`` (public, internal, admin; default public).
- ``cacert`` (CA bundle path) or ``verify`` (default true).
- ``connect_timeout`` / ``read_timeout`` (seconds per HTTP call; default 5 / 30).
- ``create_timeout`` (seconds Heat gives a create, sent as timeout_mins; default 3600).
- ``pool_size`` (HTTP connections kept open to each endpoint, and the most open at once;
  default 64: more than the calls worker's threads, so none waits or is discarded).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

#: Keys owned by conf.py for every provider type; not ours to judge.
GENERIC_KEYS = frozenset({"type", "capacity", "actions_per_minute", "allowed_networks"})

PASSWORD_KEYS = ("username", "password", "project_name", "project_id", "user_domain_name",
                 "user_domain_id", "project_domain_name", "project_domain_id")
APP_CREDENTIAL_KEYS = ("application_credential_id", "application_credential_name",
                       "application_credential_secret")
OTHER_KEYS = ("auth_url", "region_name", "interface", "cacert", "verify", "connect_timeout",
              "read_timeout", "create_timeout", "pool_size")
KNOWN_KEYS = frozenset((*PASSWORD_KEYS, *APP_CREDENTIAL_KEYS, *OTHER_KEYS))

INTERFACES = ("public", "internal", "admin")

DEFAULTS: Mapping[str, Any] = {
    "interface": "public",
    "verify": True,
    "connect_timeout": 5.0,  # seconds to open a TCP connection to Keystone/Heat/Nova
    "read_timeout": 30.0,  # seconds to wait for an answer (Heat's create takes ~2 s)
    "create_timeout": 3600,  # seconds Heat gives a create before CREATE_FAILED
    "pool_size": 64,  # connections per endpoint: above the calls worker's threads (32 in the README)
}


def _is_positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _text(config: Mapping[str, Any], key: str) -> str:
    value = config.get(key)
    return value if isinstance(value, str) else ""


def uses_application_credential(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` asks for application-credential auth rather than a password."""
    return any(config.get(key) for key in APP_CREDENTIAL_KEYS)


def _auth_problems(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if uses_application_credential(config):
        if config.get("password"):
            problems.append(("password", "not set together with application_credential_*: "
                                         "choose one auth method"))
        if not _text(config, "application_credential_secret"):
            problems.append(("application_credential_secret", "a non-empty string"))
        if not _text(config, "application_credential_id"):
            if not _text(config, "application_credential_name"):
                problems.append(("application_credential_id",
                                 "a non-empty string (or application_credential_name with username)"))
            elif not _text(config, "username"):
                problems.append(("username", "the credential owner's name, needed with "
                                             "application_credential_name"))
            elif not (_text(config, "user_domain_name") or _text(config, "user_domain_id")):
                problems.append(("user_domain_name", "the owner's domain, needed with "
                                                     "application_credential_name"))
        return problems
    for key in ("username", "password"):
        if not _text(config, key):
            problems.append((key, "a non-empty string (or use application_credential_id and "
                                  "application_credential_secret)"))
    if not (_text(config, "user_domain_name") or _text(config, "user_domain_id")):
        problems.append(("user_domain_name", "the user's domain, e.g. 'Default' (or user_domain_id)"))
    if _text(config, "project_id"):
        return problems
    if not _text(config, "project_name"):
        problems.append(("project_name", "the project the stacks live in (or project_id)"))
    elif not (_text(config, "project_domain_name") or _text(config, "project_domain_id")):
        problems.append(("project_domain_name", "the project's domain, e.g. 'Default' "
                                                "(or project_domain_id)"))
    return problems


def check_config(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return (sub-key, what is expected) for each problem in an openstack provider config."""
    problems: list[tuple[str, str]] = []
    for key in sorted(set(config) - KNOWN_KEYS - GENERIC_KEYS):
        problems.append((key, "not a known openstack provider key"))
    url = urlsplit(_text(config, "auth_url"))
    if url.scheme not in ("http", "https") or not url.hostname:
        problems.append(("auth_url", "the Keystone URL, http(s)://host[:port][/v3]"))
    elif url.username or url.password:
        problems.append(("auth_url", "a URL without user:password@ (credentials go in their own keys)"))
    problems += _auth_problems(config)
    if config.get("interface", "public") not in INTERFACES:
        problems.append(("interface", "one of " + ", ".join(INTERFACES)))
    region = config.get("region_name")
    if region is not None and not isinstance(region, str):
        problems.append(("region_name", "a string such as 'RegionOne'"))
    for key in ("connect_timeout", "read_timeout", "create_timeout"):
        if key in config and not _is_positive_number(config[key]):
            problems.append((key, "a number of seconds > 0"))
    pool = config.get("pool_size", 1)
    if not isinstance(pool, int) or isinstance(pool, bool) or not 1 <= pool <= 1024:
        problems.append(("pool_size", "an integer from 1 to 1024 (connections per endpoint)"))
    if "verify" in config and not isinstance(config["verify"], bool):
        problems.append(("verify", "true or false"))
    cacert = config.get("cacert")
    if cacert is not None:
        if not isinstance(cacert, str) or not os.path.isfile(cacert):
            problems.append(("cacert", "the path of a readable CA bundle file"))
        elif config.get("verify") is False:
            problems.append(("verify", "not false when cacert is given"))
    return problems


def setting(config: Mapping[str, Any], key: str) -> Any:
    """``config[key]``, or its default."""
    return config.get(key, DEFAULTS.get(key))


def keystone_v3_url(auth_url: str) -> str:
    """The Keystone v3 endpoint for ``auth_url``, which may be given with or without ``/v3``."""
    base = auth_url.rstrip("/")
    return base if base.endswith("/v3") else base + "/v3"


def auth_kwargs(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The keystoneauth v3 plugin (``"password"`` or ``"application_credential"``) and its kwargs.

    Keys left empty in the config are left out, so keystoneauth sees only one way
    to name each thing.
    """
    keys: tuple[str, ...]
    if uses_application_credential(config):
        kind = "application_credential"
        keys = (*APP_CREDENTIAL_KEYS, "username", "user_domain_name", "user_domain_id")
    else:
        kind = "password"
        keys = PASSWORD_KEYS
    kwargs = {key: config[key] for key in keys if config.get(key)}
    kwargs["auth_url"] = keystone_v3_url(config["auth_url"])
    return kind, kwargs


def timeouts(config: Mapping[str, Any]) -> tuple[float, float]:
    """(connect, read) seconds, the form ``requests`` takes for ``timeout``."""
    return float(setting(config, "connect_timeout")), float(setting(config, "read_timeout"))
