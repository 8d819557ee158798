"""stackamole and hastexo components served by labxblock, under their old XBlock names.

Registered as the ``xblock.v1`` entry points ``stackamole`` and ``hastexo``, so content
stored by the old package reads back once that package is removed: these classes declare
the old fields (same names, scopes and defaults) and keep them as they are; labxblock's
own values are converted from them whenever they are needed (``legacy.convert``), so a
component is the lab it was. Studio edits the old fields, as the old editor did.

They act only when the operator says so: ``XBLOCK_SETTINGS["labxblock"]
["serve_legacy_block_types"] = True``. Until then learners see that the lab cannot be
shown yet, every handler refuses, authors see in Studio how to enable it or convert the
course, and the operator's log says the same once per process.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from web_fragments.fragment import Fragment
from webob import Response
from xblock.core import XBlock
from xblock.scorable import Score
from xblock.utils.resources import ResourceLoader
from xblock.validation import ValidationMessage

from labxblock import messages
from labxblock.block import LabBlock
from labxblock.fields import LIST_FIELDS, SCALAR_FIELDS, LabFieldsMixin
from labxblock.legacy import names
from labxblock.legacy.convert import Conversion, convert
from labxblock.legacy.fields import BY_NAME, SETTINGS, xblock_field
from labxblock.legacy.report import CHANGED

log = logging.getLogger(__name__)
loader = ResourceLoader("labxblock.block")  # the package's templates
OURS = (*SCALAR_FIELDS, *LIST_FIELDS, "instructions")
OLD_SETTINGS = tuple(f.name for f in SETTINGS)


def _(text: str) -> str:
    return text


OFF_FOR_AUTHORS = _(
    "labxblock serves this {dialect} component only when the site's setting serve_legacy_block_types is on. "
    "Ask the operator to turn it on, or convert the course with labxblock_import_legacy and import it."
)
SERVED_FOR_AUTHORS = _("This {dialect} component runs as a labxblock lab. Not carried over as it was:")


def operator_hint(dialect: str) -> str:
    """What the operator reads in the log when the old names are not served."""
    return (f"labxblock: a {dialect} component was shown, but XBLOCK_SETTINGS['labxblock']"
            "['serve_legacy_block_types'] is not true (or labxblock's settings cannot be read), so learners "
            "are told the lab cannot be shown yet. "
            "Set it to True in the LMS and Studio settings and restart them, or convert the course export "
            "with `manage.py lms labxblock_import_legacy <export.tar.gz>` and import the result.")


@functools.cache
def _log_off_once(dialect: str) -> None:
    log.warning(operator_hint(dialect))


class LegacyLabBlock(LabBlock):
    """A component stored by stackamole-xblock or hastexo-xblock, run by labxblock (see the module)."""

    dialect = ""  # set by _served
    legacy_storage = True  # parse_xml keeps the old fields as they are (block.py)
    editable_fields = OLD_SETTINGS
    object_list_fields = ("ports", "providers")  # the old tests are a list of scripts

    # --- labxblock's values, from the old fields ---

    def conversion(self) -> Conversion:
        return convert({name: getattr(self, name) for name in OLD_SETTINGS})

    def _values(self, data: Any = None) -> dict[str, Any]:
        source = self if data is None else data
        converted = convert({name: getattr(source, name) for name in OLD_SETTINGS}).values
        return {name: converted.get(name, LabFieldsMixin.fields[name].default) for name in OURS}

    # --- the setting ---

    def student_view(self, context: dict | None = None) -> Fragment:
        if not names.serving():
            _log_off_once(self.dialect)
            return Fragment(loader.render_django_template("templates/legacy_notice.html", {
                "message": self.ugettext(messages.TERMINAL_UNAVAILABLE), "notes": [],
            }, i18n_service=self.runtime.service(self, "i18n")))
        return super().student_view(context)

    def author_view(self, context: dict | None = None) -> Fragment:
        frag = super().author_view(context)
        if names.serving():
            heading = self.ugettext(SERVED_FOR_AUTHORS).format(dialect=self.dialect)
            notes = [n.line() for n in self.conversion().notes]
        else:
            heading, notes = self.ugettext(OFF_FOR_AUTHORS).format(dialect=self.dialect), []
        if notes or not names.serving():
            frag.add_content(loader.render_django_template("templates/legacy_notice.html", {
                "message": heading, "notes": notes,
            }, i18n_service=self.runtime.service(self, "i18n")))
        return frag

    def validate(self) -> Any:
        validation = super().validate()
        if not names.serving():
            message = self.ugettext(OFF_FOR_AUTHORS).format(dialect=self.dialect)
            validation.add(ValidationMessage(ValidationMessage.WARNING, message))
        for note in self.conversion().notes:
            if note.kind != CHANGED:  # what is lost or wrong; the author view lists the rest
                validation.add(ValidationMessage(ValidationMessage.WARNING, note.line()))
        return validation

    # --- scores the old block recorded ---

    def has_submitted_answer(self) -> bool:
        return super().has_submitted_answer() or bool(self.score)

    def get_score(self) -> Score:
        """A learner scored by the old block keeps that score until labxblock scores them."""
        old = self.score if isinstance(self.score, dict) else {}
        if self.raw_earned is None and old.get("raw_possible"):
            share = float(old.get("raw_earned") or 0) / float(old["raw_possible"])
            return Score(raw_earned=share * self._points(), raw_possible=self._points())
        return super().get_score()

    # --- OLX: the old form, which the old packages and labxblock_import_legacy read ---

    def add_xml_to_node(self, node: Any) -> None:
        from labxblock.legacy.olx import export_old

        node.tag = self.scope_ids.block_type
        node.set("xblock-family", self.entry_point)
        stored = [name for name in OLD_SETTINGS if self.fields[name].is_set_on(self)]
        export_old({name: getattr(self, name) for name in stored}, node)
        self.add_children_to_node(node)


def _converted(name: str) -> property:
    return property(lambda self: self._values()[name], doc=f"labxblock's {name}, from the old fields.")


def _gated(handler: Any) -> Any:
    """A handler that answers only while the old names are served."""

    @functools.wraps(handler)
    def gated(self: LegacyLabBlock, request: Any, suffix: str = "") -> Response:
        if not names.serving():
            _log_off_once(self.dialect)
            body = messages.error_answer(messages.TERMINAL_UNAVAILABLE, self.ugettext)
            return Response(json.dumps(body), content_type="application/json", charset="utf8")
        return handler(self, request, suffix)

    return XBlock.handler(gated)


def _handlers(cls: type) -> dict[str, Any]:
    """Every handler ``cls`` answers, its own and its mixins' (the staff panel's): the most derived wins."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            if getattr(attr, "_is_xblock_handler", False):
                found[name] = attr
            else:  # a subclass's plain attribute of that name is no handler any more
                found.pop(name, None)
    return found


def _served(name: str, dialect: str, doc: str) -> type[LegacyLabBlock]:
    """The class for one old name: the old fields declared as that block did (the metaclass names
    them), labxblock's own values as read-only views of them, the lab handlers gated by the setting.
    labxblock's user state (selected port, score, completion) stays real fields."""
    attrs: dict[str, Any] = {"__module__": __name__, "__doc__": doc, "dialect": dialect}
    attrs.update({n: xblock_field(BY_NAME[n], dialect) for n in (*OLD_SETTINGS, "score")})
    attrs.update({n: _converted(n) for n in OURS if n not in BY_NAME})
    attrs.update({n: _gated(a) for n, a in _handlers(LegacyLabBlock).items()})
    return type(LegacyLabBlock)(name, (LegacyLabBlock,), attrs)


StackamoleLabBlock = _served("StackamoleLabBlock", "stackamole",
                             "``<stackamole>``: stackamole-xblock 9.5.0's block, served by labxblock.")
HastexoLabBlock = _served("HastexoLabBlock", "hastexo", "``<hastexo>``: hastexo-xblock 8.7.0's block "
                          "(stackamole-xblock's alias for it too), served by labxblock.")
