"""The part of Heat's template language the local provider understands.

A local template is a HOT template (``heat_template_version`` required) whose
resources are of these types only:

- ``LabXBlock::Local::SSH`` (exactly one): the lab's SSH server. Properties:
  ``boot_seconds`` (delay before sshd starts, like a slow cloud; default 0) and
  ``sshd_options`` (extra ``sshd_config`` keywords; ours take precedence).
  Attributes: ``public_ip``/``first_address`` (127.0.0.1), ``port``,
  ``private_key`` (ed25519, OpenSSH format), ``public_key``, ``host_key``, ``user``.
- ``OS::Heat::RandomString`` (``length``; attribute ``value``) and
  ``OS::Heat::Value`` (``value``; attribute ``value``), as in Heat.

Outputs may use ``get_param``, ``get_attr``, ``get_resource``, ``list_join`` and
``str_replace``. Everything is resolved at create time (the port and the keys
are chosen then), by pure functions that tests call without starting anything.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from labxblock.providers.base import PermanentError

SSH_TYPE = "LabXBlock::Local::SSH"
RANDOM_TYPE = "OS::Heat::RandomString"
VALUE_TYPE = "OS::Heat::Value"
KNOWN_TYPES = (SSH_TYPE, RANDOM_TYPE, VALUE_TYPE)
# sshd keywords an author may not set: they would undo what makes the lab a lab.
RESERVED_OPTIONS = frozenset({"match", "include", "forcecommand", "authorizedkeysfile", "pidfile",
                              "listenaddress", "port", "hostkey"})
_KEYWORD = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class LabPlan:
    """What a template asks of the local provider, before anything is started."""

    server: str  # the SSH resource's name (named in failure reasons)
    boot_seconds: float = 0.0
    sshd_options: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    resources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)  # unresolved expressions


def parse(template: str, parameters: Mapping[str, str]) -> LabPlan:
    """Check ``template`` and bind ``parameters``; PermanentError says what is wrong."""
    try:
        doc = yaml.safe_load(template)
    except yaml.YAMLError as exc:
        raise PermanentError(f"the template is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or "heat_template_version" not in doc:
        raise PermanentError("the template has no heat_template_version (is it a HOT template?)")
    resources = doc.get("resources") or {}
    if not isinstance(resources, dict):
        raise PermanentError("template resources must be a mapping")
    servers = []
    for name, res in resources.items():
        kind = res.get("type") if isinstance(res, dict) else None
        if kind not in KNOWN_TYPES:
            raise PermanentError(f"resource {name}: type {kind!r} is not one the local provider runs "
                                 f"({', '.join(KNOWN_TYPES)})")
        if kind == SSH_TYPE:
            servers.append(name)
    if len(servers) != 1:
        raise PermanentError(f"a local template needs exactly one {SSH_TYPE} resource, not {len(servers)}")
    bound = _bind_parameters(doc.get("parameters") or {}, parameters)
    props = resources[servers[0]].get("properties") or {}
    return LabPlan(
        server=servers[0],
        boot_seconds=_number(f"{servers[0]}.boot_seconds", props.get("boot_seconds", 0)),
        sshd_options=_sshd_options(servers[0], props.get("sshd_options") or {}),
        parameters=bound,
        resources=resources,
        outputs={k: (v or {}).get("value") for k, v in (doc.get("outputs") or {}).items()},
    )


def _bind_parameters(declared: Any, given: Mapping[str, str]) -> dict[str, Any]:
    if not isinstance(declared, dict):
        raise PermanentError("template parameters must be a mapping")
    unknown = sorted(set(given) - set(declared))
    if unknown:  # as Heat does: a parameter the template does not declare is an error
        raise PermanentError(f"the template does not declare parameter(s): {', '.join(unknown)}")
    bound = {}
    for name, decl in declared.items():
        if name in given:
            bound[name] = given[name]
        elif isinstance(decl, dict) and "default" in decl:
            bound[name] = decl["default"]
        else:
            raise PermanentError(f"template parameter {name} has no value and no default")
    return bound


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise PermanentError(f"{key}: expected seconds between 0 and 3600, got {value!r}")
    return float(value)


def _sshd_options(server: str, options: Any) -> dict[str, str]:
    if not isinstance(options, dict):
        raise PermanentError(f"{server}.sshd_options: expected a mapping of sshd_config keywords")
    checked = {}
    for key, value in options.items():
        text = str(value)
        if not _KEYWORD.match(str(key)) or "\n" in text or "\r" in text:
            raise PermanentError(f"{server}.sshd_options: {key!r} is not a keyword with a one-line value")
        if str(key).lower() in RESERVED_OPTIONS:
            raise PermanentError(f"{server}.sshd_options: {key} is set by the local provider")
        checked[str(key)] = text
    return checked


def attributes(plan: LabPlan, server_attributes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every resource's attributes, given the SSH server's; random strings are drawn here."""
    values: dict[str, dict[str, Any]] = {}
    alphabet = string.ascii_letters + string.digits
    for name, res in plan.resources.items():
        props = res.get("properties") or {}
        if res["type"] == SSH_TYPE:
            values[name] = dict(server_attributes)
        elif res["type"] == RANDOM_TYPE:
            length = props.get("length", 32)
            if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 512:
                raise PermanentError(f"{name}.length: expected an integer from 1 to 512")
            values[name] = {"value": "".join(secrets.choice(alphabet) for _ in range(length))}
        else:
            values[name] = {"value": resolve(props.get("value"), plan.parameters, {})}
    return values


def outputs(plan: LabPlan, attrs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The template's outputs, resolved."""
    return {name: resolve(expr, plan.parameters, attrs) for name, expr in plan.outputs.items()}


def resolve(expr: Any, params: Mapping[str, Any], attrs: Mapping[str, Mapping[str, Any]]) -> Any:
    """Evaluate the intrinsic functions we know in ``expr``."""
    if isinstance(expr, list):
        return [resolve(item, params, attrs) for item in expr]
    if not isinstance(expr, dict):
        return expr
    if len(expr) != 1:
        return {k: resolve(v, params, attrs) for k, v in expr.items()}
    (fn, arg), = expr.items()
    if fn == "get_param":
        name = arg[0] if isinstance(arg, list) else arg
        if name not in params:
            raise PermanentError(f"get_param: no parameter {name!r}")
        return params[name]
    if fn == "get_resource":
        if arg not in attrs:
            raise PermanentError(f"get_resource: no resource {arg!r}")
        return arg
    if fn == "get_attr":
        if not isinstance(arg, list) or len(arg) != 2 or arg[0] not in attrs or arg[1] not in attrs[arg[0]]:
            raise PermanentError(f"get_attr: {arg!r} names no attribute the local provider has")
        return attrs[arg[0]][arg[1]]
    if fn == "list_join":
        sep, items = arg[0], resolve(arg[1], params, attrs)
        return str(sep).join(str(item) for item in items)
    if fn == "str_replace":
        text = str(resolve(arg["template"], params, attrs))
        for key, value in (arg.get("params") or {}).items():
            text = text.replace(str(key), str(resolve(value, params, attrs)))
        return text
    return {fn: resolve(arg, params, attrs)}
