"""\"Test this lab\" in Studio: the author's own lab from the saved settings, its phases, outputs and checks.

Handlers here run only in Studio's author mode (``studio_only``) and only for a user
with write access to the course in Studio (``compat.can_edit_course``: Studio's preview
handler itself asks only for a login); the lab itself is ``labs.testlabs``'s. What the
author sees: the phases with the time each was reached, which of the contract's outputs
the lab gave (never a value), a terminal (the block's own ticket path) and the checks
with their full results; nothing of it is graded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from web_fragments.fragment import Fragment
from xblock.core import XBlock
from xblock.utils.resources import ResourceLoader

from labxblock import authoring, compat, messages
from labxblock.studio import studio_only

loader = ResourceLoader(__name__)


def _(text: str) -> str:
    return text  # marks for extraction; translated when shown


# The test lab's state in the author's words (messages.PHASES are the learner's).
STATUS_LABELS = {
    "queued": _("Waiting for the cloud to take the test lab"), "creating": _("Creating the test lab"),
    "starting": _("Starting the test lab"), "ready": _("The test lab is ready"),
    "suspending": _("Pausing the test lab"), "suspended": _("The test lab is paused"),
    "resuming": _("Waking the test lab up"), "deleting": _("Deleting the test lab"),
    "rebuilding": _("Rebuilding the test lab from the saved settings"),
    "deleted": _("No test lab running"), "failed": _("The test lab could not be started"),
}
PHASE_LABELS = {
    "queued": _("Queued"), "created": _("Stack created"), "outputs_read": _("Outputs read"),
    "port_reachable": _("Port reachable"),
}
OUTPUT_STATES = {
    "present": _("present"), "missing": _("missing"),
    "recorded": _("not in the template: recorded when the lab first answered"),
}
DISABLED = _("Test labs are turned off on this site.")
NO_EDIT_ACCESS = _("Only the course team can test this lab: it needs edit access to this course in Studio.")
OFF_NOTE = _("Test labs are turned off on this site. Preview the unit in the LMS to try this lab.")
CAPPED = _("This course already has {count} test labs running, the most this site allows ({cap}). "
           "Stop one, or wait until one is deleted, then try again.")
WILL_DELETE = _("Deleted automatically in {minutes} min, or when you press Stop.")
TIMEOUT_NOTE = _("A test lab is built from the settings as saved. It is yours alone (learners never see "
                 "it), is not graded, and is deleted {minutes} minutes after its launch or when you "
                 "press Stop.")
# Strings the author view's JavaScript shows; keep in step with gettext("…") in labxblock-author.js.
JS_STRINGS = (_("required"), _("optional"), _("{seconds} s"), _("not yet"), _("Cannot reach the server."))


def _labs() -> Any:
    from labxblock.labs import testlabs  # models need Django's apps ready: imported when a handler runs

    return testlabs


class TestLabMixin:
    """The author's test lab, for LabBlock (which supplies ``_spec``, ``_values``, ``_terminal``…)."""

    def _test_context(self) -> dict[str, Any]:
        """What the author view's test panel needs from the site's settings."""
        from labxblock.conf import LabSettingsError, get_settings

        try:
            settings = get_settings()
        except LabSettingsError:  # the operator's log says why
            return {"test_enabled": False, "test_off": self.ugettext(messages.SITE_NOT_CONFIGURED)}
        minutes = round(settings.studio_test_lab_timeout / 60)
        return {"test_enabled": settings.studio_test_labs, "test_off": self.ugettext(OFF_NOTE),
                "test_note": self.ugettext(TIMEOUT_NOTE).format(minutes=minutes)}

    def add_test_script(self, frag: Fragment) -> None:
        """The test panel's script; it starts Studio's own script for the instructions first, if any."""
        nested, nested_args = frag.js_init_fn, frag.json_init_args
        frag.add_css(loader.load_unicode("static/css/labxblock-author.css"))
        frag.add_javascript(loader.load_unicode("static/js/labxblock-author.js"))
        frag.initialize_js("LabXBlockAuthor", {
            "nested_init": nested, "nested_args": nested_args,
            "i18n": messages.js_catalogue(self.ugettext, JS_STRINGS),
        })

    def _test_key(self) -> str:
        return _labs().lab_key(str(self.scope_ids.usage_id))

    def _test_refusal(self, handler: str) -> tuple[Any, dict | None]:
        """(the viewer, None) for an author who may edit this course in Studio, else (…, the refusal)."""
        viewer = compat.viewer(self)
        if viewer is None:
            return None, messages.error_answer(messages.NOT_SIGNED_IN, self.ugettext)
        # Studio's preview handler asks only for a login: the course's write access is checked here.
        if not compat.can_edit_course(self, viewer.real_user):
            return viewer, messages.error_answer(NO_EDIT_ACCESS, self.ugettext)
        return viewer, self._unconfigured(handler)

    @XBlock.json_handler
    @studio_only
    def test_launch(self, data: dict, suffix: str = "") -> dict:
        """Launch (or rebuild from the saved settings) the author's test lab."""
        from labxblock import labs

        viewer, refused = self._test_refusal("test_launch")
        if refused is not None:
            return refused
        testlabs = _labs()
        try:
            spec = self._spec(labs, compat.course_run(self), self._test_key())
        except authoring.LabConfigError:
            return messages.error_answer(messages.NOT_CONFIGURED, self.ugettext)
        try:
            testlabs.launch(viewer.user, spec, actor=f"author:{viewer.real_user.pk}")
        except testlabs.TestLabRefused as exc:
            if exc.reason == exc.DISABLED:
                return messages.error_answer(DISABLED, self.ugettext)
            return messages.error_answer(CAPPED, self.ugettext, count=exc.count, cap=exc.cap)
        return self._test_answer(viewer)

    @XBlock.json_handler
    @studio_only
    def test_status(self, data: dict, suffix: str = "") -> dict:
        """The test lab's status, phases and outputs (present or missing)."""
        viewer, refused = self._test_refusal("test_status")
        return refused if refused is not None else self._test_answer(viewer)

    @XBlock.json_handler
    @studio_only
    def test_stop(self, data: dict, suffix: str = "") -> dict:
        """Delete the test lab now."""
        viewer, refused = self._test_refusal("test_stop")
        if refused is not None:
            return refused
        _labs().stop(viewer.user, compat.course_run(self), self._test_key(),
                     actor=f"author:{viewer.real_user.pk}")
        return self._test_answer(viewer)

    @XBlock.json_handler
    @studio_only
    def test_terminal(self, data: dict, suffix: str = "") -> dict:
        """The iframe URL of the test lab's terminal: the learners' ticket path, for the author's lab."""
        _, refused = self._test_refusal("test_terminal")
        return refused if refused is not None else self._terminal(self._test_key())

    @XBlock.json_handler
    @studio_only
    def test_check(self, data: dict, suffix: str = "") -> dict:
        """Run the block's checks in the test lab (never graded); the page polls ``test_check_result``."""
        from labxblock.labs import checking

        viewer, refused = self._test_refusal("test_check")
        if refused is not None:
            return refused
        specs = authoring.check_specs(self._values())
        if not specs:
            return messages.error_answer(messages.NO_CHECKS, self.ugettext)
        key = self._test_key()
        checking.request_check(viewer.user, compat.course_run(self), key, key, specs,
                               actor=f"author:{viewer.real_user.pk}", weight=None)
        return self._test_checks(viewer)

    @XBlock.json_handler
    @studio_only
    def test_check_result(self, data: dict, suffix: str = "") -> dict:
        """The test lab's check runs, with every check's result and hint."""
        viewer, refused = self._test_refusal("test_check_result")
        return refused if refused is not None else self._test_checks(viewer)

    def _test_checks(self, viewer: compat.Viewer) -> dict:
        from labxblock.labs import checking

        runs = checking.latest_runs(viewer.user, compat.course_run(self), self._test_key())
        return messages.check_answer(runs, "full", self.ugettext)  # the author sees all, whatever learners do

    def _test_answer(self, viewer: compat.Viewer) -> dict:
        gettext = self.ugettext
        now = datetime.now(UTC)
        shown = _labs().view(viewer.user, compat.course_run(self), self._test_key())
        if shown is None:
            return {**messages.status_answer(None, now, gettext), "label": gettext(STATUS_LABELS["deleted"]),
                    "phases": [], "outputs": [], "deletes": None}
        answer = messages.status_answer(shown.status, now, gettext, staff=True)
        answer["label"] = gettext(STATUS_LABELS[answer["phase"]])
        answer["phases"] = [{"name": name, "label": gettext(PHASE_LABELS[name]), "seconds": seconds}
                            for name, seconds in shown.phases]
        answer["outputs"] = [{"name": name, "required": required, "state": state,
                              "label": gettext(OUTPUT_STATES[state])}
                             for name, required, state in shown.outputs]
        up = shown.status.desired.value == "up" and shown.delete_by is not None
        minutes = max(0, round((shown.delete_by - now).total_seconds() / 60)) if up else None
        answer["deletes"] = gettext(WILL_DELETE).format(minutes=minutes) if up else None
        return answer
