"""Throttle: at most N sends of a campaign per 5-minute bucket.

Buckets are aligned to the UTC epoch: [00:00, 00:05), [00:05, 00:10) and so on, the same
in every time zone. A message over the limit is deferred to the start of the next bucket,
not dropped, because a throttle limits the rate of sending and not how many users get
the campaign. A deferred message goes through every control again when it comes back,
so it can still be capped, fall into quiet hours or be throttled again. Each events
partition applies its share of the throttle, see `domain.delivery.share`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from domain.delivery.clock import epoch_seconds
from domain.delivery.share import WHOLE, Share
from domain.delivery.state import BUCKET_S, CampaignCounters
from schemas.campaign import Throttle

__all__ = ["bucket_of", "throttled_until"]


def bucket_of(at: datetime) -> int:
    """Return the index of the 5-minute bucket holding `at`."""
    return epoch_seconds(at) // BUCKET_S


def throttled_until(
    throttle: Throttle | None, counters: CampaignCounters, at: datetime, share: Share = WHOLE
) -> datetime | None:
    """Return the start of the next bucket with room for a send when `at`'s bucket is
    full, otherwise None. `counters` are the sends of the partition that `share` describes."""
    if throttle is None:
        return None
    bucket = bucket_of(at)
    if counters["buckets"].get(str(bucket), 0) < share.of(throttle.max_per_5_minutes, bucket):
        return None
    # A bucket with a share of nothing is skipped; one of the next `count` buckets has one.
    # NOTE: every held send comes back at the next bucket and is decided again, so N sends
    # held by one throttle cost about N * N / 2 decisions in all.
    later = bucket + 1
    while share.of(throttle.max_per_5_minutes, later) == 0:
        later += 1
    return datetime.fromtimestamp(later * BUCKET_S, UTC)
