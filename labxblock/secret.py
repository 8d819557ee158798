"""``Secret``: a string whose ``repr`` hides it, for lab keys and passwords in memory.

Error reports (Django's technical 500 page, Sentry-style reporters, Celery's
tracebacks with locals) show variables by ``repr``, and Django's
``sensitive_variables`` only hides names while DEBUG is off. A secret that is a
``Secret`` shows as ``Secret('…')`` wherever it is: a local, an argument, a value
in a dict or a dataclass. It still *is* the string: ``str()``, formatting,
comparison, JSON and every API taking a ``str`` see the value.

Pure: no Django, so the gateway and the check runner use it too.
"""

from __future__ import annotations

from typing import Any

HIDDEN = "Secret('…')"


class Secret(str):
    """A secret value: equal to its text, shown as ``Secret('…')`` by ``repr``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return HIDDEN


def hide(value: Any) -> Any:
    """``value`` as a Secret if it is a non-empty string (already one, or "" / None: as it is)."""
    if isinstance(value, str) and value and not isinstance(value, Secret):
        return Secret(value)
    return value


__all__ = ["HIDDEN", "Secret", "hide"]
