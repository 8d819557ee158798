"""Plugin settings for the LMS and Studio (edx_django_utils calls ``plugin_settings``).

Adds labxblock's periodic ticks to the host's ``CELERYBEAT_SCHEDULE`` (edx-platform
reads Celery settings under their old names), with intervals from
``XBLOCK_SETTINGS["labxblock"]``. Runs while the host's settings are still being
built, so it reads the raw values and imports nothing that needs Django ready.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from labxblock.conf import LabSettings

# (beat entry, task name, the setting holding its interval)
TICKS = (
    ("labxblock-reconcile", "labxblock.tasks.reconcile", "reconcile_interval_seconds"),
    ("labxblock-suspend-idle", "labxblock.tasks.suspend_idle", "suspend_idle_interval_seconds"),
    ("labxblock-reap", "labxblock.tasks.reap", "reap_interval_seconds"),
)


def beat_schedule(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The beat entries for labxblock's ticks; a tick that could not run in its interval expires."""
    defaults = LabSettings.__dataclass_fields__
    entries = {}
    for entry, task, setting in TICKS:
        seconds = raw.get(setting, defaults[setting].default)
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 1:
            seconds = defaults[setting].default  # the settings check reports the bad value at startup
        entries[entry] = {
            "task": task,
            "schedule": timedelta(seconds=seconds),
            "options": {"expires": seconds},
        }
    return entries


def plugin_settings(settings: Any) -> None:
    """Add the periodic ticks to the host's beat schedule (entries already there are kept)."""
    raw = (getattr(settings, "XBLOCK_SETTINGS", None) or {}).get("labxblock", {})
    schedule = dict(getattr(settings, "CELERYBEAT_SCHEDULE", None) or {})
    for name, entry in beat_schedule(raw).items():
        schedule.setdefault(name, entry)
    settings.CELERYBEAT_SCHEDULE = schedule
