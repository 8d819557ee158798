"""Reading ``<stackamole>`` and ``<hastexo>`` elements as the old packages wrote them.

A course export holds the block in two places: its element in the unit, carrying the
fields as attributes (``display_name``, ``stack_user_name``, …, ``filename``), and the
block's own file ``stackamole/<url_name>.xml`` (or ``hastexo/…``) holding the
``<test>``, ``<port>``, ``<provider>`` and ``<hook_events>`` elements. A block in a
library, or OLX written by hand, has those elements inline, and any field may be given
inline as ``<option:NAME>`` with a YAML value. hastexo blocks also have child blocks.

``read`` gives the fields' values as the old block held them (typed like its fields),
the child block elements, and notes on whatever was ignored or wrong.
"""

from __future__ import annotations

import copy
import json
import logging
import posixpath
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from lxml import etree
from xblock.core import XML_NAMESPACES
from xblock.fields import Boolean, Dict, Float, Integer, List

from labxblock import olx as own_olx
from labxblock.legacy import LEGACY_TAGS
from labxblock.legacy.fields import BY_NAME, FIELD_ELEMENTS, HAS_CHILDREN, SETTINGS
from labxblock.legacy.report import CHANGED, DROPPED, ERROR, Note, shown

log = logging.getLogger(__name__)
TRUTHY = ("true", "t", "1", "yes", "y", "on")  # what the old blocks' strtobool took for true
# Course-relative path → the file's bytes, or None when there is no such file.
Opener = Callable[[str], bytes | None]
RUNTIME_ATTRIBUTES = frozenset(
    {"url_name", "slug", "filename", "xblock-family", "parent_url", "parent_sequential_url"}
)
SETTABLE = frozenset(f.name for f in SETTINGS)


@dataclass
class LegacyElement:
    """One old block as read: its field values, its child blocks, and what to tell about it."""

    dialect: str
    values: dict[str, Any] = field(default_factory=dict)
    children: list[etree._Element] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    source: str = ""  # the block's own file, when it had one

    def note(self, kind: str, name: str, text: str, value: Any = "") -> None:
        self.notes.append(Note(kind, name, text, shown(value) if value != "" else ""))


def dialect_of(node: etree._Element) -> str | None:
    """``stackamole`` or ``hastexo`` for an old block's element; None for anything else."""
    tag = node.tag if isinstance(node.tag, str) else ""
    name = etree.QName(tag).localname if tag else ""
    return name if name in LEGACY_TAGS else None


def typed(name: str, text: str | None, out: LegacyElement) -> tuple[bool, Any]:
    """(ok, value) for field ``name`` from its OLX text, as the old block's field would read it."""
    kind = BY_NAME[name].kind
    if text is None:
        return True, None
    try:
        if kind is Integer:
            return True, None if text.strip() in ("", "None") else int(text.strip())
        if kind is Float:
            return True, None if text.strip() in ("", "None") else float(text.strip())
        if kind is Boolean:
            if text.strip().lower() not in ("true", "false"):
                out.note(CHANGED, name, "not True or False: read as False, as stackamole did", text)
            return True, text.strip().lower() == "true"
        if kind in (List, Dict):
            value = yaml.safe_load(text)
            expected = list if kind is List else dict
            if value is not None and not isinstance(value, expected):
                raise ValueError(f"expected a YAML {expected.__name__}")
            return True, value
    except (ValueError, yaml.YAMLError) as exc:
        out.note(ERROR, name, f"cannot be read: {str(exc).splitlines()[0]}", text)
        return False, None
    return True, text


def _script(node: etree._Element) -> str:
    # As the old block did: without the newline that opens the element, dedented.
    text = node.text or ""
    return textwrap.dedent(text[1:] if text.startswith("\n") else text)


