"""What an author set, checked: pure functions over field values, testable without a runtime.

Rule for templates and environments: a value containing a line break is the
text itself (inline YAML); any other non-empty value names a course file
(``/static/lab.yaml`` or ``lab.yaml``). The caller supplies ``read(path)``,
which returns a course file's text or None when there is no such file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from labxblock.fields import (
    CHECK_KEYS,
    CHECK_TIMEOUT_DEFAULT,
    CHECK_TIMEOUT_MAX,
    HOOK_KEYS,
    HOOK_KINDS,
    HOOKS_PER_KIND,
    KEY_TYPES,
    PROTOCOLS,
    RDP_SECURITY,
    TIME_BUDGET_HOURS_MAX,
    TIMEOUT_FIELDS,
)

REQUIRED_OUTPUTS = ("public_ip", "private_key")
CHECK_ACCOUNT_OUTPUTS = ("check_user", "check_private_key")  # optional, together
STATIC_PREFIX = "/static/"

Reader = Callable[[str], str | None]


def _(text: str) -> str:
    """Mark ``text`` for extraction; the block translates problems when it shows them."""
    return text


class LabConfigError(Exception):
    """The block's template cannot be read: the learner (or the author's test) sees NOT_CONFIGURED."""


@dataclass(frozen=True)
class Problem:
    """One thing an author should fix: the field, a message id and its parameters."""

    field: str
    message: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def text(self, gettext: Callable[[str], str] = lambda s: s) -> str:
        return gettext(self.message).format(**self.params)


@dataclass(frozen=True)
class Source:
    """Where one provider's template and environment come from (text or file name)."""

    name: str
    capacity: int | None
    template: str
    environment: str


def is_inline(value: str) -> bool:
    """Is this template/environment value the text itself (rather than a file name)?"""
    return "\n" in value


def asset_path(value: str) -> str:
    """The course file name, without the ``/static/`` prefix authors often write."""
    value = value.strip()
    return value[len(STATIC_PREFIX):] if value.startswith(STATIC_PREFIX) else value.lstrip("/")


def sources(values: Mapping[str, Any]) -> list[Source]:
    """The providers a launch may use, in order; the block's own template fills gaps."""
    default_template = values.get("template") or ""
    default_env = values.get("environment") or ""
    providers = values.get("providers") or []
    if not providers:
        return [Source("default", None, default_template, default_env)]
    out = []
    for p in providers:
        p = p if isinstance(p, Mapping) else {}
        capacity = p.get("capacity")
        out.append(
            Source(
                name=str(p.get("name") or ""),
                capacity=capacity if isinstance(capacity, int) and not isinstance(capacity, bool) else None,
                template=str(p.get("template") or default_template),
                environment=str(p.get("environment") or default_env),
            )
        )
    return out


def template_reference(values: Mapping[str, Any]) -> str:
    """What identifies "the same template" for sharing a lab: the template values, in order."""
    return "\n\0".join(s.template for s in sources(values))


def lab_key(course_run: str, values: Mapping[str, Any]) -> str:
    """The lab this block opens: its lab group, else a stable short hash of course run and template."""
    group = (values.get("lab_group") or "").strip()
    if group:
        return group
    digest = hashlib.sha256(f"{course_run}\n{template_reference(values)}".encode()).hexdigest()
    return f"tpl-{digest[:16]}"


def load_text(value: str, read: Reader) -> str | None:
    """The template/environment text for ``value``; None if it names a file that is not there."""
    return value if is_inline(value) else read(asset_path(value))


def where_of(value: str) -> str:
    """How a template/environment value is named to the author: its file name, or "(inline)"."""
    return "(inline)" if is_inline(value) else value.strip()


YAML_INVALID = _("The template {where} is not valid YAML: {error}")
YAML_INVALID_AT = _("The template {where} is not valid YAML at line {line}, column {column}: {error}")
YAML_MESSAGES = (YAML_INVALID, YAML_INVALID_AT)


def yaml_problem(field_name: str, where: str, error: yaml.YAMLError) -> Problem:
    """A template that does not parse: PyYAML's reason and the line and column where it stopped."""
    mark = getattr(error, "problem_mark", None)
    reason = getattr(error, "problem", None) or (str(error).splitlines() or [type(error).__name__])[0]
    if mark is None:
        return Problem(field_name, YAML_INVALID, {"where": where, "error": reason})
    return Problem(field_name, YAML_INVALID_AT,
                   {"where": where, "error": reason, "line": mark.line + 1, "column": mark.column + 1})


