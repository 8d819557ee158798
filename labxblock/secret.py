"""``Secret``: a string whose ``repr`` hides it, for lab keys and passwords in memory.

Error reports (Django's technical 500 page, Sentry-style reporters, Celery's
tracebacks with locals) show variables by ``repr``, and Django's
``sensitive_variables`` only hides names while DEBUG is off. A secret that is a
``Secret`` shows as ``Secret('…')`` wherever it is: a local, an argument, a value
in a dict or a dataclass. It still *is* the string: ``str()``, formatting,
comparison, JSON and every API taking a ``str`` see the value.

Which template outputs are secret is decided here too (``is_secret_name``), so a provider,
which knows nothing of the site's settings, hides them by the default rule as soon as the
cloud hands them over (``hide_outputs``); the labs code applies the site's own rule.

Pure: no Django, so the gateway, the providers and the check runner use it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

HIDDEN = "Secret('…')"
# Outputs stored encrypted and never shown (fnmatch patterns). The logins of the template
# contract always are, whatever the operator lists: the learner's and the check account's keys.
DEFAULT_SECRET_OUTPUTS = ("private_key", "password", "check_private_key", "*_password", "*_secret", "*_key")
ALWAYS_SECRET_OUTPUTS = ("private_key", "password", "check_private_key")
# Outputs of the template contract that the code reads as plain text: never secret.
PUBLIC_OUTPUTS = ("public_ip", "port", "host_key", "check_user", "reboot_on_resume")


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


def is_secret_name(name: str, patterns: Iterable[str] = DEFAULT_SECRET_OUTPUTS) -> bool:
    """Is the template output ``name`` secret under ``patterns`` (the site's ``secret_outputs``)?"""
    if name in ALWAYS_SECRET_OUTPUTS:
        return True
    return name not in PUBLIC_OUTPUTS and any(fnmatchcase(name, p) for p in patterns)


def hide_outputs(outputs: Mapping[str, Any],
                 is_secret: Callable[[str], bool] = is_secret_name) -> dict[str, Any]:
    """``outputs`` with each secret value a Secret (as text: that is how it is stored)."""
    return {name: hide(value if isinstance(value, str) else str(value))
            if is_secret(name) and value not in (None, "") else value for name, value in outputs.items()}


__all__ = ["ALWAYS_SECRET_OUTPUTS", "DEFAULT_SECRET_OUTPUTS", "HIDDEN", "PUBLIC_OUTPUTS", "Secret", "hide",
           "hide_outputs", "is_secret_name"]
