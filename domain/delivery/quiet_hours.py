"""Quiet hours: local hours per weekday when a campaign sends nothing.

A window belongs to the weekday on which it starts. One whose `end` is not after its
`start` crosses midnight and ends on the next day, so `start == end` blocks 24 hours.
Window edges are wall-clock times in the user's zone, turned into instants by the rule
of `domain.delivery.clock`. A window is therefore shorter or longer by the hour the clock
jumps: 22:00 to 08:00 in America/New_York lasts 9 hours in the night to 2024-03-10 and
11 hours in the night to 2024-11-03. A send is quiet when its instant falls inside
[start, end) of a window, so the repeated hour of a fall-back night is quiet only if the
window's instants cover it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.delivery.clock import local_instant
from schemas.campaign import QuietHours, QuietHoursWindow

__all__ = ["ENDLESS", "quiet_until"]

# Returned when windows chain into each other for more than a week. That happens only
# when they cover every hour of the week, so the message can never be sent.
ENDLESS = datetime.max.replace(tzinfo=UTC)

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ONE_DAY = timedelta(days=1)
_MAX_CHAIN = timedelta(days=8)


def quiet_until(quiet: QuietHours | None, at: datetime, zone: ZoneInfo) -> datetime | None:
    """Return when the quiet period around `at` ends, or None when `at` is not quiet.

    Windows that touch or overlap form one period: a message at 23:00 with windows
    Monday 22:00-08:00 and Tuesday 08:00-09:00 waits until 09:00 on Tuesday. The result
    is a UTC instant, or `ENDLESS`.
    """
    if quiet is None:
        return None
    at = at.astimezone(UTC)
    end = _end_of_window_containing(quiet.windows, at, zone)
    if end is None:
        return None
    while end - at <= _MAX_CHAIN:
        following = _end_of_window_containing(quiet.windows, end, zone)
        if following is None:
            return end
        end = following
    return ENDLESS


def _end_of_window_containing(
    windows: list[QuietHoursWindow], at: datetime, zone: ZoneInfo
) -> datetime | None:
    today = at.astimezone(zone).date()
    latest_end: datetime | None = None
    for day in (today - _ONE_DAY, today):
        weekday = _WEEKDAYS[day.weekday()]
        for window in windows:
            if weekday not in window.weekdays:
                continue
            start, end = _window_instants(window, day, zone)
            if start <= at < end and (latest_end is None or end > latest_end):
                latest_end = end
    return latest_end


def _window_instants(
    window: QuietHoursWindow, day: date, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    end_day = day if window.end > window.start else day + _ONE_DAY
    return local_instant(day, window.start, zone), local_instant(end_day, window.end, zone)