def check_template(field_name: str, value: str, read: Reader, *, has_checks: bool = False) -> list[Problem]:
    """YAML, the ``run`` parameter and the contract's outputs (the check account's, if there are checks)."""
    where = where_of(value)
    text = load_text(value, read)
    if text is None:
        return [Problem(field_name, _("The template file {path} is not among the course's files."),
                        {"path": where})]
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return [yaml_problem(field_name, where, e)]
    if not isinstance(doc, Mapping):
        return [Problem(field_name, _("The template {where} is not a Heat template (no mapping at the top)."),
                        {"where": where})]
    problems = []
    parameters = doc.get("parameters") if isinstance(doc.get("parameters"), Mapping) else {}
    if "run" not in parameters:
        problems.append(Problem(field_name, _("The template {where} has no \"run\" parameter."),
                                {"where": where}))
    outputs = doc.get("outputs") if isinstance(doc.get("outputs"), Mapping) else {}
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        problems.append(Problem(field_name, _("The template {where} lacks the outputs: {names}."),
                                {"where": where, "names": ", ".join(missing)}))
    if "host_key" not in outputs:
        problems.append(Problem(field_name, _(
            "The template {where} has no host_key output: the lab's SSH host key is then trusted the "
            "first time the lab answers. Output it so that it is verified from the start."),
            {"where": where}))
    if has_checks:
        problems += check_account(field_name, where, outputs)
    return problems


def check_account(field_name: str, where: str, outputs: Mapping[str, Any]) -> list[Problem]:
    """Checks should log in with an account of their own: the learner's is the learner's to change."""
    present = [name for name in CHECK_ACCOUNT_OUTPUTS if name in outputs]
    if not present:
        return [Problem("checks", _(
            "The checks run as the learner, who can make them all pass (a forced command in their own "
            "authorized_keys) and read the scripts. Give the template {where} a check account the learner "
            "cannot change: the outputs check_user and check_private_key."), {"where": where})]
    if len(present) == 1:
        missing = next(name for name in CHECK_ACCOUNT_OUTPUTS if name not in present)
        return [Problem(field_name, _("The template {where} outputs {present} without {missing}: "
                                      "the checks will not run."),
                        {"where": where, "present": present[0], "missing": missing})]
    return []


def check_environment(field_name: str, value: str, read: Reader) -> list[Problem]:
    text = load_text(value, read)
    if text is None:
        return [Problem(field_name, _("The environment file {path} is not among the course's files."),
                        {"path": where_of(value)})]
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, Mapping):
        return [Problem(field_name, _("The environment {where} is not a YAML mapping."),
                        {"where": where_of(value)})]
    return []


def check_providers(values: Mapping[str, Any], known: Collection[str] | None) -> list[Problem]:
    problems = []
    for i, p in enumerate(values.get("providers") or []):
        if not isinstance(p, Mapping) or not isinstance(p.get("name"), str) or not p["name"].strip():
            problems.append(Problem("providers", _("Provider {n} needs a name."), {"n": i + 1}))
            continue
        if known is not None and p["name"] not in known:
            problems.append(Problem("providers", _("Unknown provider {name}; this site has: {known}."),
                                    {"name": p["name"], "known": ", ".join(sorted(known))}))
        capacity = p.get("capacity")
        if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int)
                                     or capacity < 0):
            problems.append(Problem("providers", _("Provider {name}: capacity must be a whole number ≥ 0."),
                                    {"name": p["name"]}))
    return problems


def check_ports(values: Mapping[str, Any]) -> list[Problem]:
    problems, seen = [], set()
    for i, p in enumerate(values.get("ports") or []):
        name = p.get("name") if isinstance(p, Mapping) else None
        number = p.get("number") if isinstance(p, Mapping) else None
        if not isinstance(name, str) or not name.strip():
            problems.append(Problem("ports", _("Port {n} needs a name."), {"n": i + 1}))
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
            problems.append(Problem("ports", _("Port {n}: the number must be between 1 and 65535."),
                                    {"n": i + 1}))
        elif number in seen:
            problems.append(Problem("ports", _("Port {number} is listed twice."), {"number": number}))
        else:
            seen.add(number)
    return problems


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# What a check or a lifecycle script entry can get wrong, in the words of each.
CHECK_TEXTS = {
    "empty": _("Check script {n} is empty."),
    "unknown": _("Check {n} has unknown settings: {names}."),
    "timeout": _("Check {n}: the timeout must be between 1 and {max} seconds."),
    "text": _("Check {n}: {key} must be text."),
    "host": _("Check {n}: the host must look like user@host:port."),
}
HOOK_TEXTS = {
    "empty": _("Lifecycle script {n} is empty."),
    "unknown": _("Lifecycle script {n} has unknown settings: {names}."),
    "timeout": _("Lifecycle script {n}: the timeout must be between 1 and {max} seconds."),
    "text": _("Lifecycle script {n}: {key} must be text."),
    "host": _("Lifecycle script {n}: the host must look like user@host:port."),
}


