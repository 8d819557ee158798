"""An operator's settings, in Tutor's order: the ``openedx-common-settings`` patch after production."""

from .production import *  # noqa: F403
from .production import XBLOCK_SETTINGS

XBLOCK_SETTINGS["labxblock"]["reconcile_interval_seconds"] = 5
