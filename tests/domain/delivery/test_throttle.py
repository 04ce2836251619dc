from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.delivery import (
    AccountRules,
    CampaignRules,
    SendCandidate,
    decide,
    new_campaign_counters,
    new_user_history,
    record_campaign_send,
)
from domain.delivery.state import prune_campaign_buckets
from domain.delivery.throttle import bucket_of, hold, release, throttled_until
from schemas.campaign import Throttle
from schemas.delivery import DeliveryOutcome, NotSentReason

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")


def test_buckets_aligned_to_epoch() -> None:
    assert bucket_of(datetime(1970, 1, 1, 0, 4, 59, tzinfo=UTC)) == 0
    assert bucket_of(datetime(1970, 1, 1, 0, 5, tzinfo=UTC)) == 1
    assert bucket_of(START) * 300 == START.timestamp()


def test_full_bucket_defers_to_next() -> None:
    throttle = Throttle(max_per_5_minutes=2)
    counters = new_campaign_counters()
    at = START + timedelta(minutes=3, seconds=20)
    for _ in range(2):
        assert throttled_until(throttle, counters, at) is None
        counters = record_campaign_send(counters, at, None, UTC_ZONE)

    assert throttled_until(throttle, counters, at) == START + timedelta(minutes=5)
    assert throttled_until(throttle, counters, START + timedelta(minutes=5)) is None


def _arrivals(
    make_candidate: Callable[..., SendCandidate],
) -> list[tuple[datetime, int, SendCandidate]]:
    """Return a heap of one candidate every 0.72 s from 12:00:00, with its arrival number.

    417 arrive in the first bucket, 417 in the second and 166 in the third.
    """
    queue = [
        (START + timedelta(seconds=0.72 * i), i, make_candidate(START, user_id=f"user-{i}"))
        for i in range(1000)
    ]
    heapq.heapify(queue)
    return queue


def test_thousand_candidates_in_twelve_minutes(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    campaign = make_campaign({"throttle": {"max_per_5_minutes": 100}})
    account = make_account()
    queue = _arrivals(make_candidate)
    counters = new_campaign_counters()
    sent_per_bucket: Counter[int] = Counter()
    deferrals = 0
    sequence = len(queue)

    while queue:
        at, _, candidate = heapq.heappop(queue)
        candidate = replace(candidate, at=at)
        decision = decide(candidate, campaign, account, new_user_history(), counters)
        if decision.outcome is DeliveryOutcome.DEFER:
            assert decision.reason is NotSentReason.THROTTLED
            assert decision.send_at is not None
            deferrals += 1
            sequence += 1
            heapq.heappush(queue, (decision.send_at, sequence, candidate))
            continue
        assert decision.sent
        sent_per_bucket[bucket_of(at) - bucket_of(START)] += 1
        counters = record_campaign_send(counters, at, None, account.zone)

    assert dict(sent_per_bucket) == {bucket: 100 for bucket in range(10)}
    # Backlog carried out of buckets 0 to 8: 317, 634, 700, 600, 500, 400, 300, 200, 100.
    assert deferrals == 3751
    assert len(counters["buckets"]) == 10


def test_held_messages_book_their_buckets(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    campaign = make_campaign({"throttle": {"max_per_5_minutes": 100}})
    account = make_account()
    # The same arrivals as above, but each held message books its place.
    queue = _arrivals(make_candidate)
    counters = new_campaign_counters()
    sent_per_bucket: Counter[int] = Counter()
    deferred: Counter[str] = Counter()
    sent_order: list[int] = []

    while queue:
        at, number, candidate = heapq.heappop(queue)
        if deferred[candidate.user_id]:
            release(counters, at)
        candidate = replace(candidate, at=at)
        decision = decide(candidate, campaign, account, new_user_history(), counters)
        if decision.outcome is DeliveryOutcome.DEFER:
            assert decision.reason is NotSentReason.THROTTLED
            assert decision.send_at is not None
            deferred[candidate.user_id] += 1
            hold(counters, decision.send_at)
            heapq.heappush(queue, (decision.send_at, number, candidate))
            continue
        assert decision.sent
        sent_per_bucket[bucket_of(at) - bucket_of(START)] += 1
        sent_order.append(number)
        counters = record_campaign_send(counters, at, None, account.zone)

    assert dict(sent_per_bucket) == {bucket: 100 for bucket in range(10)}
    # Only the first 100 go at once; every other message is held exactly once, and they
    # go out in the order they arrived.
    assert sum(deferred.values()) == 900
    assert set(deferred.values()) == {1}
    assert sent_order == list(range(1000))
    assert counters.get("held") == {}


def test_held_messages_queue_behind_earlier_ones() -> None:
    throttle = Throttle(max_per_5_minutes=2)
    counters = new_campaign_counters()
    at = START + timedelta(seconds=10)
    for _ in range(2):
        counters = record_campaign_send(counters, at, None, UTC_ZONE)
    # Five held messages fill the next two buckets and half of the third.
    times = []
    for _ in range(5):
        until = throttled_until(throttle, counters, at)
        assert until is not None
        hold(counters, until)
        times.append(until - START)
    assert times == [timedelta(minutes=m) for m in (5, 5, 10, 10, 15)]
    assert counters.get("held") == {
        str(bucket_of(START) + n): c for n, c in ((1, 2), (2, 2), (3, 1))
    }
    # A message of the second bucket finds it full of held ones.
    assert throttled_until(throttle, counters, START + timedelta(minutes=6)) == START + timedelta(
        minutes=15
    )
    # Letting one go makes room for it in its own bucket, and no more.
    release(counters, START + timedelta(minutes=5))
    assert throttled_until(throttle, counters, START + timedelta(minutes=5)) is None
    counters = record_campaign_send(counters, START + timedelta(minutes=5), None, UTC_ZONE)
    assert throttled_until(throttle, counters, START + timedelta(minutes=5, seconds=1)) is not None


def test_pruning_drops_held_counts_of_past_buckets() -> None:
    counters = new_campaign_counters()
    for minutes in (5, 10, 10):
        hold(counters, START + timedelta(minutes=minutes))
    pruned = prune_campaign_buckets(counters, bucket_of(START) + 2)
    assert pruned.get("held") == {str(bucket_of(START) + 2): 2}
    assert prune_campaign_buckets(pruned, bucket_of(START) + 2) is pruned


def test_spent_overall_limit_skips_instead_of_holding(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    campaign = make_campaign({"throttle": {"max_per_5_minutes": 1}, "limits": {"overall": 1}})
    account = make_account()
    counters = record_campaign_send(new_campaign_counters(), START, None, UTC_ZONE)
    candidate = make_candidate(START + timedelta(seconds=1))

    decision = decide(candidate, campaign, account, new_user_history(), counters)

    # The bucket is full, but the message could never be sent in a later one either.
    assert decision.outcome is DeliveryOutcome.SKIP
    assert decision.reason is NotSentReason.LIMIT_OVERALL
