"""LabBlock: what authors place and learners open. Thin: renders, and turns requests into labs.py calls.

No queries, no tasks, no providers here: ``labs`` does the work, ``authoring``
checks what authors set, ``olx`` reads and writes OLX, ``messages`` holds the
learner's words, ``compat`` hides edx-platform.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nh3
from django.views.decorators.debug import sensitive_variables
from lxml import etree
from web_fragments.fragment import Fragment
from xblock.core import XBlock
from xblock.utils.resources import ResourceLoader
from xblock.utils.studio_editable import StudioEditableXBlockMixin
from xblock.validation import ValidationMessage

from labxblock import analytics, authoring, compat, messages, olx
from labxblock.authoring import LabConfigError
from labxblock.fields import LIST_FIELDS, SCALAR_FIELDS, LabFieldsMixin
from labxblock.legacy import olx as legacy_olx
from labxblock.scoring import LabScoringMixin
from labxblock.staff import LabStaffMixin
from labxblock.studio import NestedInstructionsMixin, lms_only
from labxblock.studio_testlab import TestLabMixin

log = logging.getLogger(__name__)
loader = ResourceLoader(__name__)


def _checking() -> Any:
    from labxblock.labs import checking  # as _labs(): models need Django's apps ready

    return checking


def _labs() -> Any:
    # Imported when a handler runs: labs imports models, which need Django's apps ready,
    # and the runtime imports this module while it loads block classes.
    from labxblock import labs

    return labs


@XBlock.needs("i18n", "user")
@XBlock.wants("mako")  # Studio's container markup for the nested instructions (studio.py)
class LabBlock(LabFieldsMixin, NestedInstructionsMixin, TestLabMixin, StudioEditableXBlockMixin,
               LabScoringMixin, LabStaffMixin, XBlock):
    """A learner's own lab (an OpenStack Heat stack), shown as a terminal or desktop in the page.

    Scoring and completion: ``scoring.py``; Studio (author mode, nested instructions): ``studio.py``;
    course staff's panel: ``staff.py``; the author's test lab: ``studio_testlab.py``.
    """

    has_children = True  # nested HTML components: instructions
    has_author_view = True
    i18n_js_namespace = "LabXBlockI18N"

    # --- views ---

    def student_view(self, context: dict | None = None) -> Fragment:
        """The learner's view: instructions, launch status, terminal and controls."""
        frag = Fragment()
        children = [self.runtime.render_child(self.runtime.get_block(c), "student_view", context)
                    for c in self.children]
        for child in children:
            frag.add_fragment_resources(child)
        banner = None
        viewer = compat.viewer(self)
        if viewer is not None and viewer.masquerading:
            banner = self.ugettext(messages.MASQUERADE).format(username=viewer.user.get_username())
        ports = [p for p in self.ports if isinstance(p, dict)]
        frag.add_content(loader.render_django_template("templates/student_view.html", {
            "block": self, "dom_id": self._dom_id(), "children": [c.content for c in children],
            "instructions": nh3.clean(self.instructions or ""), "has_checks": bool(self.checks),
            "ports": ports, "selected_port": self._port(), "banner": banner,
            "check_label": self.check_label or self.ugettext("Check progress"),
            "signed_in": viewer is not None,
        }, i18n_service=self.runtime.service(self, "i18n")))
        frag.add_css(loader.load_unicode("static/css/labxblock.css"))
        frag.add_javascript(loader.load_unicode("static/js/labxblock.js"))
        frag.initialize_js("LabXBlock", {
            "hidden": self.hidden, "fullscreen": self.fullscreen, "has_checks": bool(self.checks),
            "keepalive_seconds": self._keepalive_seconds(), "idle_seconds": self._idle_seconds(),
            "i18n": messages.js_catalogue(self.ugettext), "lab": self._lab_tag(),
        })
        self.add_staff_panel(frag, viewer)  # course staff only (staff.py)
        return frag

    def author_view(self, context: dict | None = None) -> Fragment:
        """Studio's preview: what the lab is made of, what to fix, the author's test lab, its instructions."""
        frag = Fragment(loader.render_django_template("templates/author_view.html", {
            "block": self, "dom_id": self._dom_id(),
            "sources": [{**vars(s), "inline": authoring.is_inline(s.template)}
                        for s in authoring.sources(self._values())],
            "problems": [p.text(self.ugettext) for p in self._problems()],
            "check_count": len(self.checks), "port_count": len(self.ports), **self._test_context(),
        }, i18n_service=self.runtime.service(self, "i18n")))
        frag.add_css(loader.load_unicode("static/css/labxblock.css"))
        self.add_author_children(frag, context)
        self.add_test_script(frag)
        return frag

    # --- Studio ---

    def _values(self, data: Any = None) -> dict[str, Any]:
        data = self if data is None else data
        return {name: getattr(data, name) for name in (*SCALAR_FIELDS, *LIST_FIELDS)}

    def _problems(self, data: Any = None) -> list[authoring.Problem]:
        """What the author should fix: authoring's checks, then the cloud's verdict on each template."""
        from labxblock import template_check  # the providers: only when Studio asks

        values = self._values(data)

        @functools.cache  # both checks read the same course files
        def read(path: str) -> str | None:
            return compat.read_course_asset(self, path)

        local = authoring.check(values, read=read, known_providers=compat.known_provider_names())
        return template_check.check(values, read=read, local=local)

    def validate_field_data(self, validation: Any, data: Any) -> None:
        """Only what cannot be stored blocks saving: each nested list must hold objects."""
        for name in self.object_list_fields:
            if not all(isinstance(item, dict) for item in getattr(data, name) or []):
                message = self.ugettext("{field} must be a JSON list of objects.").format(field=name)
                validation.add(ValidationMessage(ValidationMessage.ERROR, message))

    def validate(self) -> Any:
        """Warnings Studio shows on the component; authors may save first and fix later."""
        validation = super().validate()
        for problem in self._problems():
            validation.add(ValidationMessage(ValidationMessage.WARNING, problem.text(self.ugettext)))
        return validation

    # --- OLX ---

    # A ``<stackamole>``/``<hastexo>`` element is converted into labxblock's fields; a class serving
    # the old names (legacy/block.py) keeps the old fields instead.
    legacy_storage = False
    object_list_fields = LIST_FIELDS  # edited as JSON lists of objects in Studio

    @classmethod
    def parse_xml(cls, node: etree._Element, runtime: Any, keys: Any) -> LabBlock:
        if legacy_olx.dialect_of(node) is not None:
            values, child_nodes = legacy_olx.parse_for_block(node, runtime, keep_old=cls.legacy_storage)
        else:
            values, child_nodes = olx.parse(node)
        block = runtime.construct_xblock_from_class(cls, keys)
        for name, value in values.items():
            setattr(block, name, value)
        for child in child_nodes:
            runtime.add_node_as_child(block, child)
        return block

    def add_xml_to_node(self, node: etree._Element) -> None:
        node.tag = self.xml_element_name()
        node.set("xblock-family", self.entry_point)
        olx.export({name: getattr(self, name) for name in (*SCALAR_FIELDS, *LIST_FIELDS, "instructions")
                    if self.fields[name].is_set_on(self)}, node)
        self.add_children_to_node(node)

    # --- handlers (JSON) ---

    @XBlock.json_handler
    @lms_only
    def status(self, data: dict, suffix: str = "") -> dict:
        """The lab's status; with ``{"launch": true}`` also asks for it to be up (idempotent)."""
        answer = self._act("launch" if data.get("launch") else "status")
        self._complete_when_ready(answer)
        return answer

    @XBlock.json_handler
    @lms_only
    def reset(self, data: dict, suffix: str = "") -> dict:
        """Throw the lab away and start a fresh one (the page asked the learner first)."""
        return self._act("reset")

    @XBlock.json_handler
    @lms_only
    def retry(self, data: dict, suffix: str = "") -> dict:
        """Try again after a failure."""
        return self._act("retry")

    @XBlock.json_handler
    @lms_only
    def keepalive(self, data: dict, suffix: str = "") -> dict:
        """The learner is active: keep the lab from being suspended. One UPDATE."""
        viewer = compat.viewer(self)
        if viewer is None:
            return messages.error_answer(messages.NOT_SIGNED_IN, self.ugettext)
        if (unconfigured := self._unconfigured("keepalive")) is not None:
            return unconfigured
        alive = _labs().keepalive(
            viewer.user, compat.course_run(self), self._lab_key(),
            suspend_timeout=self.suspend_timeout, delete_timeout=self.delete_timeout,
        )
        return {"ok": alive}

    @XBlock.json_handler
    @lms_only
    def leave(self, data: dict, suffix: str = "") -> dict:
        """The page was hidden or closed: suspend the lab after a short grace, unless a keepalive comes."""
        viewer = compat.viewer(self)
        if viewer is None:
            return messages.error_answer(messages.NOT_SIGNED_IN, self.ugettext)
        if (unconfigured := self._unconfigured("leave")) is not None:
            return unconfigured
        return {"ok": _labs().leave(viewer.user, compat.course_run(self), self._lab_key())}

    @XBlock.json_handler
    @lms_only
    def choose_port(self, data: dict, suffix: str = "") -> dict:
        """Switch the terminal to another of the author's ports."""
        numbers = [p.get("number") for p in self.ports if isinstance(p, dict)]
        if data.get("port") not in numbers:
            return messages.error_answer(messages.NO_SUCH_PORT, self.ugettext)
        self.selected_port = data["port"]
        return {"port": self.selected_port}

    @XBlock.json_handler
    @lms_only
    @sensitive_variables()  # every local here and below: the lab's key and password pass through
    def terminal(self, data: dict, suffix: str = "") -> dict:
        """The iframe URL for a ready lab: a short-lived, single-use, encrypted ticket in its fragment."""
        return self._terminal(self._lab_key())

    @sensitive_variables()
    def _terminal(self, lab_key: str) -> dict:
        """The terminal answer for the viewer's lab ``lab_key`` (theirs, or the author's test lab)."""
        from labxblock import tickets
        from labxblock.conf import get_settings

        viewer = compat.viewer(self)
        if viewer is None:
            return messages.error_answer(messages.NOT_SIGNED_IN, self.ugettext)
        if (unconfigured := self._unconfigured("terminal")) is not None:
            return unconfigured
        settings = get_settings()
        json_mode = settings.terminal_mode == "guacamole-json"
        if not (settings.guacamole_url if json_mode else settings.gateway_url):
            return messages.error_answer(messages.TERMINAL_UNAVAILABLE, self.ugettext)
        labs = _labs()
        try:  # the address and port are checked before any secret is read
            access = labs.terminal_access(viewer.user, compat.course_run(self), lab_key, self._port())
        except labs.AddressRefused as exc:
            log.warning("labxblock: no terminal for block %s: %s", self._usage_key(), exc)
            refused = messages.BAD_PORT if isinstance(exc, labs.BadPort) else messages.ADDRESS_REFUSED
            return messages.error_answer(refused, self.ugettext)
        if access is None:
            return messages.error_answer(messages.NOT_READY, self.ugettext)
        if viewer.masquerading:  # staff at a learner's lab, in any mode: the lab's event log says who
            labs.record_staff_terminal(access.lab_id, actor=viewer.actor)
        rdp = None  # an RDP lab's certificate, security and resizing: the same in every mode
        if access.protocol == "rdp":
            rdp = tickets.rdp_options(security=self.rdp_security, ignore_cert=self.rdp_ignore_cert,
                                      cert_fingerprints=access.rdp_cert_fingerprints)
        if json_mode:
            return self._guacamole_json(settings, viewer, access, rdp)
        ticket = tickets.mint_ticket(
            settings.ticket_keys, learner_id=str(viewer.user.pk), stack_name=access.stack_name,
            protocol=access.protocol, host=access.host, port=access.port, username=access.username,
            private_key=access.private_key, password=access.password,
            host_key=getattr(access, "host_key", None), read_only=self.read_only,
            display=rdp, ttl=settings.ticket_ttl_seconds,
        )
        mode = "console" if settings.terminal_mode == "console" else "guac"
        url = tickets.iframe_url(_http(settings.gateway_url), mode, ticket, stack_name=access.stack_name,
                                 read_only=self.read_only)
        return {"url": url}

    @XBlock.json_handler
    @lms_only
    def check(self, data: dict, suffix: str = "") -> dict:
        """Start a run of the author's checks in the lab (one at a time); the page polls ``check_result``."""
        viewer = compat.viewer(self)
        if viewer is None:
            return messages.error_answer(messages.NOT_SIGNED_IN, self.ugettext)
        if (unconfigured := self._unconfigured("check")) is not None:
            return unconfigured
        specs = authoring.check_specs(self._values())
        if not specs:
            return messages.error_answer(messages.NO_CHECKS, self.ugettext)
        run = _checking().request_check(viewer.user, compat.course_run(self), self._lab_key(),
                                        self._usage_key(), specs, actor=viewer.actor, weight=self.weight)
        analytics.check_started(self, run, lab_key=self._lab_key())
        return self._check_result(viewer)

    @XBlock.json_handler
    @lms_only
    def check_result(self, data: dict, suffix: str = "") -> dict:
        """The latest runs; a newly finished run's score is published through the runtime now (scoring.py)."""
        viewer = compat.viewer(self)
        if viewer is None:
            return messages.error_answer(messages.NOT_SIGNED_IN, self.ugettext)
        return self._check_result(viewer)

    @sensitive_variables()  # the lab's key and password, and guacd's parameters holding them
    def _guacamole_json(self, settings: Any, viewer: compat.Viewer, access: Any, rdp: dict | None) -> dict:
        """The Guacamole web app's URL with a signed, encrypted, single-use login in its fragment.

        ``access``: from ``terminal_access``, its address and port checked already; ``rdp``: an RDP
        lab's certificate, security and resize options (``tickets.rdp_options``), as the gateway's.
        """
        from labxblock import guacamole_json

        try:
            parameters = guacamole_json.connection_parameters(
                protocol=access.protocol, host=access.host, port=access.port, username=access.username,
                private_key=access.private_key, password=access.password, host_key=access.host_key,
                read_only=self.read_only, options=rdp,
            )
        except ValueError as exc:  # the lab's host_key is no key: connecting unverified is no answer
            log.warning("labxblock: lab %s cannot be shown: %s", access.stack_name, exc)
            return messages.error_answer(messages.TERMINAL_UNAVAILABLE, self.ugettext)
        url = guacamole_json.lab_url(
            settings.guacamole_url, settings.guacamole_json_secret_key, learner=f"learner-{viewer.user.pk}",
            connection=access.stack_name, protocol=access.protocol, parameters=parameters,
            ttl_seconds=settings.ticket_ttl_seconds,
        )
        return {"url": url}

    def _check_result(self, viewer: compat.Viewer) -> dict:
        runs = _checking().latest_runs(viewer.user, compat.course_run(self), self._usage_key())
        # Staff viewing as a learner see the result but do not change the learner's grade: not while
        # they look, and not later through a run they started.
        latest = next((run for run in runs if not run.by_staff), None)
        if latest is not None and latest.state == "done" and latest.id != self.graded_run \
                and not viewer.masquerading:
            self._grade_run(latest)
        return messages.check_answer(runs, self.check_feedback, self.ugettext)

    def _act(self, action: str) -> dict:
        viewer = compat.viewer(self)
        if viewer is None:
            return messages.error_answer(messages.NOT_SIGNED_IN, self.ugettext)
        if (unconfigured := self._unconfigured(action)) is not None:
            return unconfigured
        labs = _labs()
        run, key = compat.course_run(self), self._lab_key()
        if action == "status":
            result = labs.get_status(viewer.user, run, key)
        else:
            try:
                spec = self._spec(labs, run, key)
            except LabConfigError:
                return messages.error_answer(messages.NOT_CONFIGURED, self.ugettext)
            call = {"launch": labs.request_launch, "reset": labs.request_reset, "retry": labs.retry}[action]
            if action == "launch" and self.hidden:  # a hidden block launches ahead, within its limit
                call = labs.launch_ahead
            result = call(viewer.user, spec, actor=viewer.actor)
            analytics.learner_request(self, action, result, lab_key=key, by_staff=viewer.masquerading)
        budget = result.budget if result is not None else None
        if budget is not None and budget.warning and not viewer.masquerading \
                and labs.budgets.note_warning(result.lab_id, datetime.now(UTC)):
            analytics.budget_warning(self, budget, lab_key=key, lab_id=result.lab_id)  # once per lab
        return messages.status_answer(result, datetime.now(UTC), self.ugettext, staff=viewer.is_staff)

    # --- helpers ---

    def _unconfigured(self, handler: str) -> dict | None:
        """The learner's answer if labs are not configured on this site (the operator's log says why)."""
        from labxblock.conf import LabSettingsError, require_settings

        try:
            require_settings(f"the {handler} handler of {self._usage_key()}")
        except LabSettingsError:
            return messages.error_answer(messages.SITE_NOT_CONFIGURED, self.ugettext)
        return None

    def _usage_key(self) -> str:
        return str(self.scope_ids.usage_id)

    def _lab_key(self) -> str:
        return authoring.lab_key(compat.course_run(self), self._values())

    def _lab_tag(self) -> str:
        """Names the lab among the learner's open pages (tabs answer each other's leave), nothing more."""
        return hashlib.sha256(f"{compat.course_run(self)}\n{self._lab_key()}".encode()).hexdigest()[:16]

    def _port(self) -> int | None:
        numbers = [p.get("number") for p in self.ports if isinstance(p, dict)]
        if self.selected_port in numbers:
            return self.selected_port
        return numbers[0] if numbers else None

    def _spec(self, labs: Any, run: str, key: str) -> Any:
        def text(value: str) -> str | None:
            if not value.strip():
                return None
            loaded = authoring.load_text(value, lambda path: compat.read_course_asset(self, path))
            if loaded is None:
                raise LabConfigError(value)
            return loaded

        providers = []
        for source in authoring.sources(self._values()):
            template = text(source.template)
            if template is None:
                raise LabConfigError(source.name)
            providers.append(labs.ProviderChoice(name=source.name, capacity=source.capacity,
                                                 template=template, environment=text(source.environment)))
        return labs.LabSpec(
            course_run=run, lab_key=key, providers=tuple(providers), stack_user=self.stack_user,
            protocol=self.protocol, port=self._port(), key_type=self.key_type,
            launch_timeout=self.launch_timeout, suspend_timeout=self.suspend_timeout,
            delete_timeout=self.delete_timeout, hooks=tuple(authoring.hook_specs(self._values())),
            time_budget_seconds=authoring.time_budget_seconds(self._values()), block_id=self._usage_key(),
        )

    def _dom_id(self) -> str:
        return "labxblock-" + "".join(c if c.isalnum() else "-" for c in str(self.scope_ids.usage_id))

    def _keepalive_seconds(self) -> int:
        from labxblock.conf import LabSettingsError, get_settings

        try:
            return get_settings().keepalive_interval_seconds
        except LabSettingsError:
            return 30

    def _idle_seconds(self) -> int:
        """Inactivity before "Are you still there?": a little less than the suspend timeout."""
        from labxblock.conf import LabSettingsError, get_settings

        try:
            suspend = self.suspend_timeout or get_settings().suspend_timeout
        except LabSettingsError:
            suspend = 120
        return max(30, int(suspend * 0.75))

    # --- workbench ---

    @staticmethod
    def workbench_scenarios() -> list[tuple[str, str]]:
        """An SSH lab and an RDP lab, with inline templates."""
        return [
            ("labxblock: SSH lab", loader.load_unicode("templates/scenarios/ssh_lab.xml")),
            ("labxblock: RDP lab", loader.load_unicode("templates/scenarios/rdp_lab.xml")),
        ]


def _http(url: str) -> str:
    """The gateway's page URL: ws(s):// names the same host as http(s)://."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, *parts[1:]))
