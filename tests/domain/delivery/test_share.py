"""Each partition's share of a campaign's throttle and limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.delivery import new_campaign_counters, record_campaign_send
from domain.delivery.limits import limit_reached
from domain.delivery.share import WHOLE, Share
from domain.delivery.throttle import bucket_of, throttled_until
from schemas.campaign import CampaignLimits, Throttle
from schemas.delivery import NotSentReason

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")


@given(
    total=st.integers(min_value=0, max_value=10_000),
    count=st.integers(min_value=1, max_value=64),
    turn=st.integers(min_value=-(10**9), max_value=10**9),
)
def test_shares_add_up_to_the_total(total: int, count: int, turn: int) -> None:
    shares = [Share(index, count).of(total, turn) for index in range(count)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1


def test_left_over_units_go_round_the_partitions() -> None:
    # 5 over 4 partitions: one left over, which each partition gets once in 4 periods.
    assert [[Share(index, 4).of(5, turn) for index in range(4)] for turn in range(4)] == [
        [2, 1, 1, 1],
        [1, 2, 1, 1],
        [1, 1, 2, 1],
        [1, 1, 1, 2],
    ]


def test_whole_share_is_the_total() -> None:
    assert WHOLE.of(7, 3) == 7


def test_partition_out_of_range_rejected() -> None:
    with pytest.raises(ValueError, match="invalid partition 4: expected 0 to 3"):
        Share(4, 4)


def test_overall_limit_split_over_partitions() -> None:
    limits = CampaignLimits(overall=10)
    reached = []
    for index in range(4):
        counters = new_campaign_counters()
        sent = 0
        while limit_reached(limits, counters, START, None, UTC_ZONE, Share(index, 4)) is None:
            counters = record_campaign_send(counters, START, None, UTC_ZONE)
            sent += 1
        reached.append(sent)
    assert reached == [3, 3, 2, 2]


def test_daily_limit_share_turns_with_the_day() -> None:
    limits = CampaignLimits(per_day=1)
    share = Share(2, 3)
    days_with_room = []
    for day in range(6):
        at = START + timedelta(days=day)
        if limit_reached(limits, new_campaign_counters(), at, None, UTC_ZONE, share) is None:
            days_with_room.append(day)
    # One send a day over three partitions: each partition has it every third day.
    assert len(days_with_room) == 2
    assert days_with_room[1] - days_with_room[0] == 3


def test_run_limit_split_over_partitions() -> None:
    limits = CampaignLimits(per_run=7)
    allowed = []
    for index in range(3):
        counters = new_campaign_counters()
        while limit_reached(limits, counters, START, "run-1", UTC_ZONE, Share(index, 3)) is None:
            counters = record_campaign_send(counters, START, "run-1", UTC_ZONE)
        allowed.append(counters["runs"]["run-1"])
    assert sum(allowed) == 7
    assert sorted(allowed) == [2, 2, 3]
    assert (
        limit_reached(limits, counters, START, "run-1", UTC_ZONE, Share(2, 3))
        is NotSentReason.LIMIT_PER_RUN
    )


def test_small_throttle_defers_to_own_bucket() -> None:
    throttle = Throttle(max_per_5_minutes=1)
    counters = new_campaign_counters()
    for index in range(4):
        share = Share(index, 4)
        until = throttled_until(throttle, counters, START, share)
        if share.of(1, bucket_of(START)) == 1:
            assert until is None
            continue
        # The next bucket whose one send belongs to this partition.
        assert until is not None
        later = bucket_of(until)
        assert share.of(1, later) == 1
        assert all(share.of(1, bucket) == 0 for bucket in range(bucket_of(START), later))
        assert throttled_until(throttle, counters, until, share) is None
