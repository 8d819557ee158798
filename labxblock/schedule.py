"""labxblock's periodic ticks, scheduled in Celery beat from the site's final settings.

The entries are built when beat starts (``beat_init``), not while the platform's
settings modules are still being read: an operator's values (YAML, a Tutor patch,
an ``lms/envs`` module of their own) are all in place by then. In a beat process
Celery's Django fixup runs ``django.setup()`` (and so ``LabXBlockConfig.ready()``,
which connects :func:`install_ticks`) before it creates the scheduler, and beat
sends ``beat_init`` once the scheduler exists, before the first tick.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from labxblock.conf import LabSettings, LabSettingsError, require_settings

log = logging.getLogger(__name__)

# (beat entry, task name, the setting holding its interval)
TICKS = (
    ("labxblock-reconcile", "labxblock.tasks.reconcile", "reconcile_interval_seconds"),
    ("labxblock-suspend-idle", "labxblock.tasks.suspend_idle", "suspend_idle_interval_seconds"),
    ("labxblock-reap", "labxblock.tasks.reap", "reap_interval_seconds"),
)


def beat_schedule(settings: LabSettings) -> dict[str, dict[str, Any]]:
    """The beat entries of the ticks: on the ticks queue; a tick not run within its interval expires."""
    entries = {}
    for entry, task, setting in TICKS:
        seconds = getattr(settings, setting)
        entries[entry] = {
            "task": task,
            "schedule": timedelta(seconds=seconds),
            "options": {"queue": settings.queues.ticks, "expires": seconds},
        }
    return entries


def install_ticks(sender: Any = None, **_: Any) -> None:
    """``beat_init`` receiver: add (or replace) the ticks in the running beat's scheduler.

    With settings missing or wrong beat keeps running the platform's own entries and
    schedules none of ours: ticks sent to a queue nobody may consume would pile up in
    the broker. The log says why, with the key to fix.
    """
    scheduler = getattr(sender, "scheduler", None)
    if scheduler is None:
        return
    try:
        settings = require_settings("scheduling the ticks in beat")
    except LabSettingsError:
        return
    entries = beat_schedule(settings)
    scheduler.update_from_dict(entries)
    log.info(
        "labxblock: beat runs %s on queue %s",
        ", ".join(f"{e['task'].rsplit('.', 1)[-1]} every {e['schedule'].total_seconds():g} s"
                  for e in entries.values()),
        settings.queues.ticks,
    )