def _port(node: etree._Element, out: LegacyElement) -> None:
    if node.get("name") is None or node.get("number") is None:
        out.note(ERROR, "ports", "a <port> needs both name and number", etree.tostring(node).decode())
        return
    try:
        number = int(node.get("number"))
    except ValueError:
        out.note(ERROR, "ports", "the port number is not a whole number", node.get("number"))
        return
    out.values.setdefault("ports", []).append({"name": node.get("name"), "number": number})


def _provider(node: etree._Element, out: LegacyElement) -> None:
    if not node.get("name"):
        out.note(ERROR, "providers", "a <provider> needs a name", etree.tostring(node).decode())
        return
    capacity: Any = node.get("capacity")
    try:
        capacity = -1 if capacity in (None, "", "None") else int(capacity)
    except ValueError:
        out.note(ERROR, "providers", "the capacity is not a whole number", capacity)
        return
    provider = {"name": node.get("name"), "capacity": capacity}
    for key in ("template", "environment"):
        if node.get(key) not in (None, "None"):
            provider[key] = node.get(key)
    out.values.setdefault("providers", []).append(provider)


def _hook_events(node: etree._Element, out: LegacyElement) -> None:
    out.values["hook_events"] = {
        event: (node.get(event) or "true").strip().lower() in TRUTHY
        for event in ("suspend", "resume", "delete")
    }


def _field_element(node: etree._Element, tag: str, out: LegacyElement) -> None:
    if tag == "test":
        script = _script(node)
        if script.strip():
            out.values.setdefault("tests", []).append(script)
        else:
            out.note(DROPPED, "tests", "an empty <test> has nothing to run")
    elif tag == "port":
        _port(node, out)
    elif tag == "provider":
        _provider(node, out)
    else:
        _hook_events(node, out)


def _children(parent: etree._Element, out: LegacyElement, *, blocks_allowed: bool) -> None:
    for child in parent:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        qname = etree.QName(child)
        if qname.namespace == XML_NAMESPACES["option"]:
            _option(child, qname.localname, out)
        elif qname.localname in FIELD_ELEMENTS:
            _field_element(child, qname.localname, out)
        elif blocks_allowed:
            out.children.append(child)
        else:
            out.note(DROPPED, f"<{qname.localname}>", "stackamole ignores child elements: not converted")


def _option(node: etree._Element, name: str, out: LegacyElement) -> None:
    if name not in SETTABLE:
        out.note(DROPPED, f"<option:{name}>", "not a field of the old block: ignored, as it was")
        return
    ok, value = typed(name, node.text, out)
    if ok:
        out.values[name] = None if node.get("none") == "true" else value


def _own_file(node: etree._Element, dialect: str, open_file: Opener | None, out: LegacyElement) -> None:
    """The block's file ``<category>/<url_name dir>/<filename>.xml``; stackamole also looks under hastexo/."""
    url_name = node.get("url_name") or node.get("slug") or ""
    folder = posixpath.dirname(url_name.replace(":", "/"))
    categories = (dialect, *[t for t in LEGACY_TAGS if t != dialect])
    paths = [posixpath.join(c, folder, f"{node.get('filename')}.xml") for c in categories]
    data = None
    for path in paths:
        data = open_file(path) if open_file else None
        if data is not None:
            out.source = path
            break
    if data is None:
        out.note(ERROR, "filename", f"the block's own file is missing (looked for {', '.join(paths)})",
                 node.get("filename"))
        return
    try:
        root = own_olx.parse_text(data)
    except own_olx.XML_ERRORS as exc:
        out.note(ERROR, "filename", f"{out.source} cannot be read as XML: {exc}")
        return
    _children(root, out, blocks_allowed=False)  # the file holds fields only; blocks stay in the unit


