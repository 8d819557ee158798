"""What a conversion could not carry over as it was: one note per field or element, in plain words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DROPPED = "dropped"  # no equivalent here: the value is not used
CHANGED = "changed"  # carried over, but it works differently or was adjusted
ERROR = "error"  # the old OLX itself is wrong: nothing is converted until it is fixed
KINDS = (ERROR, DROPPED, CHANGED)
VALUE_CHARS = 80


@dataclass(frozen=True)
class Note:
    """One thing an operator or author should know about a converted block."""

    kind: str  # DROPPED, CHANGED or ERROR
    field: str  # the old field, element or attribute it is about
    text: str
    value: str = ""  # the old value, shortened (scripts and templates are never secrets)

    def line(self) -> str:
        shown = f" (was {self.value})" if self.value else ""
        return f"{self.kind}: {self.field}{shown}: {self.text}"


def shown(value: Any) -> str:
    """A value as one short line for a report."""
    text = " ".join(str(value).split())
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def errors(notes: list[Note] | tuple[Note, ...]) -> list[Note]:
    return [n for n in notes if n.kind == ERROR]
