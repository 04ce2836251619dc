from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from domain.errors import InvalidValue
from domain.schedule import first_run_at, next_run_after, reschedule
from schemas.campaign import EventTrigger, OneTimeAt, OneTimeNow, RecurringSchedule


def test_first_run_one_time() -> None:
    at = datetime(2026, 3, 3, 9, tzinfo=UTC)
    assert first_run_at(OneTimeAt(at=at), "UTC") == at
    assert first_run_at(OneTimeNow(), "UTC") is None


def test_first_run_weekly_local_time() -> None:
    when = RecurringSchedule(
        frequency="weekly", local_time=time(9), weekdays=["fri"], start_date=date(2026, 3, 2)
    )
    first = first_run_at(when, "Europe/Berlin")
    assert first == datetime(2026, 3, 6, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "local_time", "shown"),
    [
        # 02:30 does not exist on the spring change, so it runs at 03:30 EDT.
        (date(2027, 3, 14), time(2, 30), "2027-03-14T03:30:00-04:00"),
        # 01:30 happens twice on the autumn change, and the first one counts.
        (date(2027, 11, 7), time(1, 30), "2027-11-07T01:30:00-04:00"),
    ],
)
def test_first_run_daylight_saving_change(start: date, local_time: time, shown: str) -> None:
    when = RecurringSchedule(frequency="daily", local_time=local_time, start_date=start)

    first = first_run_at(when, "America/New_York")

    assert first is not None
    assert first.isoformat() == shown


def test_monthly_skips_short_months() -> None:
    when = RecurringSchedule(
        frequency="monthly", local_time=time(9), month_days=[31], start_date=date(2026, 4, 1)
    )
    assert first_run_at(when, "UTC") == datetime(2026, 5, 31, 9, tzinfo=UTC)


def test_next_run_respects_end_date() -> None:
    when = RecurringSchedule(
        frequency="daily",
        local_time=time(9),
        start_date=date(2026, 3, 2),
        end_date=date(2026, 3, 3),
    )
    assert next_run_after(when, "UTC", datetime(2026, 3, 2, 9, tzinfo=UTC)) == datetime(
        2026, 3, 3, 9, tzinfo=UTC
    )
    assert next_run_after(when, "UTC", datetime(2026, 3, 3, 9, tzinfo=UTC)) is None


def test_trigger_first_run_is_start() -> None:
    start = datetime(2026, 3, 3, tzinfo=UTC)
    assert first_run_at(EventTrigger(event="home", start_at=start), "UTC") == start
    assert first_run_at(EventTrigger(event="home"), "UTC") is None


def test_reschedule_run_now_recurring() -> None:
    when = RecurringSchedule(frequency="daily", local_time=time(9), start_date=date(2026, 3, 2))
    with pytest.raises(InvalidValue) as caught:
        reschedule(when, None, True, "UTC")
    assert "only a one-time campaign can run now" in str(caught.value)


def test_reschedule_recurring_new_start() -> None:
    when = RecurringSchedule(frequency="daily", local_time=time(9), start_date=date(2026, 3, 2))
    moved = reschedule(when, datetime(2026, 3, 5, 7, 30, tzinfo=UTC), False, "Europe/Berlin")
    assert isinstance(moved, RecurringSchedule)
    assert moved.start_date == date(2026, 3, 5)
    assert moved.local_time == time(8, 30)
