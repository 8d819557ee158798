"""LabBlock's fields, as a mixin, plus the names the editor, OLX and validation share.

Display names and help texts are marked with ``_`` (a no-op) so that string
extraction finds them; the Studio editor translates them through the i18n service.
"""

from __future__ import annotations

from xblock.core import XBlockMixin
from xblock.fields import Boolean, Float, Integer, List, Scope, String


def _(text: str) -> str:
    """Mark ``text`` for extraction; translated later, at render time."""
    return text


PROTOCOLS = ("ssh", "rdp", "vnc")
KEY_TYPES = ("ed25519", "rsa")
RDP_SECURITY = ("any", "nla", "tls", "rdp")  # guacd's `security` values a lab may use
FEEDBACK = ("full", "score", "none")

# Fields stored as OLX attributes (simple values), in export order.
SCALAR_FIELDS = (
    "display_name",
    "weight",
    "template",
    "environment",
    "stack_user",
    "protocol",
    "key_type",
    "lab_group",
    "launch_timeout",
    "suspend_timeout",
    "delete_timeout",
    "read_only",
    "rdp_security",
    "rdp_ignore_cert",
    "hidden",
    "fullscreen",
    "check_label",
    "check_feedback",
    "time_budget_hours",
)
# Fields stored as child elements.
LIST_FIELDS = ("providers", "ports", "checks", "hooks")
TIMEOUT_FIELDS = ("launch_timeout", "suspend_timeout", "delete_timeout")
# What one entry of ``checks`` may hold, and its limits.
CHECK_KEYS = ("name", "script", "weight", "hint", "host", "timeout")
CHECK_TIMEOUT_DEFAULT = 30
CHECK_TIMEOUT_MAX = 600
# Lifecycle scripts: when each kind runs (labs.hooks), what one entry may hold, how many of a kind.
HOOK_KINDS = ("setup", "after_resume", "before_suspend")
HOOK_KEYS = ("kind", "name", "script", "timeout", "host")
HOOKS_PER_KIND = 5
TIME_BUDGET_HOURS_MAX = 100_000


