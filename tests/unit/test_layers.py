"""The one-way imports of DESIGN.md §3, read from the sources (every import, inside functions too).

block → labs → (models, lifecycle, checks); the models know nothing above them, the labs
nothing of the block's side (its edx-platform view ``compat``, its analytics), lifecycle
nothing of the project, providers nothing of Django or Celery.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).parents[2] / "labxblock"
BLOCK_SIDE = ("labxblock.block", "labxblock.compat", "labxblock.analytics", "labxblock.scoring",
              "labxblock.staff", "labxblock.studio", "labxblock.messages", "labxblock.tasks")
RULES = {  # sources → module prefixes they must not import
    "models.py": (*BLOCK_SIDE, "labxblock.labs"),
    "labs/*.py": BLOCK_SIDE,
    "lifecycle/*.py": ("labxblock.",),
    "providers/*.py": ("django", "celery", "labxblock.labs", "labxblock.models", "labxblock.conf"),
}
ALLOWED = {"lifecycle/*.py": ("labxblock.lifecycle",), "providers/*.py": ()}


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, as dotted names (``from labxblock import x`` gives labxblock.x)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("pattern", sorted(RULES))
def test_imports_run_one_way(pattern: str) -> None:
    sources = sorted(PKG.glob(pattern))
    assert sources, pattern
    wrong = {
        f"{path.relative_to(PKG)} imports {name}"
        for path in sources for name in imported(path)
        if name.startswith(RULES[pattern]) and not name.startswith(ALLOWED.get(pattern, ("-",)))
    }
    assert not wrong, sorted(wrong)
