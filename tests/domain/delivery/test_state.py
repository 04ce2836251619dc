from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.delivery import (
    new_campaign_counters,
    new_user_history,
    prune_user_history,
    record_campaign_send,
    record_user_send,
)
from domain.delivery.clock import epoch_seconds
from domain.delivery.state import (
    HISTORY_HORIZON_S,
    MAX_KEPT_BUCKETS,
    MAX_KEPT_RUNS,
    MAX_KEPT_SENDS,
    prune_campaign_buckets,
)

AT = datetime(2026, 3, 2, 15, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


def test_history_json_round_trip() -> None:
    history = record_user_send(new_user_history(), "campaign-1", "email", AT)
    history = record_user_send(history, "campaign-2", "push", AT, False)

    assert json.loads(json.dumps(history)) == history


def test_record_does_not_mutate() -> None:
    before = record_user_send(new_user_history(), "campaign-1", "email", AT)
    snapshot = json.dumps(before)

    record_user_send(before, "campaign-1", "email", AT + timedelta(hours=1))

    assert json.dumps(before) == snapshot


def test_history_sorted_when_out_of_order() -> None:
    history = record_user_send(new_user_history(), "campaign-1", "email", AT)
    history = record_user_send(history, "campaign-1", "email", AT - timedelta(hours=1))

    assert history["channels"]["email"] == [epoch_seconds(AT) - 3600, epoch_seconds(AT)]


def test_history_prunes_past_horizon() -> None:
    old = AT - timedelta(seconds=HISTORY_HORIZON_S + 1)
    history = record_user_send(new_user_history(), "campaign-1", "email", old)
    history = record_user_send(history, "campaign-2", "push", old)

    history = record_user_send(history, "campaign-1", "email", AT)
    pruned = prune_user_history(history, AT)

    assert history["channels"]["email"] == [epoch_seconds(AT)]
    assert history["campaigns"]["campaign-1"] == {"total": 2, "recent": [epoch_seconds(AT)]}
    assert pruned["channels"] == {"email": [epoch_seconds(AT)]}
    assert pruned["campaigns"]["campaign-2"] == {"total": 1, "recent": []}


def test_history_keeps_latest_sends_only() -> None:
    history = new_user_history()
    for minute in range(MAX_KEPT_SENDS + 5):
        history = record_user_send(history, "campaign-1", "email", AT + timedelta(minutes=minute))

    times = history["channels"]["email"]
    assert len(times) == MAX_KEPT_SENDS
    assert times[0] == epoch_seconds(AT + timedelta(minutes=5))
    assert history["campaigns"]["campaign-1"]["total"] == MAX_KEPT_SENDS + 5


def test_counters_keep_latest_buckets() -> None:
    counters = new_campaign_counters()
    sends = [AT + timedelta(minutes=10 * step) for step in range(MAX_KEPT_BUCKETS + 8)]
    for at in sends:
        counters = record_campaign_send(counters, at, None, NEW_YORK)

    latest = sends[-MAX_KEPT_BUCKETS:]
    assert counters["buckets"] == {str(epoch_seconds(at) // 300): 1 for at in latest}
    assert counters["overall"] == MAX_KEPT_BUCKETS + 8
    assert json.loads(json.dumps(counters)) == counters


def test_pruned_counters_keep_later_buckets() -> None:
    counters = new_campaign_counters()
    for step in range(10):
        counters = record_campaign_send(counters, AT + timedelta(minutes=5 * step), None, NEW_YORK)
    first = epoch_seconds(AT) // 300

    pruned = prune_campaign_buckets(counters, first + 7)

    assert sorted(pruned["buckets"], key=int) == [str(first + n) for n in (7, 8, 9)]
    assert pruned["overall"] == 10
    assert prune_campaign_buckets(pruned, first) is pruned


def test_counters_keep_two_days() -> None:
    counters = new_campaign_counters()
    for hours in range(0, 72, 6):
        counters = record_campaign_send(counters, AT + timedelta(hours=hours), None, NEW_YORK)

    assert counters["days"] == {"2026-03-04": 4, "2026-03-05": 1}
    assert counters["overall"] == 12


def test_counters_day_per_zone() -> None:
    # 03:30 UTC on 2026-03-05 is the evening before in New York and morning in Tokyo.
    at = datetime(2026, 3, 5, 3, 30, 15, tzinfo=UTC)
    new_york = record_campaign_send(new_campaign_counters(), at, None, NEW_YORK)
    tokyo = record_campaign_send(new_campaign_counters(), at, None, ZoneInfo("Asia/Tokyo"))

    assert new_york["days"] == {"2026-03-04": 1}
    assert tokyo["days"] == {"2026-03-05": 1}


def test_counters_day_across_dst_change() -> None:
    # New York moves to daylight time at 07:00 UTC on 2026-03-08, and local midnight
    # falls at 05:00 UTC before that and at 04:00 UTC after.
    counters = new_campaign_counters()
    for at in (
        datetime(2026, 3, 8, 4, 59, 59, tzinfo=UTC),
        datetime(2026, 3, 8, 5, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 3, 59, 59, tzinfo=UTC),
        datetime(2026, 3, 9, 4, 0, 0, tzinfo=UTC),
    ):
        counters = record_campaign_send(counters, at, None, NEW_YORK)

    assert counters["days"] == {"2026-03-08": 2, "2026-03-09": 1}


def test_counters_keep_latest_runs() -> None:
    counters = new_campaign_counters()
    for run in range(MAX_KEPT_RUNS + 3):
        counters = record_campaign_send(counters, AT, f"run-{run}", NEW_YORK)
    counters = record_campaign_send(counters, AT, f"run-{MAX_KEPT_RUNS + 2}", NEW_YORK)

    assert list(counters["runs"]) == [f"run-{run}" for run in range(3, MAX_KEPT_RUNS + 3)]
    assert counters["runs"][f"run-{MAX_KEPT_RUNS + 2}"] == 2


def test_counters_keep_latest_buckets_across_a_digit() -> None:
    # Bucket 1,000,000 starts in 1979; its key has one digit more than the one before.
    first = datetime.fromtimestamp((1_000_000 - MAX_KEPT_BUCKETS - 2) * 300, UTC)
    counters = new_campaign_counters()
    for step in range(MAX_KEPT_BUCKETS + 8):
        counters = record_campaign_send(
            counters, first + timedelta(minutes=5 * step), None, ZoneInfo("UTC")
        )

    oldest = 1_000_000 - MAX_KEPT_BUCKETS - 2 + 8
    expected = [str(oldest + n) for n in range(MAX_KEPT_BUCKETS)]
    assert sorted(counters["buckets"], key=int) == expected
