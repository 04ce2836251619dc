"""Frequency caps: the account's cap per channel and a campaign's own per-user limit.

Both count sends already recorded in the user's `UserSendHistory`. A message that breaks
a cap is skipped, not deferred: the user qualifies again with the next trigger or run.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import datetime, time
from zoneinfo import ZoneInfo

from domain.delivery.clock import epoch_seconds, local_day_start, local_instant
from domain.delivery.state import CampaignSends
from schemas.campaign import PerUserLimit
from schemas.delivery import ChannelFrequencyCap

__all__ = ["within_campaign_cap", "within_global_cap"]


def within_global_cap(
    cap: ChannelFrequencyCap | None, sends: list[int], at: datetime, zone: ZoneInfo
) -> bool:
    """Return whether a send at `at` keeps the user within a channel's global cap.

    Messages count by the user's local calendar day: with `days=3`, the sends since
    local midnight two days before `at`'s local day count. The minimum gap is measured
    to the nearest recorded send on either side of `at`, so a decision taken out of
    order cannot slip between two sends.
    """
    if cap is None or not sends:
        return True
    at_s = epoch_seconds(at)
    if cap.min_gap is not None and _too_close(sends, at_s, int(cap.min_gap.total_seconds())):
        return False
    if cap.max_messages is not None:
        since_s = epoch_seconds(local_day_start(at, zone, cap.days - 1))
        if _count_between(sends, since_s, at_s) >= cap.max_messages:
            return False
    return True


def within_campaign_cap(
    limit: PerUserLimit | None, sends: CampaignSends | None, at: datetime, zone: ZoneInfo
) -> bool:
    """Return whether a send at `at` keeps the user within the campaign's per-user limit.

    `zone` is the campaign's delivery time zone, whose calendar the calendar periods
    follow. A rolling window is open at its start: with a window of one day, a send at
    10:00 on Monday allows the next one at 10:00 on Tuesday.
    """
    if limit is None or sends is None:
        return True
    if limit.period == "ever":
        return sends["total"] < limit.max_sends
    at_s = epoch_seconds(at)
    since_s = _period_start_s(limit, at, zone)
    return _count_between(sends["recent"], since_s, at_s) < limit.max_sends


def _period_start_s(limit: PerUserLimit, at: datetime, zone: ZoneInfo) -> int:
    if limit.window is not None:  # PerUserLimit gives a window to rolling limits only
        return epoch_seconds(at) - int(limit.window.total_seconds()) + 1
    local = at.astimezone(zone)
    if limit.period == "calendar_day":
        return epoch_seconds(local_day_start(at, zone))
    if limit.period == "calendar_week":
        return epoch_seconds(local_day_start(at, zone, local.weekday()))
    first_of_month = local.date().replace(day=1)
    return epoch_seconds(local_instant(first_of_month, time.min, zone))


def _count_between(times: list[int], since_s: int, until_s: int) -> int:
    """Count the times in [since_s, until_s]; `times` is sorted."""
    return bisect_right(times, until_s) - bisect_left(times, since_s)


def _too_close(times: list[int], at_s: int, gap_s: int) -> bool:
    index = bisect_left(times, at_s)
    if index < len(times) and times[index] - at_s < gap_s:
        return True
    return index > 0 and at_s - times[index - 1] < gap_s
