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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from labxblock.providers import template_lines
from labxblock.providers.base import PermanentError, TemplateProblem

SSH_TYPE = "LabXBlock::Local::SSH"
RANDOM_TYPE = "OS::Heat::RandomString"
VALUE_TYPE = "OS::Heat::Value"
KNOWN_TYPES = (SSH_TYPE, RANDOM_TYPE, VALUE_TYPE)
# sshd keywords an author may not set: they would undo what makes the lab a lab.
RESERVED_OPTIONS = frozenset({"match", "include", "forcecommand", "authorizedkeysfile", "pidfile",
                              "listenaddress", "port", "hostkey"})
_KEYWORD = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
# What the SSH resource offers to get_attr (its values are chosen at create).
SSH_ATTRIBUTES = ("public_ip", "first_address", "port", "private_key", "public_key", "host_key", "user")


class TemplateError(PermanentError):
    """A template the local provider refuses; ``path`` is the place in it (for the line)."""

    def __init__(self, message: str, path: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.path = tuple(path)


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
        raise TemplateError(f"the template is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or "heat_template_version" not in doc:
        raise TemplateError("the template has no heat_template_version (is it a HOT template?)")
    resources = doc.get("resources") or {}
    if not isinstance(resources, dict):
        raise TemplateError("template resources must be a mapping", ["resources"])
    servers = []
    for name, res in resources.items():
        kind = res.get("type") if isinstance(res, dict) else None
        if kind not in KNOWN_TYPES:
            raise TemplateError(f"resource {name}: type {kind!r} is not one the local provider runs "
                                f"({', '.join(KNOWN_TYPES)})", ["resources", name, "type"])
        if kind == SSH_TYPE:
            servers.append(name)
    if len(servers) != 1:
        raise TemplateError(f"a local template needs exactly one {SSH_TYPE} resource, not {len(servers)}",
                            ["resources"])
    bound = _bind_parameters(doc.get("parameters") or {}, parameters)
    props = resources[servers[0]].get("properties") or {}
    return LabPlan(
        server=servers[0],
        boot_seconds=_number(servers[0], "boot_seconds", props.get("boot_seconds", 0)),
        sshd_options=_sshd_options(servers[0], props.get("sshd_options") or {}),
        parameters=bound,
        resources=resources,
        outputs={k: (v or {}).get("value") for k, v in (doc.get("outputs") or {}).items()},
    )


def _bind_parameters(declared: Any, given: Mapping[str, str]) -> dict[str, Any]:
    if not isinstance(declared, dict):
        raise TemplateError("template parameters must be a mapping", ["parameters"])
    unknown = sorted(set(given) - set(declared))
    if unknown:  # as Heat does: a parameter the template does not declare is an error
        raise TemplateError(f"the template does not declare parameter(s): {', '.join(unknown)}",
                            ["parameters"])
    bound = {}
    for name, decl in declared.items():
        if name in given:
            bound[name] = given[name]
        elif isinstance(decl, dict) and "default" in decl:
            bound[name] = decl["default"]
        else:
            raise TemplateError(f"template parameter {name} has no value and no default",
                                ["parameters", name])
    return bound


def _number(server: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise TemplateError(f"{server}.{key}: expected seconds between 0 and 3600, got {value!r}",
                            ["resources", server, "properties", key])
    return float(value)


def _sshd_options(server: str, options: Any) -> dict[str, str]:
    path = ["resources", server, "properties", "sshd_options"]
    if not isinstance(options, dict):
        raise TemplateError(f"{server}.sshd_options: expected a mapping of sshd_config keywords", path)
    checked = {}
    for key, value in options.items():
        text = str(value)
        if not _KEYWORD.match(str(key)) or "\n" in text or "\r" in text:
            raise TemplateError(f"{server}.sshd_options: {key!r} is not a keyword with a one-line value",
                                path)
        if str(key).lower() in RESERVED_OPTIONS:
            raise TemplateError(f"{server}.sshd_options: {key} is set by the local provider", path)
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
                raise TemplateError(f"{name}.length: expected an integer from 1 to 512",
                                    ["resources", name, "properties", "length"])
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


def check(template: str, given: Collection[str] = ()) -> list[TemplateProblem]:
    """What a create would refuse in ``template``, with the line it concerns; nothing is started.

    ``given``: the parameters a lab passes at create. Outputs are resolved against stand-in
    attributes, so a get_attr or get_param naming nothing is found now, not at launch.
    """
    try:
        doc = yaml.safe_load(template)
    except yaml.YAMLError as exc:
        line, column = template_lines.yaml_position(str(exc)) or (None, None)
        return [TemplateProblem(f"the template is not valid YAML: {template_lines.without_marks(str(exc))}",
                                line, column)]
    declared = doc.get("parameters") if isinstance(doc, dict) else None
    names = [n for n in given if isinstance(declared, dict) and n in declared]
    try:
        plan = parse(template, dict.fromkeys(names, ""))
        attrs = _stand_in_attributes(plan)
        for name, expr in plan.outputs.items():
            try:
                resolve(expr, plan.parameters, attrs)
            except PermanentError as exc:
                raise TemplateError(f"output {name}: {exc}", ["outputs", name]) from None
    except TemplateError as exc:
        return [TemplateProblem(str(exc), template_lines.line_of(template, exc.path) if exc.path else None)]
    return []


def _stand_in_attributes(plan: LabPlan) -> dict[str, dict[str, Any]]:
    server = dict.fromkeys(SSH_ATTRIBUTES, "")
    for name, res in plan.resources.items():
        try:
            attributes(LabPlan(server=plan.server, parameters=plan.parameters, resources={name: res}), server)
        except TemplateError:
            raise
        except PermanentError as exc:
            raise TemplateError(f"resource {name}: {exc}", ["resources", name]) from None
    return {name: (dict(server) if res["type"] == SSH_TYPE else {"value": ""})
            for name, res in plan.resources.items()}
