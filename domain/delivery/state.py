"""The state the delivery controls read, as plain JSON-ready dicts for Faust tables.

Two records exist: a user's send history (kept per user, in the user's partition) and a
campaign's counters (kept per campaign). Both are bounded. Send times older than
`HISTORY_HORIZON_S` are pruned, which covers the longest window any control reads: a
global cap of 30 local days, a calendar month, or a rolling window of 30 days, each plus
one day of time-zone offset. At most `MAX_KEPT_SENDS` times are kept per list, because a
cap of N sends only ever needs the latest N.

The record functions never change their input. They return a new record, so a caller
can compare or discard it before writing it back to a table.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Callable
from datetime import datetime
from typing import NotRequired, TypedDict
from zoneinfo import ZoneInfo

from domain.delivery.clock import epoch_seconds

__all__ = [
    "BUCKET_S",
    "HISTORY_HORIZON_S",
    "MAX_KEPT_BUCKETS",
    "MAX_KEPT_RUNS",
    "MAX_KEPT_SENDS",
    "CampaignCounters",
    "CampaignSends",
    "UserSendHistory",
    "new_campaign_counters",
    "new_user_history",
    "prune_campaign_buckets",
    "prune_user_history",
    "record_campaign_send",
    "record_user_send",
]

HISTORY_HORIZON_S = 32 * 86_400
MAX_KEPT_SENDS = 1000
MAX_KEPT_RUNS = 8
BUCKET_S = 300
# The engine drops a throttle bucket's count once its partition's event time has passed
# the bucket by more than the lateness it accepts (`prune_campaign_buckets`). This bound
# only keeps a partition's record small when sends are held far ahead, such as at the
# end of a replay: 512 buckets are 42 hours.
MAX_KEPT_BUCKETS = 512
_KEPT_DAYS = 2
# Local ISO dates by zone and minute since the epoch, see `_local_day`.
_LOCAL_DAYS: dict[tuple[ZoneInfo, int], str] = {}
_MAX_LOCAL_DAYS = 4096


class CampaignSends(TypedDict):
    """One campaign's sends to one user: the count ever and the recent send times."""

    total: int
    recent: list[int]


class UserSendHistory(TypedDict):
    """A user's sends, as epoch seconds in ascending order.

    `channels` lists the sends that count toward the global caps of each channel;
    `campaigns` lists every send of each campaign.
    """

    channels: dict[str, list[int]]
    campaigns: dict[str, CampaignSends]


class CampaignCounters(TypedDict):
    """A campaign's sends per 5-minute bucket, per account-local day, per run and overall.

    Keys are strings so that the record survives a JSON round trip: a bucket is the epoch
    second of its start divided by `BUCKET_S`, a day is an ISO date.

    `held` counts, per bucket, the sends that the throttle holds for that bucket
    (`domain.delivery.throttle`). Records written before it existed have none.

    The engine keeps one record per campaign and events partition, and each partition
    applies its share of the throttle and the limits (`domain.delivery.share`).
    """

    buckets: dict[str, int]
    days: dict[str, int]
    runs: dict[str, int]
    overall: int
    held: NotRequired[dict[str, int]]


def new_user_history() -> UserSendHistory:
    return {"channels": {}, "campaigns": {}}


def new_campaign_counters() -> CampaignCounters:
    return {"buckets": {}, "days": {}, "runs": {}, "overall": 0}


def record_user_send(
    history: UserSendHistory,
    campaign_id: str,
    channel: str,
    at: datetime,
    counts_toward_global_caps: bool = True,
) -> UserSendHistory:
    """Return `history` with one more send of `campaign_id` on `channel` at `at`.

    A campaign that ignores the global caps passes `counts_toward_global_caps=False`, so
    that its messages (password resets, receipts) do not use up the user's marketing
    allowance on that channel.
    """
    at_s = epoch_seconds(at)
    oldest_s = at_s - HISTORY_HORIZON_S
    channels = dict(history["channels"])
    if counts_toward_global_caps:
        channels[channel] = _with_time(channels.get(channel, []), at_s, oldest_s)
    campaigns = dict(history["campaigns"])
    previous = campaigns.get(campaign_id)
    total = previous["total"] if previous else 0
    recent = previous["recent"] if previous else []
    campaigns[campaign_id] = {"total": total + 1, "recent": _with_time(recent, at_s, oldest_s)}
    return {"channels": channels, "campaigns": campaigns}


