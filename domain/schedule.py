"""Run times of a campaign's When section.

Times of day are local to the account's time zone. With delivery in each user's time zone
a run is staggered by zone, and these functions return the run in the account's zone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.errors import InvalidValue
from schemas.campaign import (
    TRIGGERED_TYPES,
    DatePropertyTrigger,
    OneTimeAt,
    OneTimeNow,
    RecurringSchedule,
    When,
)

__all__ = ["first_run_at", "is_triggered", "next_date_run_after", "next_run_after", "reschedule"]

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Five years of days bounds the search for a monthly schedule whose only chosen day
# (the 31st) falls in a short month many times in a row.
_MAX_SEARCH_DAYS = 5 * 366


def is_triggered(when: When) -> bool:
    return when.type in TRIGGERED_TYPES


def first_run_at(when: When, timezone: str) -> datetime | None:
    """Return when the first run is due: None for `now`, and a trigger's start if any."""
    if isinstance(when, OneTimeNow):
        return None
    if isinstance(when, OneTimeAt):
        return when.at
    if isinstance(when, RecurringSchedule):
        start = datetime.combine(when.start_date, time.min, ZoneInfo(timezone))
        return next_run_after(when, timezone, start - timedelta(microseconds=1))
    return when.start_at


def next_run_after(when: RecurringSchedule, timezone: str, after: datetime) -> datetime | None:
    """Return the first run of `when` strictly after `after`, or None past its end."""
    zone = ZoneInfo(timezone)
    day = max(after.astimezone(zone).date(), when.start_date)
    for _ in range(_MAX_SEARCH_DAYS):
        if when.end_date is not None and day > when.end_date:
            return None
        # Through UTC and back, a local time that a daylight-saving change skips reads
        # as the wall-clock time it becomes (02:30 as 03:30), with its real offset.
        run = datetime.combine(day, when.local_time, zone).astimezone(UTC).astimezone(zone)
        if _runs_on(when, day) and run > after:
            if when.end_at is not None and run > when.end_at:
                return None
            return run
        day += timedelta(days=1)
    return None


def next_date_run_after(
    when: DatePropertyTrigger, timezone: str, after: datetime
) -> datetime | None:
    """Return the first daily run of a date-property campaign strictly after `after`.

    Such a campaign runs every day at its `local_time`, sending to the users whose date
    falls `days_before` days later. Runs stay within `start_at` and `end_at`.
    """
    if when.start_at is not None and after < when.start_at:
        after = when.start_at - timedelta(microseconds=1)
    daily = RecurringSchedule(
        frequency="daily",
        local_time=when.local_time,
        start_date=after.astimezone(ZoneInfo(timezone)).date(),
        end_at=when.end_at,
        timezone=when.timezone,
    )
    return next_run_after(daily, timezone, after)


def reschedule(when: When, at: datetime | None, run_now: bool, timezone: str) -> When:
    """Return `when` moved to start at `at`, or changed to run now.

    Raises:
        InvalidValue: `run_now` for a schedule that is not one-time.
    """
    if run_now:
        if when.type not in ("now", "at"):
            raise InvalidValue(
                f"only a one-time campaign can run now, and this one is {when.type!r}; "
                "give a new time (`at`) instead",
                ("run_now",),
            )
        return OneTimeNow(start_at=None, end_at=when.end_at, timezone=when.timezone)
    if at is None:
        return when
    if isinstance(when, OneTimeAt | OneTimeNow):
        return OneTimeAt(at=at, end_at=when.end_at, timezone=when.timezone)
    if isinstance(when, RecurringSchedule):
        local = at.astimezone(ZoneInfo(timezone))
        return when.model_copy(update={"start_date": local.date(), "local_time": local.time()})
    return when.model_copy(update={"start_at": at})


def _runs_on(when: RecurringSchedule, day: date) -> bool:
    if when.frequency == "daily":
        return True
    if when.frequency == "weekly":
        return _WEEKDAYS[day.weekday()] in when.weekdays
    return day.day in when.month_days
