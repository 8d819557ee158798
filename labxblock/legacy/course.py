"""A whole course export (``.tar.gz``) with its stackamole/hastexo blocks rewritten as labxblock blocks.

Offline and pure of Django: the export is read from the archive, never unpacked to
disk. Every ``<stackamole>``/``<hastexo>`` element, in any XML file of the course
(units, drafts, libraries), becomes a ``<labxblock>`` element in place, keeping its
``url_name`` and its child blocks; the block's own file under ``stackamole/`` or
``hastexo/`` is folded into it and left out of the new archive. The course's
advanced modules (``policies/<run>/policy.json``) name ``labxblock`` instead. Every
other file is copied byte for byte. If any block cannot be read, nothing is written.

The XML and policy files are read into memory, so an archive is refused (CourseError)
before anything is read when one of them is over ``MAX_FILE_BYTES`` uncompressed, or all
of them together over ``MAX_READ_BYTES`` (as the archive's headers say: a small .tar.gz
can unpack to gigabytes). Studio's exports are far below both: a unit is a few KiB.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from labxblock import authoring
from labxblock import olx as own_olx
from labxblock.legacy import LEGACY_TAGS
from labxblock.legacy import olx as legacy_olx
from labxblock.legacy.convert import LEGACY_LAB_GROUP, convert
from labxblock.legacy.fields import LEGACY_CHECK_TIMEOUT
from labxblock.legacy.report import CHANGED, DROPPED, ERROR, Note

ROOT_FILES = ("course.xml", "library.xml")
NEW_MODULE = "labxblock"
MAX_FILE_BYTES = 32 * 2**20  # one XML or policy file, uncompressed
MAX_READ_BYTES = 256 * 2**20  # all the XML and policy files together, uncompressed


class CourseError(Exception):
    """The archive is not a course export that can be converted; the message says why."""


@dataclass
class BlockReport:
    """One old block: where it was, what it was called, what became of it."""

    path: str
    line: int | None
    dialect: str
    url_name: str
    display_name: str
    notes: list[Note]
    values: dict[str, Any]

    def heading(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        name = f' "{self.display_name}"' if self.display_name else ""
        return f'{where}: <{self.dialect} url_name="{self.url_name}">{name}'


@dataclass
class CourseReport:
    """Everything the converter did and could not do, for the operator."""

    blocks: list[BlockReport] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # about the course as a whole
    rewritten: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def all_notes(self) -> list[Note]:
        return [n for b in self.blocks for n in b.notes] + self.notes

    @property
    def errors(self) -> list[Note]:
        return [n for n in self.all_notes() if n.kind == ERROR]

    def text(self) -> str:
        """The report as the command prints it."""
        dialects = Counter(b.dialect for b in self.blocks)
        found = ", ".join(f"{n} {d}" for d, n in sorted(dialects.items())) or "none"
        lines = [f"Old blocks found: {len(self.blocks)} ({found})."]
        if self.rewritten or self.removed:
            lines.append("Files rewritten: " + (", ".join(self.rewritten) or "none") + ".")
            lines.append("Files folded into their blocks and left out: " + (", ".join(self.removed) or "none")
                         + ".")
        for block in self.blocks:
            lines.append("")
            lines.append(block.heading())
            lines += [f"  {n.line()}" for n in block.notes] or ["  carried over completely"]
        if self.notes:
            lines += ["", "Course:"] + [f"  {n.line()}" for n in self.notes]
        counts = Counter(n.kind for n in self.all_notes())
        summary = f"{counts[DROPPED]} dropped, {counts[CHANGED]} changed, {counts[ERROR]} errors"
        lines += ["", f"Summary: {summary}."]
        return "\n".join(lines)


class _Export:
    """The archive's members and the course's small text files, by path inside the course."""

    def __init__(self, archive: tarfile.TarFile) -> None:
        self.members = archive.getmembers()
        roots = [m.name.rsplit("/", 1)[0] if "/" in m.name else "" for m in self.members
                 if m.isfile() and posixpath.basename(m.name) in ROOT_FILES]
        if not roots:
            raise CourseError("not a course export: the archive has no course.xml (or library.xml)")
        self.root = min(roots, key=len)
        to_read = {rel: member for member in self.members
                   if (rel := self.relative(member.name)) is not None and member.isfile()
                   and rel.endswith((".xml", "policy.json"))}
        _within_caps(to_read.values())
        self.files: dict[str, bytes] = {}
        for rel, member in to_read.items():
            data = archive.extractfile(member)
            self.files[rel] = data.read() if data else b""

    def relative(self, name: str) -> str | None:
        name = name.removeprefix("./")
        root = self.root.removeprefix("./")
        if not root:
            return name
        return name[len(root) + 1:] if name.startswith(root + "/") else None


def _within_caps(members: Iterable[tarfile.TarInfo]) -> None:
    """CourseError if the files to read are over the caps, by their sizes in the archive's headers."""
    total = 0
    for member in members:
        if member.size > MAX_FILE_BYTES:
            raise CourseError(f"{member.name} is {member.size} bytes uncompressed: the converter reads XML "
                              f"and policy files of at most {MAX_FILE_BYTES} bytes")
        total += member.size
    if total > MAX_READ_BYTES:
        raise CourseError(f"the XML and policy files are {total} bytes uncompressed in all: the converter "
                          f"reads at most {MAX_READ_BYTES} bytes of them")


def _parse(data: bytes) -> etree._ElementTree:
    return etree.ElementTree(own_olx.parse_text(data))


