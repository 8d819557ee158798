"""Course staff's panel on a lab block: the lab's learners, and suspend, reset, extend, grant lab time,
open read-only.

Mixed into LabBlock. Every handler here answers course staff only (the runtime's
``user_is_staff``: global staff or a course staff role in edx-platform), never while
they masquerade as a learner; anyone else gets an error and no data. The panel has its
own template and script, so the learner's page is unchanged for learners.
"""

from __future__ import annotations

import logging
from typing import Any

from web_fragments.fragment import Fragment
from xblock.core import XBlock
from xblock.utils.resources import ResourceLoader

from labxblock import analytics, compat, messages
from labxblock.studio import lms_only

log = logging.getLogger(__name__)
loader = ResourceLoader(__name__)
_ = messages._
STAFF_ONLY = _("This is for course staff.")
NO_SUCH_LEARNER_LAB = _("That learner has no such lab here (any more).")
BAD_HOURS = _("Give a number of hours above 0 and at most {max}.")
STAFF_JS_STRINGS = (
    _("Learner"), _("State"), _("Last seen"), _("Up this month"), _("Lab time left"), _("Last check"),
    _("Actions"), _("Grant time"), _("{left} h of {budget} h"), _("How many hours of lab time to grant?"),
    _("Suspend"), _("Reset"), _("Extend 7 days"), _("Open read-only"), _("Previous"), _("Next"),
    _("Page {page} of {pages} ({total} learners)"), _("{hours} h"), _("never"),
    _("Reset {username}'s lab? Everything in it is deleted and a fresh one is built."),
    _("No learner has opened this lab yet."), _("Done."), _("Something went wrong. Please try again."),
)
EXTEND_DAYS = 7
GRANT_HOURS_MAX = 1000  # per grant


def _labs() -> Any:
    from labxblock import labs

    return labs


def _staff() -> Any:
    from labxblock.labs import staff  # as block._labs(): models need Django's apps ready

    return staff


class LabStaffMixin:
    """Handlers and panel for course staff (see the module docstring)."""

    def _staff_viewer(self) -> compat.Viewer | None:
        viewer = compat.viewer(self)
        if viewer is None or not viewer.is_staff or viewer.masquerading:
            return None
        return viewer

    def add_staff_panel(self, frag: Fragment, viewer: compat.Viewer | None) -> None:
        """For course staff: the panel below the lab, and the script that drives both."""
        if viewer is None or not viewer.is_staff or viewer.masquerading:
            return
        frag.add_content(loader.render_django_template("templates/staff_panel.html", {
            "dom_id": self._dom_id(), "page_size": _staff().PAGE_SIZE,  # type: ignore[attr-defined]
        }, i18n_service=self.runtime.service(self, "i18n")))  # type: ignore[attr-defined]
        frag.add_javascript(loader.load_unicode("static/js/labxblock_staff.js"))
        args = dict(frag.json_init_args or {})
        args["staff_i18n"] = {msgid: self.ugettext(msgid) for msgid in STAFF_JS_STRINGS}  # type: ignore
        frag.initialize_js("LabXBlockStaff", args)

    def _staff_refusal(self) -> dict | None:
        if self._staff_viewer() is None:
            return messages.error_answer(STAFF_ONLY, self.ugettext)  # type: ignore[attr-defined]
        return None

    def _where(self) -> tuple[str, str]:
        return compat.course_run(self), self._lab_key()  # type: ignore[attr-defined]

    @XBlock.json_handler
    @lms_only
    def staff_learners(self, data: dict, suffix: str = "") -> dict:
        """A page of this lab's learners: ``{"page": n}``."""
        if (refused := self._staff_refusal()) is not None:
            return refused
        from django.utils import timezone

        page = data.get("page") if isinstance(data.get("page"), int) else 1
        found = _staff().learners(*self._where(), self._usage_key(), page=page,  # type: ignore[attr-defined]
                                  now=timezone.now())
        return {"learners": [row.as_json() for row in found.rows], "page": found.page, "pages": found.pages,
                "total": found.total}

    @XBlock.json_handler
    @lms_only
    def staff_action(self, data: dict, suffix: str = "") -> dict:
        """``{"lab_id": id, "action": "suspend" | "reset" | "extend" | "grant"}``, a grant with ``"hours"``:
        through the lifecycle, logged."""
        if (refused := self._staff_refusal()) is not None:
            return refused
        viewer = self._staff_viewer()
        lab_id, action = data.get("lab_id"), data.get("action")
        seconds = EXTEND_DAYS * 86400 if action == "extend" else None
        if action == "grant":
            hours = data.get("hours")
            number = isinstance(hours, int | float) and not isinstance(hours, bool)
            if not number or not 0 < hours <= GRANT_HOURS_MAX:
                return messages.error_answer(BAD_HOURS, self.ugettext, max=GRANT_HOURS_MAX)  # type: ignore
            seconds = round(hours * 3600)
        outcome = None
        if isinstance(lab_id, int) and isinstance(action, str):
            outcome = _staff().act(*self._where(), lab_id, action, actor=f"staff:{viewer.real_user.pk}",
                                   seconds=seconds)
        if outcome is None:
            return messages.error_answer(NO_SUCH_LEARNER_LAB, self.ugettext)  # type: ignore[attr-defined]
        if outcome.changed and action == "reset":
            analytics.publish(self, "reset", {"lab_key": self._where()[1], "lab_id": lab_id, "by_staff": True,
                                              "usage_id": self._usage_key()})  # type: ignore[attr-defined]
        return {"changed": bool(outcome.changed), "why": outcome.unchanged.get(lab_id, "")}

    @XBlock.json_handler
    @lms_only
    def staff_open(self, data: dict, suffix: str = "") -> dict:
        """A read-only terminal on a learner's ready lab, ``{"lab_id": id}``; the open is logged."""
        from labxblock import tickets
        from labxblock.conf import get_settings

        if (refused := self._staff_refusal()) is not None:
            return refused
        viewer = self._staff_viewer()
        settings = get_settings()
        if settings.terminal_mode == "guacamole-json" or not settings.gateway_url:
            return messages.error_answer(messages.TERMINAL_UNAVAILABLE, self.ugettext)  # type: ignore
        lab_id, actor = data.get("lab_id"), f"staff:{viewer.real_user.pk}"
        access = None
        try:  # the address and port are checked before any secret is read, as for the learner
            if isinstance(lab_id, int):
                access = _staff().open_read_only(*self._where(), lab_id, actor=actor,
                                                 port=self._port())  # type: ignore[attr-defined]
        except _labs().AddressRefused as exc:
            log.warning("labxblock: no read-only terminal for block %s: %s", self._usage_key(), exc)  # type: ignore
            return messages.error_answer(messages.ADDRESS_REFUSED, self.ugettext)  # type: ignore[attr-defined]
        if access is None:
            return messages.error_answer(messages.NOT_READY, self.ugettext)  # type: ignore[attr-defined]
        ticket = tickets.mint_ticket(
            settings.ticket_keys, learner_id=actor, stack_name=access.stack_name, protocol=access.protocol,
            host=access.host, port=access.port, username=access.username, private_key=access.private_key,
            password=access.password, host_key=access.host_key or None, read_only=True,
        )
        mode = "console" if settings.terminal_mode == "console" else "guac"
        from labxblock.block import _http  # the gateway's page URL, as the learner's terminal has it

        url = tickets.iframe_url(_http(settings.gateway_url), mode, ticket, stack_name=access.stack_name,
                                 read_only=True)
        return {"url": url}