def read(node: etree._Element, open_file: Opener | None = None) -> LegacyElement:
    """The old block in ``node`` (``<stackamole>`` or ``<hastexo>``), read as its package read it."""
    dialect = dialect_of(node)
    if dialect is None:
        raise ValueError(f"not a stackamole or hastexo element: <{node.tag}>")
    out = LegacyElement(dialect)
    if node.get("filename"):
        _own_file(node, dialect, open_file, out)
        if HAS_CHILDREN[dialect]:
            _children(node, out, blocks_allowed=True)
    else:
        _children(node, out, blocks_allowed=HAS_CHILDREN[dialect])
    for name, value in node.items():  # attributes last: they win over <option:…>, as in the old block
        if name in RUNTIME_ATTRIBUTES or name.startswith("{"):
            continue
        if name not in SETTABLE:
            out.note(DROPPED, name, "not a field of the old block: ignored, as it was", value)
            continue
        ok, parsed = typed(name, value, out)
        if ok:
            out.values[name] = parsed
    return out


def labxblock_element(node: etree._Element, old: LegacyElement, values: dict[str, Any]) -> etree._Element:
    """The ``<labxblock>`` element that replaces ``node``: same url_name, converted fields, same children."""
    new = etree.Element("labxblock")
    if node.get("url_name") is not None:
        new.set("url_name", node.get("url_name"))
    own_olx.export(values, new)  # labxblock's own OLX: the converted block reads back through it
    for child in old.children:
        new.append(copy.deepcopy(child))
    new.tail = node.tail
    return new


def export_old(values: dict[str, Any], node: etree._Element) -> None:
    """Write the old fields ``values`` onto ``node`` in the old inline form (what a library held).

    Both old packages and ``read`` take it back: attributes, ``<test>``/``<port>``/``<provider>``
    children, and ``<option:hook_events>`` (the old inline form had no plain element for it).
    """
    for name, value in values.items():
        if value is None:
            continue
        if name == "tests":
            for script in value:
                etree.SubElement(node, "test").text = etree.CDATA(script) if "]]>" not in script else script
        elif name == "ports":
            for port in value:
                attrs = {"name": str(port.get("name", "")), "number": str(port.get("number"))}
                etree.SubElement(node, "port", attrs)
        elif name == "providers":
            for p in value:
                keys = ("name", "capacity", "template", "environment")
                attrs = {k: str(p[k]) for k in keys if p.get(k) is not None}
                etree.SubElement(node, "provider", attrs)
        elif name == "hook_events":
            option = etree.SubElement(node, f"{{{XML_NAMESPACES['option']}}}hook_events",
                                      nsmap={"option": XML_NAMESPACES["option"]})
            option.text = json.dumps(value)  # JSON is YAML: the old parser reads it
        else:
            node.set(name, str(value))  # booleans as True/False, as the old export wrote them


def files_of(runtime: Any) -> Opener | None:
    """The course's files as the runtime offers them (``resources_fs``, where the old blocks read theirs)."""
    resources = getattr(runtime, "resources_fs", None)
    if resources is None:
        return None
    return lambda path: resources.readbytes(path) if resources.exists(path) else None


def parse_for_block(node: etree._Element, runtime: Any, *, keep_old: bool) -> tuple[dict[str, Any],
                                                                                     list[etree._Element]]:
    """(field values, child block elements) for a block class meeting an old element in ``parse_xml``.

    ``keep_old``: the old fields as they are (a class serving the old name); else labxblock's
    converted values. What is not carried over is logged for the operator (the course
    converter prints the same as a report); an element the old package would have refused
    is refused here too, naming the problem.
    """
    from labxblock.legacy.convert import convert

    old = read(node, files_of(runtime))
    conversion = convert(old.values)
    notes = [*old.notes, *conversion.notes]
    problems = [n.line() for n in notes if n.kind == ERROR]
    if problems:
        raise own_olx.OlxError(node, "; ".join(problems))
    where = f"<{old.dialect} url_name={node.get('url_name', '')!r}>"
    for note in notes:
        level = logging.WARNING if note.kind == DROPPED else logging.INFO
        log.log(level, "labxblock: %s: %s", where, note.line())
    return (old.values if keep_old else conversion.values), old.children
