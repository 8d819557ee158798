"""The configured providers, built once per process from settings."""

from __future__ import annotations

import threading

from labxblock.conf import LabSettings, get_settings
from labxblock.providers import load_provider_class
from labxblock.providers.base import Provider

_lock = threading.Lock()
_built: tuple[LabSettings, dict[str, Provider]] | None = None


def providers() -> dict[str, Provider]:
    """Every configured provider, by name.

    Built again only when the settings object changes (tests, reloads), so a
    provider keeps its session, and with it its token, across tasks.
    """
    global _built
    settings = get_settings()
    with _lock:
        if _built is None or _built[0] is not settings:
            built = {
                name: load_provider_class(conf.type)(name, dict(conf.options))
                for name, conf in settings.providers.items()
            }
            _built = (settings, built)
        return _built[1]


def provider(name: str) -> Provider:
    """The provider called ``name`` in ``XBLOCK_SETTINGS["labxblock"]["providers"]``."""
    return providers()[name]
