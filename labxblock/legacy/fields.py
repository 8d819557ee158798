"""What stackamole-xblock 9.5.0 and hastexo-xblock 8.7.0 store, and where each piece goes here.

Read from the packages' own sources (``StackamoleXBlock``/``HastexoXBlock`` fields,
their ``parse_xml``/``add_xml_to_node``, and the ``Stack`` model). The two blocks
have the same fields; hastexo differs in two defaults and in having children.
docs/legacy-fields.md shows these tables for people; a test keeps it in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xblock.fields import Boolean, Dict, Field, Float, Integer, List, Scope, String

DIALECTS = ("stackamole", "hastexo")
# stackamole ran each test with the site's ``remote_exec_timeout`` (default 300 s); tests have no own value.
LEGACY_CHECK_TIMEOUT = 300
DEFAULT_CHECK_LABEL = "Check Progress"
DEFAULT_RESULT_HEADING = "Progress check result"


@dataclass(frozen=True)
class LegacyField:
    """One field of the old block: its type, scope and default, its OLX form, and its fate here."""

    name: str
    kind: type[Field]
    scope: str  # "settings", "content" or "user_state"
    default: Any
    olx: str  # how it appears in OLX ("" for user state: never exported)
    maps_to: str  # the labxblock field(s) it becomes; "" when there is no equivalent
    note: str = ""  # what changes on the way, or why nothing can carry it

    def default_for(self, dialect: str) -> Any:
        return DIALECT_DEFAULTS.get((dialect, self.name), self.default)


ATTR = "attribute"
FIELDS: tuple[LegacyField, ...] = (
    LegacyField("display_name", String, "settings", "Stackamole XBlock", ATTR, "display_name"),
    LegacyField("weight", Float, "settings", 1, ATTR, "weight"),
    LegacyField("stack_user_name", String, "settings", "", ATTR, "stack_user",
                "empty: labxblock's default user, training"),
    LegacyField("stack_protocol", String, "settings", "ssh", ATTR, "protocol"),
    LegacyField("stack_template_path", String, "settings", None, ATTR, "template",
                "the same course file name (both read it from the course's files)"),
    LegacyField("launch_timeout", Integer, "settings", None, ATTR + ' ("" = none)', "launch_timeout"),
    LegacyField("suspend_timeout", Integer, "settings", None, ATTR + ' ("" = none)', "suspend_timeout"),
    LegacyField("stack_key_type", String, "settings", "", ATTR + ": rsa, ed25519 or empty", "key_type",
                "set: stackamole made the key pair itself and registered it in Nova under the stack's "
                "name; labxblock expects the template to create the key and output it as private_key"),
    LegacyField("hook_script", String, "settings", None, ATTR + ": a course file name", "",
                "not converted: labxblock's lifecycle scripts (before a suspend, after a resume) run in the "
                "lab; move what it did there by hand"),
    LegacyField("delete_age", String, "settings", None, ATTR + ": seconds as text", "delete_timeout"),
    LegacyField("read_only", Boolean, "settings", False, ATTR + ": True/False", "read_only"),
    LegacyField("hidden", Boolean, "settings", False, ATTR + ": True/False", "hidden"),
    LegacyField("progress_check_label", String, "settings", DEFAULT_CHECK_LABEL, ATTR, "check_label",
                "the default label is left empty: labxblock's own (translated) \"Check progress\""),
    LegacyField("show_feedback", Boolean, "settings", True, ATTR + ": True/False", "check_feedback",
                "False: check_feedback none"),
    LegacyField("show_hints_on_error", Boolean, "settings", True, ATTR + ": True/False", "check_feedback",
                "with show_feedback: True gives full (score and hints), False gives score"),
    LegacyField("progress_check_result_heading", String, "settings", DEFAULT_RESULT_HEADING, ATTR, "",
                "no equivalent: labxblock's check result has no heading of the author's choosing"),
    LegacyField("enable_fullscreen", String, "settings", "inherit", ATTR + ": true, false or inherit",
                "fullscreen", "inherit: labxblock's default (the link is shown)"),
    LegacyField("hook_events", Dict, "settings", None,
                "<hook_events suspend= resume= delete=/> in the block's own file; "
                "<option:hook_events> inline",
                "", "no equivalent (goes with hook_script)"),
    LegacyField("ports", List, "settings", [], "<port name= number=/> children", "ports"),
    LegacyField("providers", List, "settings", [],
                "<provider name= capacity= template= environment=/> children", "providers",
                "capacity -1 (or none) becomes no capacity: unlimited; 0 still means none"),
    LegacyField("tests", List, "content", [], "<test> children, the script as CDATA", "checks",
                f"one check per test, named Check 1, 2…, equal weight; timeout {LEGACY_CHECK_TIMEOUT} s "
                "(stackamole's default remote_exec_timeout) unless the converter is told otherwise"),
    LegacyField("provider", String, "settings", "", ATTR + " (deprecated)", "providers",
                "used only when there is no <provider> element, as stackamole did"),
    # Learner state: never in OLX or a course export.
    LegacyField("stack_run", String, "user_state", "", "", "", "no equivalent (derived again)"),
    LegacyField("stack_name", String, "user_state", "", "", "",
                "no equivalent: the lab row holds the stack name (see labxblock_migrate_legacy_stacks)"),
    LegacyField("stack_provider", String, "user_state", "", "", "", "no equivalent: the lab row holds it"),
    LegacyField("check_id", String, "user_state", "", "", "", "no equivalent: check runs are rows"),
    LegacyField("check_timestamp", Integer, "user_state", None, "", "", "no equivalent: check runs are rows"),
    LegacyField("check_status", Dict, "user_state", None, "", "", "no equivalent: check runs are rows"),
    LegacyField("score", Dict, "user_state", None, "", "raw_earned",
                "served under the old name, the block counts it as the learner's last score"),
)
BY_NAME = {f.name: f for f in FIELDS}
SETTINGS = tuple(f for f in FIELDS if f.scope != "user_state")
DIALECT_DEFAULTS: dict[tuple[str, str], Any] = {
    ("hastexo", "display_name"): "hastexo XBlock",
    ("hastexo", "stack_user_name"): None,
}
# Child elements of the old OLX that carry fields (not child blocks).
FIELD_ELEMENTS = ("test", "port", "provider", "hook_events")
# hastexo-xblock has children (HTML, video, PDF, markdown shown with the lab); stackamole has none.
HAS_CHILDREN = {"stackamole": False, "hastexo": True}


def xblock_field(spec: LegacyField, dialect: str) -> Field:
    """The XBlock field the old block declared, so content it stored reads back unchanged."""
    scope = {"settings": Scope.settings, "content": Scope.content, "user_state": Scope.user_state}[spec.scope]
    help_text = f"stackamole/hastexo field; here: {spec.maps_to or 'not used'}. {spec.note}".strip()
    return spec.kind(default=spec.default_for(dialect), scope=scope, help=help_text)


@dataclass(frozen=True)
class StackColumn:
    """One column of the old package's ``Stack`` model (table ``stackamole_stack`` or ``hastexo_stack``)."""

    name: str
    kind: str
    maps_to: str
    note: str = ""