def _pointer_target(node: etree._Element, tag: str, files: dict[str, bytes]) -> etree._Element | None:
    """``<stackamole url_name="x"/>`` whose definition is the whole element in ``stackamole/x.xml``."""
    if set(node.attrib) != {"url_name"} or len(node):
        return None
    path = posixpath.join(tag, node.get("url_name").replace(":", "/") + ".xml")
    if path not in files:
        return None
    root = _parse(files[path]).getroot()
    if not root.attrib:
        return None  # a file of <test>/<port> elements only: that is the "filename" form
    root.set("url_name", node.get("url_name"))
    return root


def _convert_file(
    rel: str, export: _Export, report: CourseReport, used: set[str], **options: Any
) -> bytes | None:
    data = export.files[rel]
    if not any(f"<{tag}".encode() in data for tag in LEGACY_TAGS):
        return None
    tree = _parse(data)
    nodes = [n for n in tree.getroot().iter() if legacy_olx.dialect_of(n)]
    for node in nodes:
        dialect = legacy_olx.dialect_of(node)
        definition = _pointer_target(node, dialect, export.files)
        if definition is not None:
            used.add(posixpath.join(dialect, node.get("url_name").replace(":", "/") + ".xml"))
        old = legacy_olx.read(definition if definition is not None else node, export.files.get)
        if old.source:
            used.add(old.source)
        converted = convert(old.values, **options)
        notes = [*old.notes, *converted.notes]
        report.blocks.append(BlockReport(rel, node.sourceline, dialect, node.get("url_name", ""),
                                         str(old.values.get("display_name") or ""), notes, converted.values))
        if not any(n.kind == ERROR for n in notes):
            parent = node.getparent()
            new = legacy_olx.labxblock_element(node, old, converted.values)
            if parent is None:
                tree._setroot(new)
            else:
                parent.replace(node, new)
    declaration = data.lstrip().startswith(b"<?xml")
    return etree.tostring(tree, encoding="utf-8", xml_declaration=declaration) + b"\n"


def _convert_policy(data: bytes, rel: str, report: CourseReport) -> bytes | None:
    try:
        policy = json.loads(data)
    except ValueError as exc:
        report.notes.append(Note(ERROR, rel, f"is not valid JSON: {exc}"))
        return None
    changed = False
    for key, entry in policy.items() if isinstance(policy, dict) else ():
        if key.split("/")[0] in LEGACY_TAGS:
            report.notes.append(Note(DROPPED, f"{rel}: {key}", "settings of an old block in the course "
                                     "policy are not converted (labxblock reads its settings from the OLX)"))
        modules = entry.get("advanced_modules") if isinstance(entry, dict) else None
        if isinstance(modules, list) and any(m in LEGACY_TAGS for m in modules):
            new = []
            for module in modules:
                module = NEW_MODULE if module in LEGACY_TAGS else module
                if module not in new:
                    new.append(module)
            entry["advanced_modules"] = new
            changed = True
    return (json.dumps(policy, indent=4, ensure_ascii=False) + "\n").encode() if changed else None


def _course_notes(report: CourseReport) -> None:
    templates = {authoring.template_reference(b.values) for b in report.blocks}
    templates.discard("")
    if len(templates) > 1:
        report.notes.append(Note(CHANGED, "lab_group", (
            f"{len(templates)} different templates share one lab per learner, as they shared one stack in "
            f"the old package (lab_group {LEGACY_LAB_GROUP}): the first launched decides. Give components "
            "a lab_group of their own to give them labs of their own.")))


def convert_export(
    src: Path | str,
    dest: Path | str | None = None,
    *,
    check_timeout: int | None = LEGACY_CHECK_TIMEOUT,
    inherit_fullscreen: bool = False,
) -> CourseReport:
    """Convert the course export ``src``; write the result to ``dest`` unless None or a block has errors."""
    report = CourseReport()
    try:
        with tarfile.open(src, "r:*") as archive:
            export = _Export(archive)
            replaced: dict[str, bytes] = {}
            used: set[str] = set()
            options = {"check_timeout": check_timeout, "inherit_fullscreen": inherit_fullscreen}
            for rel in sorted(export.files):
                if rel.split("/")[0] in (*LEGACY_TAGS, "static"):
                    continue  # the old blocks' own files are read through their elements; static is data
                try:
                    new = (_convert_policy(export.files[rel], rel, report) if rel.endswith("policy.json")
                           else _convert_file(rel, export, report, used, **options))
                except own_olx.XML_ERRORS as exc:
                    report.notes.append(Note(ERROR, rel, f"cannot be read as XML: {exc}"))
                    continue
                if new is not None:
                    replaced[rel] = new
            _course_notes(report)
            report.rewritten, report.removed = sorted(replaced), sorted(used)
            if dest is not None and not report.errors:
                _write(archive, export, replaced, used, Path(dest))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CourseError(f"cannot read {src}: {exc}") from exc
    return report


def _write(archive: tarfile.TarFile, export: _Export, replaced: dict[str, bytes], used: set[str],
           dest: Path) -> None:
    """The new archive, written beside ``dest`` and moved into place: never half a file."""
    fd, tmp = tempfile.mkstemp(prefix=".labxblock-", suffix=".tar.gz", dir=dest.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as out:
            for member in export.members:
                rel = export.relative(member.name)
                if rel in used:
                    continue
                if rel in replaced:
                    info = tarfile.TarInfo(member.name)
                    info.mode, info.mtime, info.size = member.mode, int(time.time()), len(replaced[rel])
                    out.addfile(info, io.BytesIO(replaced[rel]))
                elif member.isfile():
                    out.addfile(member, archive.extractfile(member))
                else:
                    out.addfile(member)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
