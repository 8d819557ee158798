"""When a warm pool is kept full: an operator's weekly windows in a time zone.

Pure Python (no Django): ``parse`` turns the operator's text into a :class:`Schedule`,
or raises :class:`ScheduleError` saying what is wrong, and ``Schedule.active(now)``
tells whether ``now`` falls in a window. The text is one or more windows separated
by ``;``, each ``<days> <HH:MM>-<HH:MM>``:

- days: ``mon-fri``, ``mon,wed,fri``, ``sat-sun``, ``daily`` (or ``*``);
- times in the pool's time zone; an end at or before the start runs past midnight
  (``fri 22:00-02:00`` ends on Saturday at two); ``24:00`` is the end of the day.

An empty text means always.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERY_DAY = frozenset(range(7))
_WINDOW_RE = re.compile(r"^(?P<days>\S+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$")
EXAMPLE = "mon-fri 08:00-18:00"


class ScheduleError(ValueError):
    """The schedule or time zone cannot be read; the message says what is expected."""


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and minutes of the day; ``end <= start`` runs past midnight."""

    days: frozenset[int]
    start: int
    end: int

    def covers(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        # Past midnight: from the start on a listed day, or before the end on the day after one.
        return (weekday in self.days and minute >= self.start) or (
            (weekday - 1) % 7 in self.days and minute < self.end
        )


@dataclass(frozen=True)
class Schedule:
    """A pool's windows in its time zone; no windows: always active."""

    windows: tuple[Window, ...]
    zone: ZoneInfo

    def active(self, now: datetime) -> bool:
        """Is ``now`` (an aware datetime) inside one of the windows?"""
        if not self.windows:
            return True
        local = now.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        return any(window.covers(local.weekday(), minute) for window in self.windows)


def _days(text: str) -> frozenset[int]:
    if text in ("daily", "*"):
        return EVERY_DAY
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ScheduleError(f"{part!r}: expected days such as mon-fri, sat,sun or daily")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def _minutes(text: str, *, end: bool) -> int:
    hours, minutes = (int(n) for n in text.split(":"))
    if hours == 24 and minutes == 0 and end:
        return 24 * 60
    if hours > 23 or minutes > 59:
        raise ScheduleError(f"{text!r}: expected a time of day HH:MM")
    return hours * 60 + minutes


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (e.g. Europe/Berlin), or ScheduleError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{name!r}: expected an IANA time zone such as UTC or Europe/Berlin") from None


def parse(text: str, time_zone: str = "UTC") -> Schedule:
    """The schedule ``text`` in ``time_zone``; ScheduleError naming the part that is wrong."""
    windows = []
    for part in (p.strip().lower() for p in text.split(";")):
        if not part:
            continue
        match = _WINDOW_RE.match(part)
        if match is None:
            raise ScheduleError(f"{part!r}: expected a window such as {EXAMPLE!r}")
        start = _minutes(match["start"], end=False)
        stop = _minutes(match["end"], end=True)
        windows.append(Window(_days(match["days"]), start, stop))
    return Schedule(tuple(windows), zone(time_zone))
