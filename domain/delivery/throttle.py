"""Throttle: at most N sends of a campaign per 5-minute bucket.

Buckets are aligned to the UTC epoch: [00:00, 00:05), [00:05, 00:10) and so on, the same
in every time zone. A message over the limit is deferred to the start of the next bucket,
not dropped, because a throttle limits the rate of sending and not how many users get
the campaign. A deferred message goes through every control again when it comes back,
so it can still be capped, fall into quiet hours or be throttled again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from domain.delivery.clock import epoch_seconds
from domain.delivery.state import BUCKET_S, CampaignCounters
from schemas.campaign import Throttle

__all__ = ["bucket_of", "throttled_until"]


def bucket_of(at: datetime) -> int:
    """Return the index of the 5-minute bucket holding `at`."""
    return epoch_seconds(at) // BUCKET_S


def throttled_until(
    throttle: Throttle | None, counters: CampaignCounters, at: datetime
) -> datetime | None:
    """Return the start of the next bucket when `at`'s bucket is full, otherwise None."""
    if throttle is None:
        return None
    bucket = bucket_of(at)
    if counters["buckets"].get(str(bucket), 0) < throttle.max_per_5_minutes:
        return None
    return datetime.fromtimestamp((bucket + 1) * BUCKET_S, UTC)
