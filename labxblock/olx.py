"""OLX for LabBlock: simple fields as attributes, nested lists and long texts as child elements.

```xml
<labxblock display_name="Linux basics" template="/static/lab.yaml" protocol="ssh" weight="2">
  <instructions><![CDATA[<p>Log in and look around.</p>]]></instructions>
  <provider name="default" capacity="20" environment="/static/env.yaml"/>
  <provider name="backup"><template><![CDATA[heat_template_version: ...]]></template></provider>
  <port name="web" number="8080"/>
  <check name="file created"><![CDATA[test -f ~/done]]></check>
  <check name="web" weight="2" timeout="20" host="web" hint="Start nginx."><![CDATA[curl -fs web]]></check>
  <hook kind="before_suspend" name="stop nginx" timeout="20"><![CDATA[sudo systemctl stop nginx]]></hook>
  <html>…</html>   <!-- any other element: a child block shown with the instructions -->
</labxblock>
```

Inline template or environment text (anything with a line break) is a child
element, never an attribute, and scripts and texts are kept verbatim in CDATA.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from labxblock.fields import SCALAR_FIELDS, TIMEOUT_FIELDS

INT_FIELDS = frozenset(TIMEOUT_FIELDS)
FLOAT_FIELDS = frozenset({"weight", "time_budget_hours"})
OPTIONAL_FIELDS = frozenset({*TIMEOUT_FIELDS, "time_budget_hours"})  # "" (or none, null): not set
BOOL_FIELDS = frozenset({"read_only", "rdp_ignore_cert", "hidden", "fullscreen"})
TEXT_FIELDS = ("template", "environment")  # attribute when a file name, child element when inline
OWN_ELEMENTS = frozenset({"instructions", "template", "environment", "provider", "port", "check", "hook"})
# Attributes any runtime may put on a block's element; not ours to judge.
CHECK_ATTRIBUTES = ("name", "weight", "hint", "host", "timeout")  # the script is the element's text
HOOK_ATTRIBUTES = ("kind", "name", "host", "timeout")  # likewise
FOREIGN_ATTRIBUTES = frozenset(
    {"url_name", "xblock-family", "filename", "parent_url", "parent_sequential_url"}
)


class EntityRefused(ValueError):
    """The XML declares entities of its own (a DOCTYPE): it is not read."""


# What parse_text raises for XML it does not read.
XML_ERRORS = (etree.XMLSyntaxError, EntityRefused)


def parse_text(data: bytes) -> etree._Element:
    """Author or course XML we parse ourselves (legacy course exports and block files), hardened.

    No entity is expanded (an external one could read a file of this host or the network,
    an internal one multiply itself), no DTD loaded, nothing fetched, no huge tree; CDATA is
    kept so that what is written back is what was read. A file declaring entities is refused
    whole (libxml2 expands them in attribute values whatever the parser says, and a file left
    with unexpanded ones would be written back broken): Studio never exports one.
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             strip_cdata=False)
    root = etree.fromstring(data, parser)
    dtd = root.getroottree().docinfo.internalDTD
    declared = [entity.name for entity in dtd.iterentities()] if dtd is not None else []
    if declared:
        raise EntityRefused(f"declares XML entities ({', '.join(declared)}), which are never read")
    return root


class OlxError(ValueError):
    """Malformed OLX; the message names the element (and line) and the problem."""

    def __init__(self, node: etree._Element, problem: str) -> None:
        line = getattr(node, "sourceline", None)
        where = f"<{etree.QName(node).localname}>" + (f" (line {line})" if line else "")
        super().__init__(f"{where}: {problem}")


# --- import ---


def _int(node: etree._Element, name: str, value: str, *, minimum: int, maximum: int | None = None) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise OlxError(node, f"{name}={value!r} is not a whole number") from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise OlxError(node, f"{name}={value!r} must be {bound}")
    return number


def _scalar(node: etree._Element, name: str, value: str) -> Any:
    if name in OPTIONAL_FIELDS and value.strip() in ("", "none", "null"):
        return None
    if name in INT_FIELDS:
        return _int(node, name, value, minimum=1)
    if name in FLOAT_FIELDS:
        try:
            return float(value)
        except ValueError:
            raise OlxError(node, f"{name}={value!r} is not a number") from None
    if name in BOOL_FIELDS:
        if value.strip().lower() not in ("true", "false"):
            raise OlxError(node, f"{name}={value!r} must be true or false")
        return value.strip().lower() == "true"
    return value


