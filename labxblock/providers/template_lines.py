"""Which line of a template a validation message is about: pure functions over the text.

Heat's YAML errors name a line and column themselves (PyYAML's marks); its other
errors name a place in the template (``resources.server.properties``), a resource
type or a section. These find that place's line, so an author is pointed at it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import yaml

# PyYAML's mark: ``  in "<unicode string>", line 5, column 4:`` then the line and a caret under it.
_MARK = re.compile(r'\s*in "[^"]*", line (\d+), column (\d+):?')
# A place in the template, as Heat's messages write it (``outputs.public_ip.value.get_attr``).
_PATH = re.compile(r"\b((?:resources|outputs|parameters|conditions|parameter_groups)(?:\.[^\s:.]+)+)")
_RESOURCE_TYPE = re.compile(r"The Resource Type \((.+?)\) could not be found")
_SECTION = re.compile(r"The template section is invalid: (\S+)")
_PARAMETER = re.compile(r"The Parameter \((.+?)\) was not provided")
_INDEX = re.compile(r"\[\d+\]$")


def yaml_position(message: str) -> tuple[int, int] | None:
    """(line, column), 1-based, of the last mark in a PyYAML message (where parsing stopped)."""
    marks = _MARK.findall(message)
    if not marks:
        return None
    line, column = marks[-1]
    return int(line), int(column)


def without_marks(message: str) -> str:
    """A PyYAML message without its marks and the quoted lines under them (the line is shown apart)."""
    kept, skip = [], 0
    for line in message.splitlines():
        if skip:
            skip -= 1
            continue
        if _MARK.fullmatch(line):
            skip = 2  # the quoted template line and the caret under it
            continue
        kept.append(line.strip())
    return "; ".join(part for part in kept if part)


def _root(template: str) -> yaml.Node | None:
    try:
        node = yaml.compose(template, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    return node if isinstance(node, yaml.MappingNode) else None


def _child(node: yaml.Node, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return key_node, value_node
    return None


def line_of(template: str, path: Sequence[str]) -> int | None:
    """The line of the deepest key of ``path`` (``["outputs", "public_ip", "value"]``) in the template."""
    node, line = _root(template), None
    for key in path:
        found = _child(node, _INDEX.sub("", key)) if node is not None else None
        if found is None:
            break
        key_node, node = found
        line = key_node.start_mark.line + 1
    return line


def line_of_resource_type(template: str, type_name: str) -> int | None:
    """The line of the first resource whose ``type`` is ``type_name``."""
    resources = _child(_root(template), "resources") if _root(template) is not None else None
    if resources is None or not isinstance(resources[1], yaml.MappingNode):
        return None
    for _key, resource in resources[1].value:
        found = _child(resource, "type")
        if found is not None and isinstance(found[1], yaml.ScalarNode) and found[1].value == type_name:
            return found[0].start_mark.line + 1
    return None


def heat_position(template: str, message: str) -> tuple[int | None, int | None]:
    """(line, column) a message of Heat's names in ``template``; (None, None) if it names no place."""
    mark = yaml_position(message)
    if mark is not None:
        return mark
    if found := _RESOURCE_TYPE.search(message):
        return line_of_resource_type(template, found.group(1)), None
    if found := _PATH.search(message):
        return line_of(template, found.group(1).split(".")), None
    if found := _SECTION.search(message):
        return line_of(template, [found.group(1)]), None
    if found := _PARAMETER.search(message):
        return line_of(template, ["parameters", found.group(1)]), None
    if "template version" in message.lower():
        return line_of(template, ["heat_template_version"]), None
    return None, None
