"""Campaign limits: sends per run, per day of the account's calendar, and overall.

A message over a limit is skipped. Reaching `overall` ends a triggered campaign, which
the stream does by completing it when `overall_limit_reached` turns true.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

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
) -> NotSentReason | None:
    """Return the limit that a send at `at` would exceed, or None.

    The most lasting limit is named first: overall, then the run, then the day. A
    campaign without runs (a triggered one) passes `run_id=None` and has no run limit.
    """
    if limits.overall is not None and counters["overall"] >= limits.overall:
        return NotSentReason.LIMIT_OVERALL
    if (
        limits.per_run is not None
        and run_id is not None
        and counters["runs"].get(run_id, 0) >= limits.per_run
    ):
        return NotSentReason.LIMIT_PER_RUN
    if limits.per_day is not None:
        day = at.astimezone(account_zone).date().isoformat()
        if counters["days"].get(day, 0) >= limits.per_day:
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
