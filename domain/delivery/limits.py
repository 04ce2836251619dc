"""Campaign limits: sends per run, per day of the account's calendar, and overall.

A message over a limit is skipped. Each events partition applies its share of a limit,
see `domain.delivery.share`. Past `overall`, every message of the campaign is skipped.
NOTE: a triggered campaign stays `running` after its overall limit; nothing completes it.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from zoneinfo import ZoneInfo

from domain.delivery.share import WHOLE, Share
from domain.delivery.state import CampaignCounters
from schemas.campaign import CampaignLimits
from schemas.delivery import NotSentReason

__all__ = ["limit_reached", "overall_limit_reached", "too_many_qualified"]


def limit_reached(
    limits: CampaignLimits,
    counters: CampaignCounters,
    at: datetime,
    run_id: str | None,
    account_zone: ZoneInfo,
    share: Share = WHOLE,
) -> NotSentReason | None:
    """Return the limit that a send at `at` would exceed, or None.

    The most lasting limit is named first: overall, then the run, then the day. A
    campaign without runs (a triggered one) passes `run_id=None` and has no run limit.
    `counters` are the sends of the partition that `share` describes.
    """
    if limits.overall is not None and counters["overall"] >= share.of(limits.overall):
        return NotSentReason.LIMIT_OVERALL
    if limits.per_run is not None and run_id is not None:
        # Runs have no order to turn by, so a run's id picks whose turn it is.
        turn = zlib.crc32(run_id.encode())
        if counters["runs"].get(run_id, 0) >= share.of(limits.per_run, turn):
            return NotSentReason.LIMIT_PER_RUN
    if limits.per_day is not None:
        day = at.astimezone(account_zone).date()
        if counters["days"].get(day.isoformat(), 0) >= share.of(limits.per_day, day.toordinal()):
            return NotSentReason.LIMIT_PER_DAY
    return None


def overall_limit_reached(limits: CampaignLimits, counters: CampaignCounters) -> bool:
    return limits.overall is not None and counters["overall"] >= limits.overall


def too_many_qualified(limits: CampaignLimits, qualified_users: int) -> bool:
    """Return whether a run must be rejected because more users qualify than allowed.

    The stream checks this once per run, before any decision, and reports the rejection
    to the creator instead of sending.
    """
    return limits.max_qualified_users is not None and qualified_users > limits.max_qualified_users