def _only(node: etree._Element, allowed: set[str]) -> None:
    unknown = sorted(set(node.attrib) - allowed)
    if unknown:
        raise OlxError(node, f"unknown attribute {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _text_children(node: etree._Element, allowed: set[str]) -> dict[str, str]:
    out = {}
    for child in node:
        if child.tag is etree.Comment:
            continue
        tag = etree.QName(child).localname
        if tag not in allowed:
            raise OlxError(child, f"unexpected element inside <{etree.QName(node).localname}>")
        out[tag] = child.text or ""
    return out


def _provider(node: etree._Element) -> dict[str, Any]:
    _only(node, {"name", "capacity", "template", "environment"})
    name = node.get("name", "").strip()
    if not name:
        raise OlxError(node, "the name attribute is missing")
    provider: dict[str, Any] = {"name": name}
    if node.get("capacity") is not None:
        provider["capacity"] = _int(node, "capacity", node.get("capacity"), minimum=0)
    texts = _text_children(node, {"template", "environment"})
    for key in ("template", "environment"):
        if key in texts and node.get(key) is not None:
            raise OlxError(node, f"{key} is given both as attribute and as element")
        value = texts.get(key, node.get(key))
        if value is not None:
            provider[key] = value
    return provider


def _port(node: etree._Element) -> dict[str, Any]:
    _only(node, {"name", "number"})
    if node.get("number") is None:
        raise OlxError(node, "the number attribute is missing")
    return {"name": node.get("name", ""), "number": _int(node, "number", node.get("number"), minimum=1,
                                                         maximum=65535)}


def _script(node: etree._Element, attributes: tuple[str, ...], what: str) -> dict[str, Any]:
    """A check or lifecycle script: its text, a whole-number timeout, the other attributes as text."""
    _only(node, set(attributes))
    if len(node):
        raise OlxError(node[0], f"a {what} holds its script as text (CDATA), not elements")
    script: dict[str, Any] = {"name": node.get("name", ""), "script": node.text or ""}
    if node.get("timeout") is not None:
        script["timeout"] = _int(node, "timeout", node.get("timeout"), minimum=1)
    for key in ("kind", "hint", "host"):
        if key in attributes and node.get(key) is not None:
            script[key] = node.get(key)
    return script


def _check(node: etree._Element) -> dict[str, Any]:
    check = _script(node, CHECK_ATTRIBUTES, "check")
    if node.get("weight") is not None:
        try:
            check["weight"] = float(node.get("weight"))
        except ValueError:
            raise OlxError(node, f"weight={node.get('weight')!r} is not a number") from None
    return check


def _hook(node: etree._Element) -> dict[str, Any]:
    if not node.get("kind", "").strip():
        raise OlxError(node, "the kind attribute is missing (setup, after_resume or before_suspend)")
    return _script(node, HOOK_ATTRIBUTES, "lifecycle script")


def parse(node: etree._Element) -> tuple[dict[str, Any], list[etree._Element]]:
    """Field values from a ``<labxblock>`` element, and the child elements that are child blocks."""
    values: dict[str, Any] = {}
    unknown = sorted(set(node.attrib) - set(SCALAR_FIELDS) - FOREIGN_ATTRIBUTES)
    if unknown:
        raise OlxError(node, f"unknown attribute {unknown[0]!r}")
    for name in SCALAR_FIELDS:
        if node.get(name) is not None:
            values[name] = _scalar(node, name, node.get(name))
    lists: dict[str, list[dict[str, Any]]] = {"providers": [], "ports": [], "checks": [], "hooks": []}
    blocks = []
    for child in node:
        if child.tag is etree.Comment or child.tag is etree.ProcessingInstruction:
            continue
        tag = etree.QName(child).localname
        if tag not in OWN_ELEMENTS:
            blocks.append(child)
        elif tag in ("instructions", *TEXT_FIELDS):
            _only(child, set())
            if len(child):
                raise OlxError(child[0], f"<{tag}> holds text (CDATA), not elements")
            field = tag
            if field in values:
                raise OlxError(child, f"{field} is given twice")
            values[field] = child.text or ""
        else:
            parser = {"provider": _provider, "port": _port, "check": _check, "hook": _hook}[tag]
            lists[{"provider": "providers", "port": "ports", "check": "checks", "hook": "hooks"}[tag]].append(
                parser(child))
    values.update({name: items for name, items in lists.items() if items})
    return values, blocks


# --- export ---


def _cdata(text: str) -> etree.CDATA | str:
    # CDATA cannot hold "]]>"; such a text is escaped instead, which parses back the same.
    return text if "]]>" in text else etree.CDATA(text)


def _text_element(parent: etree._Element, tag: str, text: str, **attrs: str) -> etree._Element:
    child = etree.SubElement(parent, tag, attrs)
    child.text = _cdata(text)
    return child


def _attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def export(values: Mapping[str, Any], node: etree._Element) -> None:
    """Write field ``values`` (those set on the block) onto ``node``."""
    for name in SCALAR_FIELDS:
        value = values.get(name)
        if value is None or name not in values:
            continue
        if name in TEXT_FIELDS and "\n" in value:
            _text_element(node, name, value)
        else:
            node.set(name, _attribute(value))
    if values.get("instructions"):
        _text_element(node, "instructions", values["instructions"])
    for p in values.get("providers") or []:
        el = etree.SubElement(node, "provider", {"name": str(p.get("name", ""))})
        if p.get("capacity") is not None:
            el.set("capacity", str(p["capacity"]))
        for key in ("template", "environment"):
            if p.get(key) is None:
                continue
            if "\n" in p[key]:
                _text_element(el, key, p[key])
            else:
                el.set(key, p[key])
    for p in values.get("ports") or []:
        etree.SubElement(node, "port", {"name": str(p.get("name", "")), "number": str(p.get("number"))})
    for tag, name, attributes in (("check", "checks", CHECK_ATTRIBUTES), ("hook", "hooks", HOOK_ATTRIBUTES)):
        for c in values.get(name) or []:
            # Optional settings only when the author gave them: an old block exports as before.
            attrs = {key: _attribute(c[key]) for key in attributes if c.get(key) is not None}
            _text_element(node, tag, str(c.get("script", "")), **{"name": "", **attrs})