def _script_problems(field_name: str, n: int, entry: Mapping[str, Any], keys: tuple[str, ...],
                     texts: Mapping[str, str]) -> list[Problem]:
    """What is wrong with one check or lifecycle script: its script, settings, timeout, texts, host."""
    problems = []
    script = entry.get("script")
    if not isinstance(script, str) or not script.strip():
        problems.append(Problem(field_name, texts["empty"], {"n": n}))
    unknown = sorted(set(entry) - set(keys))
    if unknown:
        names = ", ".join(map(str, unknown))
        problems.append(Problem(field_name, texts["unknown"], {"n": n, "names": names}))
    timeout = entry.get("timeout")
    if timeout is not None and (not _number(timeout) or not 1 <= timeout <= CHECK_TIMEOUT_MAX):
        problems.append(Problem(field_name, texts["timeout"], {"n": n, "max": CHECK_TIMEOUT_MAX}))
    for key in ("name", "hint", "host", "kind"):
        if key in keys and entry.get(key) is not None and not isinstance(entry[key], str):
            problems.append(Problem(field_name, texts["text"], {"n": n, "key": key}))
    if isinstance(entry.get("host"), str) and not _host_ok(entry["host"]):
        problems.append(Problem(field_name, texts["host"], {"n": n}))
    return problems


