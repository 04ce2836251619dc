"""Frequency caps: the account's cap per channel and a campaign's own per-user limit.

Both count sends already recorded in the user's `UserSendHistory`. A message that breaks
a cap is skipped, not deferred: the user qualifies again with the next trigger or run.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.delivery.clock import epoch_seconds, local_instant
from domain.delivery.state import CampaignSends
from schemas.campaign import PerUserLimit
from schemas.delivery import ChannelFrequencyCap

__all__ = ["within_campaign_cap", "within_global_cap"]


def within_global_cap(
    cap: ChannelFrequencyCap | None, sends: list[int], at: datetime, zone: ZoneInfo
) -> bool:
    """Return whether a send at `at` keeps the user within a channel's global cap.

    Messages count by the user's local calendar day: with `days=3`, no three consecutive
    local days may contain more than `max_messages` sends. A late event can be decided after
    sends later than itself, so every span of `days` days around `at`'s day is checked,
    not only the one that ends on it. The minimum gap is likewise measured to the nearest
    recorded send on either side of `at`.
    """
    if cap is None or not sends:
        return True
    at_s = epoch_seconds(at)
    if cap.min_gap is not None and _too_close(sends, at_s, int(cap.min_gap.total_seconds())):
        return False
    if cap.max_messages is not None:
        day = at.astimezone(zone).date()
        # A span that fits the most sends ends on `at`'s day or on a later day with a send.
        ends = {day}
        if sends[-1] > at_s:
            last_s = _day_start_s(day + timedelta(days=cap.days), zone)
            later = sends[bisect_right(sends, at_s) : bisect_left(sends, last_s)]
            ends |= {datetime.fromtimestamp(send_s, zone).date() for send_s in later}
        for end in ends:
            since_s = _day_start_s(end - timedelta(days=cap.days - 1), zone)
            until_s = _day_start_s(end + timedelta(days=1), zone)
            if _count_between(sends, since_s, until_s - 1) >= cap.max_messages:
                return False
    return True


def within_campaign_cap(
    limit: PerUserLimit | None, sends: CampaignSends | None, at: datetime, zone: ZoneInfo
) -> bool:
    """Return whether a send at `at` keeps the user within the campaign's per-user limit.

    `zone` is the campaign's delivery time zone, whose calendar the calendar periods
    follow. A calendar period counts all its sends, also those later than `at`. A rolling
    window is open at its start: with a window of one day, a send at 10:00 on Monday
    allows the next one at 10:00 on Tuesday, and every window around `at` is checked.
    """
    if limit is None or sends is None:
        return True
    if limit.period == "ever":
        return sends["total"] < limit.max_sends
    recent = sends["recent"]
    at_s = epoch_seconds(at)
    if limit.window is not None:  # PerUserLimit gives a window to rolling limits only
        return _fits_every_window(recent, at_s, int(limit.window.total_seconds()), limit.max_sends)
    since_s, until_s = _period_bounds_s(limit, at, zone)
    return _count_between(recent, since_s, until_s - 1) < limit.max_sends


def _period_bounds_s(limit: PerUserLimit, at: datetime, zone: ZoneInfo) -> tuple[int, int]:
    """Return the first second of `at`'s calendar period and the first one after it."""
    day = at.astimezone(zone).date()
    if limit.period == "calendar_day":
        first, after = day, day + timedelta(days=1)
    elif limit.period == "calendar_week":
        first = day - timedelta(days=day.weekday())
        after = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        after = (first + timedelta(days=31)).replace(day=1)
    return _day_start_s(first, zone), _day_start_s(after, zone)


def _fits_every_window(times: list[int], at_s: int, window_s: int, limit: int) -> bool:
    """Tell whether one more time at `at_s` keeps every window of `window_s` seconds that
    contains it under `limit`. A window with the most times ends at `at_s` or at a time."""
    ends = [at_s, *times[bisect_right(times, at_s) : bisect_right(times, at_s + window_s - 1)]]
    return all(_count_between(times, end - window_s + 1, end) < limit for end in ends)


def _day_start_s(day: date, zone: ZoneInfo) -> int:
    return epoch_seconds(local_instant(day, time.min, zone))


def _count_between(times: list[int], since_s: int, until_s: int) -> int:
    """Count the times in [since_s, until_s]; `times` is sorted."""
    return bisect_right(times, until_s) - bisect_left(times, since_s)


def _too_close(times: list[int], at_s: int, gap_s: int) -> bool:
    index = bisect_left(times, at_s)
    if index < len(times) and times[index] - at_s < gap_s:
        return True
    return index > 0 and at_s - times[index - 1] < gap_s
