"""labxblock.pool_schedule: a warm pool's weekly windows in its time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labxblock.pool_schedule import ScheduleError, parse

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday; Berlin is UTC+1 in March until the 29th


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """UTC time on the ``day``-th day (0 = that Monday)."""
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute)


@pytest.mark.parametrize(("when", "active"), [
    (at(0, 7), True),  # 08:00 in Berlin: the window opens
    (at(0, 6, 59), False),
    (at(0, 16, 59), True),  # 17:59 there
    (at(0, 17), False),  # 18:00 there: closed (the end is not in it)
    (at(4, 12), True),  # Friday
    (at(5, 12), False),  # Saturday
    (at(6, 12), False),
])
def test_weekdays_8_to_18_in_a_time_zone(when, active):
    assert parse("mon-fri 08:00-18:00", "Europe/Berlin").active(when) is active


def test_several_windows_lists_and_a_window_past_midnight():
    schedule = parse("mon,wed 18:00-20:00; fri 22:00-02:00")
    assert schedule.active(at(0, 19)) and schedule.active(at(2, 19)) and not schedule.active(at(1, 19))
    assert schedule.active(at(4, 23)) and schedule.active(at(5, 1, 59))  # Friday night into Saturday
    assert not schedule.active(at(5, 2)) and not schedule.active(at(3, 23))


def test_daily_end_of_day_and_always():
    assert parse("daily 00:00-24:00").active(at(6, 23, 59))
    assert parse("* 09:00-10:00").active(at(5, 9, 30))
    assert parse("").active(at(3, 3)) and parse("  ").active(at(6, 23))


@pytest.mark.parametrize(("text", "zone", "message"), [
    ("weekdays", "UTC", "expected a window such as 'mon-fri 08:00-18:00'"),
    ("mon-fry 08:00-18:00", "UTC", "expected days such as mon-fri"),
    ("mon 25:00-26:00", "UTC", "expected a time of day HH:MM"),
    ("mon 08:00-18:00", "Mars/Olympus", "expected an IANA time zone"),
])
def test_what_cannot_be_read_is_named(text, zone, message):
    with pytest.raises(ScheduleError, match=message):
        parse(text, zone)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 6), st.integers(0, 23), st.integers(0, 23))
def test_a_window_of_n_hours_is_on_for_n_hours_a_week(day, start, end):
    """Property: whatever its day and hours (past midnight too), a window is on for exactly its length
    once a week; a window from an hour to the same hour is a whole day."""
    name = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[day]
    schedule = parse(f"{name} {start:02d}:00-{end:02d}:00", "UTC")
    on = sum(schedule.active(MONDAY + timedelta(minutes=m)) for m in range(0, 7 * 24 * 60, 15))
    hours = (end - start) % 24 or 24
    assert on == hours * 4