STACK_TABLES = ("stackamole_stack", "hastexo_stack")  # stackamole's migration 0013 renamed the latter
STACK_COLUMNS: tuple[StackColumn, ...] = (
    StackColumn("id", "integer", "", "named in the adoption event"),
    StackColumn("name", "varchar(64)", "Lab.stack_name", "kept as is: the cloud knows the stack by it"),
    StackColumn("student_id", "varchar(40)", "", "the anonymous user id; learner_id is used instead"),
    StackColumn("course_id", "varchar(50)", "Lab.course_run"),
    StackColumn("run", "varchar(50)", "", "<course>_<run>, stackamole's run parameter"),
    StackColumn("provider", "varchar(32)", "Lab.provider",
                "the only provider asked: labxblock's of that name, or the one --provider OLD=NAME names"),
    StackColumn("providers", "JSON text", "", "not needed: every adopted stack is the course run's lab "
                "stackamole (the lab group converted blocks have), one per learner as before"),
    StackColumn("hook_script", "varchar(256)", "", "no equivalent"),
    StackColumn("hook_events", "JSON text", "", "no equivalent"),
    StackColumn("protocol", "varchar(32)", "Lab.protocol"),
    StackColumn("port", "integer", "Lab.port"),
    StackColumn("status", "varchar(32)", "", "shown; the cloud's state decides"),
    StackColumn("error_msg", "varchar(256)", "", "not carried"),
    StackColumn("ip", "char(39)", "Lab.ip", "when the cloud's outputs lack public_ip"),
    StackColumn("user", "varchar(32)", "Lab.stack_user"),
    StackColumn("launch_task_id", "varchar(40)", "", "not carried"),
    StackColumn("launch_timestamp", "datetime", "Lab.launched_at",
                "a stack of that name created after it is not the row's"),
    StackColumn("suspend_timestamp", "datetime", "Lab.suspended_at"),
    StackColumn("suspend_by", "datetime", "", "labxblock computes idleness from its own keepalives"),
    StackColumn("created_on", "datetime", "", "a stack of that name created before it is not the row's"),
    StackColumn("delete_age", "integer", "", "delete_by already holds its effect"),
    StackColumn("delete_by", "datetime", "Lab.delete_by", "kept when in the future"),
    StackColumn("key", "text, plaintext", "Lab.private_key", "encrypted; when the outputs lack private_key"),
    StackColumn("password", "varchar(128), plaintext", "Lab.password",
                "encrypted; when the outputs lack password"),
    StackColumn("learner_id", "integer (auth_user)", "Lab.learner", "a row without one is not adopted"),
)