class LabFieldsMixin(XBlockMixin):
    """Everything an author sets on a lab, and the little a learner's view remembers."""

    display_name = String(
        display_name=_("Display name"), default="Lab", scope=Scope.settings,
        help=_("The name learners see for this component."),
    )
    weight = Float(
        display_name=_("Weight"), default=1.0, scope=Scope.settings, values={"min": 0},
        help=_("How many points this lab's checks are worth in the gradebook."),
    )
    template = String(
        display_name=_("Template"), default="", scope=Scope.settings, multiline_editor=True,
        help=_(
            "The Heat template: a course file (such as /static/lab.yaml) or the template text itself. "
            "A value with a line break is template text; anything else is a file name."
        ),
    )
    environment = String(
        display_name=_("Environment"), default="", scope=Scope.settings, multiline_editor=True,
        help=_("Optional Heat environment: a course file or the environment text itself."),
    )
    stack_user = String(
        display_name=_("Lab user"), default="training", scope=Scope.settings,
        help=_("The user name the terminal logs in as."),
    )
    protocol = String(
        display_name=_("Protocol"), default="ssh", scope=Scope.settings,
        values=[{"display_name": p.upper(), "value": p} for p in PROTOCOLS],
        help=_("How the lab is shown: a terminal (SSH) or a desktop (RDP, VNC)."),
    )
    key_type = String(
        display_name=_("Key type"), default="ed25519", scope=Scope.settings,
        values=[{"display_name": k, "value": k} for k in KEY_TYPES],
        help=_("Type of the SSH key the template outputs; ed25519 unless the lab needs RSA."),
    )
    lab_group = String(
        display_name=_("Lab group"), default="", scope=Scope.settings,
        help=_(
            "Components with the same group share one lab. Empty: components of this course "
            "that use the same template share one lab."
        ),
    )
    providers = List(
        display_name=_("Providers"), default=[], scope=Scope.settings,
        help=_(
            'Clouds to use, in order of preference, as a JSON list: [{"name": "default", '
            '"capacity": 20, "template": "/static/lab.yaml", "environment": ""}]. '
            "Empty: the default provider with the template above."
        ),
    )
    ports = List(
        display_name=_("Ports"), default=[], scope=Scope.settings,
        help=_('Ports learners may choose between, as a JSON list: [{"name": "server", "number": 22}].'),
    )
    checks = List(
        display_name=_("Check scripts"), default=[], scope=Scope.settings,
        help=_(
            'Scripts run inside the lab to check progress, as a JSON list: [{"name": "file created", '
            '"script": "test -f ~/done", "weight": 1, "hint": "Create the file done in your home.", '
            '"host": "", "timeout": 30}]. Exit status 0 passes. Only name and script are required; '
            "weight (> 0) sets the check's share of the score; the hint is shown when it fails "
            "(else its error output); host runs it on a server behind the lab; timeout is in seconds."
        ),
    )
    hooks = List(
        display_name=_("Lifecycle scripts"), default=[], scope=Scope.settings,
        help=_(
            'Scripts run inside the lab at moments of its life, as a JSON list: [{"kind": "before_suspend", '
            '"name": "stop the database", "script": "sudo systemctl stop postgresql", "timeout": 30}]. '
            "kind: setup (once, after the lab first starts, before the learner is let in), after_resume "
            "(after each resume, before the learner is let in) or before_suspend (before each suspend). "
            "Only kind and script are required; up to 5 of each kind, run in order; timeout is in "
            "seconds; host runs it on a server behind the lab. A script that fails or runs out of time "
            "is logged for the course team and never stops the lab."
        ),
    )
    time_budget_hours = Float(
        display_name=_("Lab time per learner (hours)"), default=None, scope=Scope.settings,
        help=_(
            "Hours each learner's lab may be up in this course run (suspended time does not count). "
            "When they are used up the lab is paused and the learner told so; course staff can grant "
            "more. Empty: the site's budget, if it has one. Components sharing a lab share its time: "
            "the smallest of their budgets counts."
        ),
    )
    launch_timeout = Integer(
        display_name=_("Launch timeout"), default=None, scope=Scope.settings,
        help=_("Seconds a launch may take before it fails. Empty: the site's setting."),
    )
    suspend_timeout = Integer(
        display_name=_("Suspend timeout"), default=None, scope=Scope.settings,
        help=_("Idle seconds before the lab is suspended. Empty: the site's setting."),
    )
    delete_timeout = Integer(
        display_name=_("Delete timeout"), default=None, scope=Scope.settings,
        help=_("Seconds of disuse before the lab is deleted. Empty: the site's setting."),
    )
    read_only = Boolean(
        display_name=_("Read only"), default=False, scope=Scope.settings,
        help=_("Learners watch the lab but cannot type into it."),
    )
    rdp_security = String(
        display_name=_("RDP security"), default="any", scope=Scope.settings,
        values=[{"display_name": s, "value": s} for s in RDP_SECURITY],
        help=_("RDP labs only: how the connection to the desktop is secured. any: negotiated with the lab."),
    )
    rdp_ignore_cert = Boolean(
        display_name=_("Accept the lab's RDP certificate"), default=True, scope=Scope.settings,
        help=_(
            "RDP labs only: each new lab has a new self-signed certificate, so it is accepted as it is. "
            "When the template outputs rdp_cert_fingerprints, only those certificates are accepted."
        ),
    )
    hidden = Boolean(
        display_name=_("Hidden"), default=False, scope=Scope.settings,
        help=_(
            "Launch the lab in the background without showing it, so it is ready when the "
            "learner reaches the unit that shows it: place this hidden copy (same template or lab "
            "group) in the unit before. Only a lab the learner has not got is started, and only "
            "a few per learner and hour (a site setting)."
        ),
    )
    fullscreen = Boolean(
        display_name=_("Allow full screen"), default=True, scope=Scope.settings,
        help=_("Show a link that opens the lab in a window of its own."),
    )
    check_label = String(
        display_name=_("Check button label"), default="", scope=Scope.settings,
        help=_('The label of the check button. Empty: "Check progress".'),
    )
    check_feedback = String(
        display_name=_("Check feedback"), default="full", scope=Scope.settings,
        values=[{"display_name": f, "value": f} for f in FEEDBACK],
        help=_("What a check shows: full (score and hints), score (score only), none."),
    )
    instructions = String(
        display_name=_("Instructions"), default="", scope=Scope.content, multiline_editor="html",
        help=_("Shown above the lab. Nested HTML components are shown too."),
    )

    # The learner's own choice of port; None: the first port, or the protocol's default.
    selected_port = Integer(default=None, scope=Scope.user_state)
    # The learner's last check score in [0, 1]; None until a check has been scored.
    raw_earned = Float(default=None, scope=Scope.user_state)
    # The check run whose score was last published, so each run is published once.
    graded_run = Integer(default=None, scope=Scope.user_state)
    # The learner completed the lab (custom completion was published), so it is published once.
    completed = Boolean(default=False, scope=Scope.user_state)

    editable_fields = (*SCALAR_FIELDS, *LIST_FIELDS, "instructions")
