"""An old block's field values → labxblock's field values, with a note for everything not carried as is.

Pure: values in (as ``olx.read`` or the old block's fields give them), values and notes
out. The same function serves the course converter, ``parse_xml`` and the blocks that
serve the old names, so a lab is the same lab whichever way it arrived: every converted
block has the lab group ``stackamole`` (one lab per learner and course run, as the old
blocks had one stack), which is also where adopted stacks are put.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labxblock.fields import PROTOCOLS
from labxblock.legacy.fields import DEFAULT_CHECK_LABEL, DEFAULT_RESULT_HEADING, LEGACY_CHECK_TIMEOUT
from labxblock.legacy.report import CHANGED, DROPPED, ERROR, Note, shown

SAME = ("display_name", "weight", "read_only", "hidden")
# The old blocks gave a learner one stack per course run, whatever the component: converted labs
# share one lab per learner and course run the same way, and adopted stacks are found under it.
LEGACY_LAB_GROUP = "stackamole"
UNLIMITED = -1  # the old packages' capacity for "no limit"


@dataclass(frozen=True)
class Conversion:
    """labxblock field values (only those the old values decide) and the notes on the way."""

    values: dict[str, Any]
    notes: tuple[Note, ...]

    @property
    def errors(self) -> list[Note]:
        return [n for n in self.notes if n.kind == ERROR]


class _Out:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.notes: list[Note] = []

    def note(self, kind: str, name: str, text: str, value: Any = "") -> None:
        self.notes.append(Note(kind, name, text, shown(value) if value not in ("", None) else ""))


def convert(
    legacy: Mapping[str, Any],
    *,
    check_timeout: int | None = LEGACY_CHECK_TIMEOUT,
    inherit_fullscreen: bool = False,
) -> Conversion:
    """labxblock values for the old block's ``legacy`` values (fields absent there are left out).

    ``check_timeout``: seconds each converted check may run (None: labxblock's default).
    ``inherit_fullscreen``: the old site's ``enable_fullscreen`` setting, which
    ``enable_fullscreen="inherit"`` followed (the old default was false).
    """
    out = _Out()
    out.values["lab_group"] = LEGACY_LAB_GROUP
    for name in SAME:
        if legacy.get(name) is not None:
            out.values[name] = legacy[name]
    _user_and_protocol(legacy, out)
    _template_and_timeouts(legacy, out)
    _key_type(legacy, out)
    _hooks(legacy, out)
    _feedback(legacy, out)
    _fullscreen(legacy, out, inherit_fullscreen)
    _ports(legacy, out)
    _providers(legacy, out)
    _checks(legacy, out, check_timeout)
    return Conversion(out.values, tuple(out.notes))


def _user_and_protocol(legacy: Mapping[str, Any], out: _Out) -> None:
    if "stack_user_name" in legacy:
        if legacy["stack_user_name"]:
            out.values["stack_user"] = legacy["stack_user_name"]
        else:
            out.note(CHANGED, "stack_user_name", "empty: the lab logs in as labxblock's default, training")
    protocol = legacy.get("stack_protocol")
    if protocol is not None:
        if protocol in PROTOCOLS:
            out.values["protocol"] = protocol
        else:
            out.note(ERROR, "stack_protocol", f"must be one of {', '.join(PROTOCOLS)}", protocol)


def _template_and_timeouts(legacy: Mapping[str, Any], out: _Out) -> None:
    if legacy.get("stack_template_path"):
        out.values["template"] = legacy["stack_template_path"]
    for name in ("launch_timeout", "suspend_timeout"):
        value = legacy.get(name)
        if value is None:
            continue
        if value > 0:
            out.values[name] = value
        else:  # the old block took a zero (or less) for "unset"
            out.note(CHANGED, name, "not a positive number of seconds: the site's setting applies", value)
    age = legacy.get("delete_age")
    if age not in (None, "", "None"):
        try:
            seconds = int(str(age).strip())
        except ValueError:
            out.note(ERROR, "delete_age", "is not a whole number of seconds", age)
            return
        if seconds > 0:
            out.values["delete_timeout"] = seconds
        else:
            out.note(CHANGED, "delete_age", "not a positive number of seconds: the site's setting applies",
                     age)


def _key_type(legacy: Mapping[str, Any], out: _Out) -> None:
    key_type = legacy.get("stack_key_type")
    if key_type in ("rsa", "ed25519"):
        out.values["key_type"] = key_type
        out.note(CHANGED, "stack_key_type", (
            "the old block made this lab's key pair itself and registered it in Nova under the stack's name; "
            "labxblock makes no key: the template must create it (OS::Nova::KeyPair with save_private_key) "
            "and output it as private_key. Stacks adopted from stackamole keep their key."), key_type)
    elif key_type:
        out.note(ERROR, "stack_key_type", "must be rsa, ed25519 or empty", key_type)


def _hooks(legacy: Mapping[str, Any], out: _Out) -> None:
    if not legacy.get("hook_script"):
        return  # events without a script ran nothing
    events = legacy.get("hook_events") or {}
    ran_on = ", ".join(e for e in ("suspend", "resume", "delete") if events.get(e, True)) or "no event"
    out.note(DROPPED, "hook_script", "not converted: labxblock's lifecycle scripts run in the lab before "
             "a suspend and after a resume (README, Lifecycle scripts); move what it did there by hand "
             f"(it ran on: {ran_on})",
             legacy["hook_script"])


def _feedback(legacy: Mapping[str, Any], out: _Out) -> None:
    label = legacy.get("progress_check_label")
    if label and label != DEFAULT_CHECK_LABEL:
        out.values["check_label"] = label
    if "show_feedback" in legacy or "show_hints_on_error" in legacy:
        feedback = legacy.get("show_feedback") is not False
        hints = legacy.get("show_hints_on_error") is not False
        out.values["check_feedback"] = "none" if not feedback else ("full" if hints else "score")
    heading = legacy.get("progress_check_result_heading")
    if heading and heading != DEFAULT_RESULT_HEADING:
        out.note(DROPPED, "progress_check_result_heading",
                 "no equivalent: labxblock's check result has no heading of the author's choosing", heading)


def _fullscreen(legacy: Mapping[str, Any], out: _Out, inherit: bool) -> None:
    value = legacy.get("enable_fullscreen")
    if value is None:
        return
    text = str(value).strip().lower()
    if text in ("true", "false"):
        out.values["fullscreen"] = text == "true"
    elif text == "inherit":
        out.values["fullscreen"] = inherit  # the old site's setting, which labxblock does not read
    else:
        out.note(ERROR, "enable_fullscreen", "must be true, false or inherit", value)


def _ports(legacy: Mapping[str, Any], out: _Out) -> None:
    ports = legacy.get("ports")
    if ports:
        out.values["ports"] = [dict(p) if isinstance(p, Mapping) else p for p in ports]


def _providers(legacy: Mapping[str, Any], out: _Out) -> None:
    converted = []
    for p in legacy.get("providers") or []:
        if not isinstance(p, Mapping) or not p.get("name"):
            out.note(ERROR, "providers", "each provider needs a name", p)
            continue
        item: dict[str, Any] = {"name": str(p["name"])}
        capacity = p.get("capacity")
        if capacity not in (None, "", "None", UNLIMITED):
            try:
                item["capacity"] = int(capacity)
            except (TypeError, ValueError):
                out.note(ERROR, "providers", f"provider {p['name']}: capacity is not a whole number",
                         capacity)
                continue
            if item["capacity"] < 0:  # the old block's scheduler took any negative for "no limit"
                del item["capacity"]
        for key in ("template", "environment"):
            if p.get(key) not in (None, "", "None"):
                item[key] = str(p[key])
        converted.append(item)
    if converted:
        out.values["providers"] = converted
    old = legacy.get("provider")
    if old and converted:
        out.note(DROPPED, "provider", "ignored because <provider> elements are given, as the old block did",
                 old)
    elif old:
        out.values["providers"] = [{"name": str(old)}]
        out.note(CHANGED, "provider", "the deprecated attribute became a <provider> element", old)


def _checks(legacy: Mapping[str, Any], out: _Out, timeout: int | None) -> None:
    tests = [t for t in legacy.get("tests") or [] if isinstance(t, str) and t.strip()]
    if not tests:
        return
    extra = {} if timeout is None else {"timeout": timeout}
    out.values["checks"] = [{"name": "", "script": script, **extra} for script in tests]
    limit = f"{timeout} s each" if timeout is not None else "labxblock's default of 30 s each"
    out.note(CHANGED, "tests", f"{len(tests)} test(s) became checks, scripts unchanged, equal weight, "
             f"timeout {limit} (the old block allowed the site's remote_exec_timeout, 300 s by default)")
