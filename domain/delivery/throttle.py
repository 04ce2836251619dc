"""Throttle: at most N sends of a campaign per 5-minute bucket.

Buckets are aligned to the UTC epoch: [00:00, 00:05), [00:05, 00:10) and so on, the same
in every time zone. A message over the limit is held for a later bucket, not dropped,
because a throttle limits the rate of sending and not how many users get the campaign.
Each events partition applies its share of the throttle, see `domain.delivery.share`.

A held message books its place: `hold` counts it in the bucket that `throttled_until`
chose, and later messages look for room behind it. When the bucket comes, the caller
lets the message go with `release` and decides it again, through every control, so it
can still be capped or fall into quiet hours. Each held message is therefore decided
twice, however long the queue. Were held messages not booked, every one would come back
at the next bucket, and N of them would cost about N * N / 2 decisions.
"""

from __future__ import annotations

from datetime import UTC, datetime

from domain.delivery.clock import epoch_seconds
from domain.delivery.share import WHOLE, Share
from domain.delivery.state import BUCKET_S, CampaignCounters
from schemas.campaign import Throttle

__all__ = ["bucket_of", "hold", "release", "throttled_until"]


def bucket_of(at: datetime) -> int:
    """Return the index of the 5-minute bucket holding `at`."""
    return epoch_seconds(at) // BUCKET_S


def throttled_until(
    throttle: Throttle | None, counters: CampaignCounters, at: datetime, share: Share = WHOLE
) -> datetime | None:
    """Return the start of the first later bucket with room for a send when `at`'s bucket
    is full, otherwise None.

    A bucket is full when the sends counted in it and the messages held for it reach its
    share. `counters` are the sends of the partition that `share` describes.
    """
    if throttle is None:
        return None
    limit = throttle.max_per_5_minutes
    sent = counters["buckets"]
    held = counters.get("held") or {}
    bucket = bucket_of(at)
    key = str(bucket)
    if sent.get(key, 0) + held.get(key, 0) < share.of(limit, bucket):
        return None
    # NOTE: slots are booked without regard to the user's quiet hours, so a slot that
    # falls in them stays empty while its message waits for their end.
    later = bucket + 1
    if held:
        # The buckets up to the last one booked were full when it was booked, and a place
        # given back there is for the bucket in progress, so the search starts at the last
        # one. Each booking is at or after the last, so the last key added is the latest.
        later = max(later, int(next(reversed(held))))
    while True:
        key = str(later)
        if sent.get(key, 0) + held.get(key, 0) < share.of(limit, later):
            return datetime.fromtimestamp(later * BUCKET_S, UTC)
        later += 1


def hold(counters: CampaignCounters, send_at: datetime) -> None:
    """Count one more message held for the bucket of `send_at`, the time that
    `throttled_until` gave.

    Unlike the functions of `domain.delivery.state`, this changes `counters` in place,
    because a long queue books thousands of buckets and a copy per message would cost
    about as much as deciding the queue again.
    """
    held = counters.setdefault("held", {})
    key = str(bucket_of(send_at))
    held[key] = held.get(key, 0) + 1


def release(counters: CampaignCounters, send_at: datetime) -> None:
    """Give back the place of one message held for the bucket of `send_at`, in place, so
    that the message can be decided again in it."""
    held = counters.get("held")
    if not held:
        return
    key = str(bucket_of(send_at))
    left = held.get(key, 0) - 1
    if left > 0:
        held[key] = left
    else:
        held.pop(key, None)
