"""Providers are found by the entry point group ``labxblock.providers``."""

from __future__ import annotations

from importlib.metadata import entry_points

from labxblock.providers.base import Provider

ENTRY_POINT_GROUP = "labxblock.providers"


def provider_types() -> dict[str, type[Provider]]:
    """Every installed provider type, by entry point name."""
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_provider_class(type_name: str) -> type[Provider]:
    """The provider class registered as ``type_name``; KeyError names the known ones."""
    matches = entry_points(group=ENTRY_POINT_GROUP, name=type_name)
    for ep in matches:
        return ep.load()
    known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise KeyError(f"no provider type {type_name!r}; installed: {', '.join(known) or 'none'}")