def prune_user_history(history: UserSendHistory, now: datetime) -> UserSendHistory:
    """Return `history` without send times older than the horizon.

    Channels left without sends are dropped. A campaign's entry stays, because its
    `total` feeds per-user limits of period `ever`.

    NOTE: campaign entries are never dropped, so the record grows by one small entry per
    campaign the user was ever sent. This lasts until the stream drops the entries of
    completed and deleted campaigns.
    """
    oldest_s = epoch_seconds(now) - HISTORY_HORIZON_S
    channels = {
        channel: kept
        for channel, times in history["channels"].items()
        if (kept := times[bisect_right(times, oldest_s) :])
    }
    campaigns: dict[str, CampaignSends] = {
        campaign_id: {"total": sends["total"], "recent": _newer_than(sends["recent"], oldest_s)}
        for campaign_id, sends in history["campaigns"].items()
    }
    return {"channels": channels, "campaigns": campaigns}


def record_campaign_send(
    counters: CampaignCounters, at: datetime, run_id: str | None, account_zone: ZoneInfo
) -> CampaignCounters:
    """Return `counters` with one more send at `at`, in run `run_id` if it has runs.

    At most the latest `MAX_KEPT_BUCKETS` buckets and the latest two days are kept.
    Runs keep the latest `MAX_KEPT_RUNS` ids in the order they first appeared.
    """
    at_s = epoch_seconds(at)
    bucket = str(at_s // BUCKET_S)
    day = _local_day(at_s, account_zone)
    runs = counters["runs"]
    if run_id is not None:
        runs = _latest_keys({**runs, run_id: runs.get(run_id, 0) + 1}, MAX_KEPT_RUNS)
    updated: CampaignCounters = {
        "buckets": _latest_counts(counters["buckets"], bucket, int, MAX_KEPT_BUCKETS),
        "days": _latest_counts(counters["days"], day, str, _KEPT_DAYS),
        "runs": runs,
        "overall": counters["overall"] + 1,
    }
    if "held" in counters:
        updated["held"] = counters["held"]
    return updated


def prune_campaign_buckets(counters: CampaignCounters, oldest_bucket: int) -> CampaignCounters:
    """Return `counters` without the throttle counts of buckets before `oldest_bucket`,
    sent or held."""
    buckets = counters["buckets"]
    recent = {key: count for key, count in buckets.items() if int(key) >= oldest_bucket}
    held = counters.get("held", {})
    # Places are booked in time order (`domain.delivery.throttle.hold`), so the stale ones
    # come first, and a long queue is not read through at every bucket. A place is given
    # back when its bucket comes, so this only drops a place that was somehow left over.
    stale = 0
    for key in held:
        if int(key) >= oldest_bucket:
            break
        stale += 1
    if len(recent) == len(buckets) and not stale:
        return counters
    pruned: CampaignCounters = {**counters, "buckets": recent}
    if stale:
        pruned["held"] = dict(list(held.items())[stale:])
    return pruned


def _with_time(times: list[int], at_s: int, oldest_s: int) -> list[int]:
    kept = _newer_than(times, oldest_s)
    insort(kept, at_s)
    return kept[-MAX_KEPT_SENDS:]


def _newer_than(times: list[int], oldest_s: int) -> list[int]:
    return times[bisect_right(times, oldest_s) :]


def _local_day(at_s: int, zone: ZoneInfo) -> str:
    """Return the ISO date of `at_s` in `zone`, cached by zone and minute."""
    # A minute lies within one local day when the zone's offset is a whole number of
    # minutes. In tzdata that is true of every zone from 7 January 1972, when Liberia
    # (Africa/Monrovia) left an offset of -0:44:30.
    key = (zone, at_s // 60)
    day = _LOCAL_DAYS.get(key)
    if day is None:
        if len(_LOCAL_DAYS) >= _MAX_LOCAL_DAYS:
            _LOCAL_DAYS.clear()
        day = datetime.fromtimestamp(key[1] * 60, zone).date().isoformat()
        _LOCAL_DAYS[key] = day
    return day


def _latest_counts(
    counts: dict[str, int], added: str, sort_key: Callable[[str], int | str], kept: int
) -> dict[str, int]:
    updated = {**counts, added: counts.get(added, 0) + 1}
    if len(updated) > kept:
        # One key more than kept: drop the oldest. Keys of one length (buckets until 2065,
        # ISO days) compare as text in time order, which spares a conversion per key.
        same_length = len({*map(len, updated)}) == 1
        del updated[min(updated) if same_length else min(updated, key=sort_key)]
    return updated


def _latest_keys(counts: dict[str, int], kept: int) -> dict[str, int]:
    return dict(list(counts.items())[-kept:])