def check_checks(values: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for i, c in enumerate(values.get("checks") or []):
        c = c if isinstance(c, Mapping) else {}
        problems += _script_problems("checks", i + 1, c, CHECK_KEYS, CHECK_TEXTS)
        weight = c.get("weight")
        if weight is not None and (not _number(weight) or weight <= 0):
            problems.append(Problem("checks", _("Check {n}: the weight must be a number greater than 0."),
                                    {"n": i + 1}))
    return problems


def check_hooks(values: Mapping[str, Any]) -> list[Problem]:
    """Lifecycle scripts: as checks, plus a known kind, and no more of a kind than run."""
    problems = []
    for i, h in enumerate(values.get("hooks") or []):
        h = h if isinstance(h, Mapping) else {}
        if h.get("kind") not in HOOK_KINDS:
            problems.append(Problem("hooks", _("Lifecycle script {n}: the kind must be one of: {choices}."),
                                    {"n": i + 1, "choices": ", ".join(HOOK_KINDS)}))
        problems += _script_problems("hooks", i + 1, h, HOOK_KEYS, HOOK_TEXTS)
    for kind in HOOK_KINDS:
        if sum(1 for h in hook_specs(values, limit=False) if h["kind"] == kind) > HOOKS_PER_KIND:
            problems.append(Problem("hooks", _("Only the first {max} {kind} scripts run; the others are left "
                                               "out."), {"max": HOOKS_PER_KIND, "kind": kind}))
    return problems


def _host_ok(host: str) -> bool:
    """Empty, or ``[user@]host[:port]`` (``[v6]:port`` too) with no spaces and a valid port."""
    host = host.strip()
    if any(ch.isspace() for ch in host):
        return False
    rest = host.rpartition("@")[2]
    if rest.startswith("["):
        port = rest.partition("]")[2].removeprefix(":")
    else:
        port = rest.partition(":")[2] if rest.count(":") == 1 else ""
    return not port or (port.isdigit() and 0 < int(port) < 65536)


def _runnable(entry: Any) -> bool:
    script = entry.get("script") if isinstance(entry, Mapping) else None
    return isinstance(script, str) and bool(script.strip())


def _common(entry: Mapping[str, Any], default_name: str) -> dict[str, Any]:
    """A runnable entry's name, script, host and timeout, defaults for bad values."""
    timeout = entry.get("timeout")
    host = entry.get("host") if isinstance(entry.get("host"), str) else ""
    name = entry.get("name")
    return {
        "name": name if isinstance(name, str) and name.strip() else default_name,
        "script": entry["script"],
        "host": host.strip(),  # a malformed host fails its script when run, never runs elsewhere
        "timeout": timeout if _number(timeout) and 1 <= timeout <= CHECK_TIMEOUT_MAX
        else CHECK_TIMEOUT_DEFAULT,
    }


def check_specs(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The checks to run, complete and safe to run: runnable ones only, defaults for bad values.

    Studio warns about what is dropped or replaced here (``check_checks``); learners are
    never stopped by an author's typo in an optional setting.
    """
    specs = []
    for i, c in enumerate(values.get("checks") or []):
        if not _runnable(c):
            continue
        weight = c.get("weight")
        specs.append({
            **_common(c, f"Check {i + 1}"),
            "weight": float(weight) if _number(weight) and weight > 0 else 1.0,
            "hint": c["hint"] if isinstance(c.get("hint"), str) else "",
        })
    return specs


def hook_specs(values: Mapping[str, Any], *, limit: bool = True) -> list[dict[str, Any]]:
    """The lifecycle scripts to run, as ``check_specs`` makes checks: runnable ones of a known kind,
    the first ``HOOKS_PER_KIND`` of each (``limit``), in the author's order (``check_hooks`` warns)."""
    specs: list[dict[str, Any]] = []
    for i, h in enumerate(values.get("hooks") or []):
        if not _runnable(h) or h.get("kind") not in HOOK_KINDS:
            continue
        if limit and sum(1 for spec in specs if spec["kind"] == h["kind"]) >= HOOKS_PER_KIND:
            continue
        specs.append({"kind": h["kind"], **_common(h, f"{h['kind']} script {i + 1}")})
    return specs


def check_budget(values: Mapping[str, Any]) -> list[Problem]:
    hours = values.get("time_budget_hours")
    if hours is not None and (not _number(hours) or not 0 < hours <= TIME_BUDGET_HOURS_MAX):
        return [Problem("time_budget_hours", _("The lab time must be a number of hours above 0 and at most "
                                               "{max}, or empty."), {"max": TIME_BUDGET_HOURS_MAX})]
    return []


def time_budget_seconds(values: Mapping[str, Any]) -> float | None:
    """The block's own budget in seconds; None when unset (the site's counts) or invalid (Studio warns)."""
    hours = values.get("time_budget_hours")
    return None if hours is None or check_budget(values) else float(hours) * 3600


def check_settings(values: Mapping[str, Any]) -> list[Problem]:
    problems = []
    if values.get("protocol") not in PROTOCOLS:
        problems.append(Problem("protocol", _("The protocol must be one of: {choices}."),
                                {"choices": ", ".join(PROTOCOLS)}))
    if values.get("rdp_security", "any") not in RDP_SECURITY:
        problems.append(Problem("rdp_security", _("The RDP security must be one of: {choices}."),
                                {"choices": ", ".join(RDP_SECURITY)}))
    if values.get("key_type") not in KEY_TYPES:
        problems.append(Problem("key_type", _("The key type must be one of: {choices}."),
                                {"choices": ", ".join(KEY_TYPES)}))
    for name in TIMEOUT_FIELDS:
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(Problem(name, _("{field} must be a whole number of seconds ≥ 1, or empty."),
                                    {"field": name}))
    return problems


def check(
    values: Mapping[str, Any], *, read: Reader, known_providers: Collection[str] | None
) -> list[Problem]:
    """Every problem with these field values; [] when the lab is ready to use.

    ``known_providers`` None: the site's providers are unknown here, so names are not checked.
    """
    problems: list[Problem] = []
    srcs = sources(values)
    has_checks = bool(check_specs(values))
    if not any(s.template.strip() for s in srcs):
        problems.append(Problem("template", _("No template: set one, or give each provider a template.")))
    else:
        seen: set[str] = set()
        for s in srcs:
            if not s.template.strip():
                problems.append(Problem("providers", _("Provider {name} has no template."), {"name": s.name}))
            elif s.template not in seen:  # one report per template, however many providers share it
                seen.add(s.template)
                problems += check_template("template" if not values.get("providers") else "providers",
                                           s.template, read, has_checks=has_checks)
            if s.environment.strip() and s.environment not in seen:
                seen.add(s.environment)
                problems += check_environment("environment", s.environment, read)
    problems += check_providers(values, known_providers)
    problems += check_ports(values)
    problems += check_checks(values)
    problems += check_hooks(values)
    problems += check_budget(values)
    problems += check_settings(values)
    return problems

