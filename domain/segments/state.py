"""Per-user behaviour state for segment rules, kept by the streaming side.

A rule's event and message conditions each need one *feature*: an event name with its
property filters (and, for message conditions, a campaign id or a label). The state stores,
per feature key, a plain JSON object:

    {"total": 7,                                  # events since the state began
     "days": [[739320, 2], [739322, 5]],          # local day ordinal, events that day
     "recent": [[739322, [1710032400000000, …]]]} # exact epoch microseconds, latest days

`days` keeps the latest `horizon_days + SPARE_DAYS` local days of the feature, and
`recent` the exact times of the latest `MAX_RECENT_TIMES` events of each of its latest
`SPARE_DAYS + 1` days. With the spare days, an evaluation at `now` can ignore events up
to `SPARE_DAYS` local days after `now` and still see the first day of a full-horizon
window. The whole state is one JSON object, so a Faust table can store it as is.

The exact times serve only to leave out today's events after `now`. The engine evaluates
at the time of the event or send it is deciding, so those are the few events ahead of it
by at most the clock skew it accepts.
NOTE: with more than `MAX_RECENT_TIMES` events of one feature on a day after `now`, only
that many are left out of the count.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from domain.segments.values import ValuePredicate, value_predicate
from schemas.segment_rules import (
    MAX_WINDOW_DAYS,
    EventRule,
    MessageRule,
    PropertyFilter,
    SegmentRule,
    walk_rules,
)

__all__ = [
    "DEFAULT_HORIZON_DAYS",
    "MAX_RECENT_TIMES",
    "MESSAGE_EVENTS",
    "SPARE_DAYS",
    "BehaviourState",
    "Feature",
    "apply_event",
    "epoch_us",
    "features_of",
    "new_state",
]

DEFAULT_HORIZON_DAYS = MAX_WINDOW_DAYS
# A user's state is one Kafka record, so one feature's times per day are bounded. A user
# sending tens of thousands of events a day would otherwise outgrow the record.
MAX_RECENT_TIMES = 200
# Ingestion accepts events up to 24 h ahead of their arrival, which can land two local
# days after today across a day of 23 hours.
SPARE_DAYS = 2
MESSAGE_EVENTS = {
    "sent": "Notification Sent",
    "viewed": "Notification Viewed",
    "clicked": "Notification Clicked",
}

BehaviourState = dict[str, Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Feature:
    """One counted kind of event; `key` is derived from its canonical JSON."""

    key: str
    event: str
    canonical: str
    campaign_id: str | None
    label: str | None
    filters: tuple[tuple[str, ValuePredicate], ...]
    # Set for a label condition of one account's segment: only that account's Notification
    # events count, because two accounts may use the same label name.
    account_id: str | None = None

    def matches(self, envelope: dict[str, Any]) -> bool:
        """Tell whether a track event counts for this feature."""
        if envelope.get("type") != "track" or envelope.get("event") != self.event:
            return False
        if self.campaign_id is not None and envelope.get("campaign_id") != self.campaign_id:
            return False
        if self.label is not None and self.label not in (envelope.get("labels") or ()):
            return False
        properties = envelope.get("properties") or {}
        if self.account_id is not None and properties.get("account_id") != self.account_id:
            return False
        return all(test(properties.get(name)) for name, test in self.filters)


def feature_of(rule: EventRule | MessageRule, account_id: str | None = None) -> Feature:
    """Build the feature an event or message condition counts.

    `account_id` is the account whose segment the condition belongs to. A label condition
    then counts only the Notification events of that account's campaigns.
    """
    if isinstance(rule, MessageRule):
        scope = account_id if rule.label is not None else None
        return _feature(MESSAGE_EVENTS[rule.action], [], rule.campaign_id, rule.label, scope)
    return _feature(rule.event, rule.filters, None, None, None)


def _feature(
    event: str,
    filters: list[PropertyFilter],
    campaign_id: str | None,
    label: str | None,
    account_id: str | None,
) -> Feature:
    dumped = sorted(
        (f.model_dump(mode="json") for f in filters),
        key=lambda item: orjson.dumps(item, option=orjson.OPT_SORT_KEYS),
    )
    described: dict[str, Any] = {
        "event": event,
        "filters": dumped,
        "campaign_id": campaign_id,
        "label": label,
    }
    if account_id is not None:
        # Only when set, so that the keys of the counts kept so far stay the same.
        described["account_id"] = account_id
    canonical = orjson.dumps(described, option=orjson.OPT_SORT_KEYS).decode()
    key = hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()
    tests = tuple((f.property, value_predicate(f.op, f.value)) for f in filters)
    return Feature(key, event, canonical, campaign_id, label, tests, account_id)


def features_of(rule: SegmentRule, account_id: str | None = None) -> tuple[Feature, ...]:
    """List the features a rule needs, each once, in the order they first appear."""
    found: dict[str, Feature] = {}
    for feature in _rule_features(rule, account_id):
        found.setdefault(feature.key, feature)
    return tuple(found.values())


def _rule_features(rule: SegmentRule, account_id: str | None) -> Iterator[Feature]:
    for _path, node in walk_rules(rule):
        if isinstance(node, (EventRule, MessageRule)):
            yield feature_of(node, account_id)


def new_state() -> BehaviourState:
    return {"features": {}}


def epoch_us(moment: datetime) -> int:
    """Return microseconds since 1970-01-01 UTC of an aware datetime."""
    return (moment - _EPOCH) // _MICROSECOND


def apply_event(
    state: BehaviourState,
    envelope: dict[str, Any],
    features: Iterable[Feature],
    tz: ZoneInfo,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
) -> bool:
    """Count one event into the state, in place, for every feature it matches.

    Events may arrive in any order. Applying the same event twice counts it twice, so the
    caller must apply each message id once.

    Returns:
        True when the state changed.
    """
    # Keyed by feature, so a feature that several rules need is counted once.
    matched = {feature.key: feature for feature in features if feature.matches(envelope)}
    if not matched:
        return False
    moment = datetime.fromisoformat(envelope["timestamp"])
    day = moment.astimezone(tz).date().toordinal()
    micros = epoch_us(moment)
    entries = state.setdefault("features", {})
    for key in matched:
        entry = entries.setdefault(key, {"total": 0, "days": [], "recent": []})
        entry["total"] += 1
        _count_day(entry["days"], day, horizon_days + SPARE_DAYS)
        _record_time(entry["recent"], day, micros, entry["days"][-1][0] - SPARE_DAYS)
    return True


def _count_day(days: list[list[int]], day: int, keep_days: int) -> None:
    if days and days[-1][0] == day:
        days[-1][1] += 1
    else:
        index = bisect_left(days, day, key=lambda pair: pair[0])
        if index < len(days) and days[index][0] == day:
            days[index][1] += 1
        else:
            days.insert(index, [day, 1])
    first_kept = days[-1][0] - keep_days + 1
    while days[0][0] < first_kept:
        del days[0]


def _record_time(recent: list[list[Any]], day: int, micros: int, first_kept: int) -> None:
    while recent and recent[0][0] < first_kept:
        del recent[0]
    if day < first_kept:
        return
    index = bisect_left(recent, day, key=lambda pair: pair[0])
    if index < len(recent) and recent[index][0] == day:
        times = recent[index][1]
        insort(times, micros)
        if len(times) > MAX_RECENT_TIMES:
            del times[0]
    else:
        recent.insert(index, [day, [micros]])
