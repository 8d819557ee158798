"""Every string the block shows goes through gettext and is in the English source catalogue.

Run ``python -m tests.unit.test_i18n_catalogue`` to rewrite the catalogue from the sources.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PKG = Path(__file__).parents[2] / "labxblock"
CATALOGUE = PKG / "locale/en/LC_MESSAGES/django.po"
PYTHON = ("block.py", "fields.py", "authoring.py", "messages.py", "studio.py", "staff.py",
          "legacy/block.py", "template_check.py", "studio_testlab.py")
TEMPLATES = ("templates/student_view.html", "templates/author_view.html", "templates/staff_panel.html")
JS = ("static/js/labxblock.js", "static/js/labxblock_staff.js", "static/js/labxblock-author.js")
GETTEXT_NAMES = {"_", "gettext", "ugettext"}

TRANS_RE = re.compile(r"""{%\s*trans\s+(["'])(.*?)\1\s*%}""")
BLOCKTRANS_RE = re.compile(r"{%\s*blocktrans(?:\s[^%]*)?%}(.*?){%\s*endblocktrans\s*%}", re.S)
JS_RE = re.compile(r"""\bgettext\((["'])((?:\\.|(?!\1).)*)\1\)""")
HEADER = '''# labxblock's English source catalogue (block, templates and the page's JavaScript).
# Copyright (C) 2026 the labxblock authors
# This file is distributed under the same license as the labxblock package.
# Regenerate: python -m tests.unit.test_i18n_catalogue
msgid ""
msgstr ""
"Project-Id-Version: labxblock\\n"
"Language: en\\n"
"MIME-Version: 1.0\\n"
"Content-Type: text/plain; charset=UTF-8\\n"
"Content-Transfer-Encoding: 8bit\\n"
'''


def python_msgids(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = getattr(func, "id", None) or getattr(func, "attr", None)
        arg = node.args[0]
        if name in GETTEXT_NAMES and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.append(arg.value)
    return found


def template_msgids(path: Path) -> list[str]:
    text = path.read_text()
    found = [m.group(2) for m in TRANS_RE.finditer(text)]
    # Django's blocktrans msgid: {{ name }} becomes %(name)s.
    found += [re.sub(r"{{\s*(\w+)\s*}}", r"%(\1)s", m.group(1)) for m in BLOCKTRANS_RE.finditer(text)]
    return found


def js_msgids(path: Path) -> list[str]:
    return [m.group(2).encode().decode("unicode_escape") if "\\" in m.group(2) else m.group(2)
            for m in JS_RE.finditer(path.read_text())]


def source_msgids() -> list[str]:
    ids = [i for f in PYTHON for i in python_msgids(PKG / f)]
    ids += [i for f in TEMPLATES for i in template_msgids(PKG / f)]
    ids += [i for f in JS for i in js_msgids(PKG / f)]
    return list(dict.fromkeys(ids))


def _unquote(s: str) -> str:
    return s[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def catalogue_msgids(text: str) -> set[str]:
    ids, current = set(), None
    for line in text.splitlines():
        if line.startswith("msgid "):
            current = [_unquote(line[6:])]
        elif line.startswith('"') and current is not None:
            current.append(_unquote(line))
        else:
            if current is not None:
                ids.add("".join(current))
            current = None
    if current is not None:
        ids.add("".join(current))
    ids.discard("")
    return ids


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_catalogue(msgids: list[str]) -> str:
    return HEADER + "".join(f"\nmsgid {_quote(m)}\nmsgstr \"\"\n" for m in msgids)


def test_every_shown_string_is_in_the_catalogue() -> None:
    ids = source_msgids()
    assert len(ids) > 60  # extraction works: fields, problems, phases, template and JS strings
    missing = [m for m in ids if m not in catalogue_msgids(CATALOGUE.read_text())]
    assert not missing, f"not in {CATALOGUE.name} (regenerate it): {missing}"


def test_the_pages_strings_are_handed_to_the_javascript() -> None:
    from labxblock.messages import JS_STRINGS

    used = set(js_msgids(PKG / JS[0]))
    assert used and used <= set(JS_STRINGS), sorted(used - set(JS_STRINGS))


def test_extraction_sees_known_strings() -> None:
    ids = set(source_msgids())
    assert {"Lab group", "Are you still there?", "Elapsed: {elapsed}", "Lab terminal: %(name)s",
            "Unknown provider {name}; this site has: {known}.", "Check progress"} <= ids


if __name__ == "__main__":
    CATALOGUE.write_text(render_catalogue(source_msgids()))
    sys.stdout.write(f"wrote {CATALOGUE}\n")
