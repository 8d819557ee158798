"""Who answers to the XBlock names ``stackamole`` and ``hastexo``: the old package, or labxblock.

labxblock registers both names (``xblock.v1`` entry points), so courses keep working
once the old package is removed. While the old package is still installed, XBlock's
loader finds two classes for each name and raises ``AmbiguousPluginError`` (edx-platform's
``prefer_xmodules`` only prefers edx-platform's own blocks), and every unit holding such a
component fails to load. ``select`` settles it: set ``XBLOCK_SELECT_FUNCTION =
labxblock.legacy.names.select`` in the LMS and Studio settings and the old package
answers until ``serve_legacy_block_types`` is true, labxblock after. Classes are cached
per process: restart after changing the setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labxblock import compat
from labxblock.legacy import LEGACY_TAGS

SETTING = "serve_legacy_block_types"


def serving() -> bool:
    """Does labxblock serve the old names? False too when labxblock's settings cannot be read."""
    from labxblock.conf import LabSettingsError, get_settings

    try:
        return get_settings().serve_legacy_block_types
    except LabSettingsError:
        return False


def is_ours(entry_point: Any) -> bool:
    return str(entry_point.value).split(":")[0].split(".")[0] == "labxblock"


def select(identifier: str, entry_points: Sequence[Any]) -> Any:
    """An ``XBLOCK_SELECT_FUNCTION``: the old package or labxblock for the old names, per the setting.

    Every other name goes to the platform's own choice (``prefer_xmodules``, or XBlock's default).
    """
    if identifier in LEGACY_TAGS:
        ours = [ep for ep in entry_points if is_ours(ep)]
        theirs = [ep for ep in entry_points if not is_ours(ep)]
        if ours and theirs:
            entry_points = ours if serving() else theirs
    return compat.platform_select()(identifier, list(entry_points))
