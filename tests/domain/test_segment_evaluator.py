"""The streaming segment evaluator and its behaviour state, on hand-made histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from domain.segments import SegmentEvaluator, apply_event, features_of, new_state
from domain.segments.state import SPARE_DAYS
from schemas.segment_rules import parse_segment_rule
from tests.queries.test_segment_sql import make_envelope

NEW_YORK = "America/New_York"
KOLKATA = "Asia/Kolkata"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _matches(
    definition: dict[str, Any],
    *,
    now: datetime,
    tz: str = "UTC",
    traits: dict[str, Any] | None = None,
    events: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> bool:
    rule = parse_segment_rule(definition)
    state = new_state()
    for envelope in events:
        apply_event(state, envelope, features_of(rule), ZoneInfo(tz))
    return SegmentEvaluator(rule, tz).matches(traits or {}, state, now)


def _did(
    event: str = "Charged", window: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "type": "event",
        "event": event,
        "window": window or {"type": "last_days", "days": 1},
    } | fields


def _charged(at: str, **fields: Any) -> dict[str, Any]:
    return make_envelope(_utc(at), event="Charged", **fields)


# User properties ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "trait", "expected"),
    [
        ("eq", "pro", "pro", True),
        ("eq", "pro", "Pro", False),
        ("eq", 42, 42.0, True),
        ("eq", 42, "42", False),
        ("eq", "42", 42, False),
        ("eq", 1, True, False),
        ("eq", True, True, True),
        ("ne", "pro", "free", True),
        ("ne", "pro", None, False),
        ("in", ["a", 3], 3.0, True),
        ("in", ["a", 3], "3", False),
        ("not_in", ["a"], "b", True),
        ("not_in", ["a"], None, False),
        ("contains", "ro", "pro", True),
        ("contains", "a", ["a", "b"], True),
        ("contains", 1, [1.0], True),
        ("contains", 1, ["1"], False),
        ("contains", "1", 1, False),
        ("starts_with", "p", "pro", True),
        ("starts_with", "p", ["pro"], False),
        ("gt", 10, 10.5, True),
        ("gt", 10, "11", False),
        ("gte", 10, 10, True),
        ("lt", 10, False, False),
        ("lte", 10, 10, True),
        ("between", [1, 5], 5, True),
        ("between", [1, 5], 5.01, False),
        ("exists", None, "", True),
        ("exists", None, None, False),
        ("not_exists", None, None, True),
        ("is_empty", None, "", True),
        ("is_empty", None, [], True),
        ("is_empty", None, {}, True),
        ("is_empty", None, None, True),
        ("is_empty", None, 0, False),
        ("is_empty", None, " ", False),
    ],
)
def test_trait_ops(op: str, value: Any, trait: Any, expected: bool) -> None:
    definition = {"type": "trait", "trait": "t", "op": op}
    if value is not None:
        definition["value"] = value
    traits = {} if trait is None else {"t": trait}
    assert _matches(definition, now=datetime(2024, 3, 10, tzinfo=UTC), traits=traits) is expected


@pytest.mark.parametrize(
    ("op", "days", "renewal", "expected"),
    [
        ("in_last_days", 2, "2024-03-09", True),
        ("in_last_days", 2, "2024-03-08", False),
        ("in_next_days", 2, "2024-03-11", True),
        ("in_next_days", 2, "2024-03-12", False),
        ("days_from_now", 0, "2024-03-10", True),
        ("days_from_now", -1, "2024-03-09", True),
        # 03:00 UTC on 10 March is still 9 March in New York.
        ("days_from_now", -1, "2024-03-10T03:00:00Z", True),
        ("days_from_now", 0, "2024-03-10T09:00:00+05:30", False),
        ("days_from_now", 0, "2024-03-10T12:00:00", False),
        ("days_from_now", 0, "2024-02-30", False),
        ("days_from_now", 0, "10 March 2024", False),
        ("days_from_now", 0, 20240310, False),
    ],
)
def test_trait_dates(op: str, days: int, renewal: Any, expected: bool) -> None:
    definition = {"type": "trait_date", "trait": "renewal", "op": op, "days": days}
    now = _utc("2024-03-10T12:00:00-04:00")
    result = _matches(definition, now=now, tz=NEW_YORK, traits={"renewal": renewal})
    assert result is expected


def test_contact_traits() -> None:
    now = datetime(2024, 3, 10, tzinfo=UTC)
    email = {"type": "has_contact", "channel": "email"}
    assert _matches(email, now=now, traits={"email": "a@x.io"})
    assert not _matches(email, now=now, traits={"email": ""})
    assert not _matches(email, now=now, traits={"email": 7})
    assert _matches({"type": "has_contact", "channel": "push"}, now=now, traits={"push_token": "t"})
    assert _matches({"type": "has_contact", "channel": "sms"}, now=now, traits={"phone": "+1555"})


def test_subscription_flags() -> None:
    now = datetime(2024, 3, 10, tzinfo=UTC)
    subscribed = {"type": "subscribed", "channel": "email"}
    assert _matches(subscribed, now=now, traits={})
    assert _matches(subscribed, now=now, traits={"MSG-email": True})
    assert not _matches(subscribed, now=now, traits={"MSG-email": False})
    assert not _matches(subscribed, now=now, traits={"MSG-email": " False "})
    assert _matches(subscribed, now=now, traits={"MSG-email": "no"})
    assert _matches(subscribed, now=now, traits={"MSG-sms": False})


# Windows and time zones --------------------------------------------------------------


def test_last_days_includes_today() -> None:
    now = _utc("2024-06-05T12:00:00Z")
    two_days = _did(window={"type": "last_days", "days": 2})
    assert _matches(two_days, now=now, events=[_charged("2024-06-04T00:00:00Z")])
    assert not _matches(two_days, now=now, events=[_charged("2024-06-03T23:59:59.999999Z")])


def test_event_after_now_ignored() -> None:
    now = _utc("2024-06-05T12:00:00Z")
    assert _matches(_did(), now=now, events=[_charged("2024-06-05T12:00:00Z")])
    assert not _matches(_did(), now=now, events=[_charged("2024-06-05T12:00:00.000001Z")])
    assert not _matches(_did(), now=now, events=[_charged("2024-06-06T01:00:00Z")])


def test_spring_forward_day() -> None:
    # 10 March 2024 is 23 hours long in New York: 05:00 UTC to 04:00 UTC on 11 March.
    now = _utc("2024-03-10T23:30:00-04:00")
    assert _matches(_did(), now=now, tz=NEW_YORK, events=[_charged("2024-03-10T05:00:00Z")])
    late = _charged("2024-03-10T04:59:59.999999Z")
    assert not _matches(_did(), now=now, tz=NEW_YORK, events=[late])
    after_now = _charged("2024-03-11T03:30:00.000001Z")
    assert not _matches(_did(), now=now, tz=NEW_YORK, events=[after_now])


def test_fall_back_day() -> None:
    # 3 November 2024 is 25 hours long in New York, and 01:30 happens twice.
    now = _utc("2024-11-03T23:59:00-05:00")
    twice = [_charged("2024-11-03T05:30:00Z"), _charged("2024-11-03T06:30:00Z")]
    exactly_two = _did(count={"op": "exactly", "value": 2})
    assert _matches(exactly_two, now=now, tz=NEW_YORK, events=twice)
    assert _matches(_did(), now=now, tz=NEW_YORK, events=[_charged("2024-11-03T04:00:00Z")])
    eve = _charged("2024-11-03T03:59:59Z")
    assert not _matches(_did(), now=now, tz=NEW_YORK, events=[eve])


def test_half_hour_offset() -> None:
    now = _utc("2024-03-10T10:00:00Z")  # 15:30 in Kolkata
    midnight = _charged("2024-03-09T18:30:00Z")
    assert _matches(_did(), now=now, tz=KOLKATA, events=[midnight])
    before = _charged("2024-03-09T18:29:59.999999Z")
    assert not _matches(_did(), now=now, tz=KOLKATA, events=[before])
    assert not _matches(_did(), now=now, tz="UTC", events=[midnight])


def test_between_dates_local() -> None:
    now = _utc("2024-03-20T12:00:00Z")
    window = {"type": "between", "start": "2024-03-10", "end": "2024-03-10"}
    rule = _did(window=window)
    assert _matches(rule, now=now, tz=NEW_YORK, events=[_charged("2024-03-11T03:59:59Z")])
    assert not _matches(rule, now=now, tz=NEW_YORK, events=[_charged("2024-03-11T04:00:00Z")])


def test_between_clipped_to_horizon() -> None:
    now = _utc("2024-06-30T12:00:00Z")
    rule = _did(window={"type": "between", "start": "2024-01-01", "end": "2024-12-31"})
    # The 90 local days ending with 30 June start on 2 April.
    assert _matches(rule, now=now, events=[_charged("2024-04-02T00:00:00Z")])
    assert not _matches(rule, now=now, events=[_charged("2024-04-01T23:59:59Z")])


def test_since_first_seen_counts_old_events() -> None:
    now = _utc("2024-06-30T12:00:00Z")
    events = [
        _charged("2023-01-01T00:00:00Z"),
        _charged("2024-06-30T11:00:00Z"),
        _charged("2024-06-30T13:00:00Z"),
        _charged("2024-07-01T09:00:00Z"),
    ]
    rule = _did(window={"type": "since_first_seen"}, count={"op": "exactly", "value": 2})
    assert _matches(rule, now=now, events=events)


# Counts and negation -----------------------------------------------------------------


def test_count_conditions() -> None:
    now = _utc("2024-06-05T12:00:00Z")
    events = [_charged("2024-06-05T01:00:00Z"), _charged("2024-06-05T02:00:00Z")]
    assert _matches(_did(count={"op": "at_least", "value": 2}), now=now, events=events)
    assert not _matches(_did(count={"op": "at_least", "value": 3}), now=now, events=events)
    assert _matches(_did(count={"op": "at_most", "value": 2}), now=now, events=events)
    assert not _matches(_did(count={"op": "exactly", "value": 1}), now=now, events=events)


def test_did_not_negates_count() -> None:
    now = _utc("2024-06-05T12:00:00Z")
    events = [_charged("2024-06-05T01:00:00Z"), _charged("2024-06-05T02:00:00Z")]
    fewer_than_three = _did(did=False, count={"op": "at_least", "value": 3})
    assert _matches(fewer_than_three, now=now, events=events)
    assert not _matches(_did(did=False), now=now, events=events)
    assert _matches(_did(did=False), now=now, events=[])


def test_property_filters() -> None:
    now = _utc("2024-06-05T12:00:00Z")
    big = _did(filters=[{"property": "Amount", "op": "gte", "value": 100}])
    assert _matches(
        big, now=now, events=[_charged("2024-06-05T01:00:00Z", properties={"Amount": 100})]
    )
    assert not _matches(
        big, now=now, events=[_charged("2024-06-05T01:00:00Z", properties={"Amount": "100"})]
    )
    assert not _matches(big, now=now, events=[_charged("2024-06-05T01:00:00Z")])


def test_message_conditions() -> None:
    now = _utc("2024-06-05T12:00:00Z")
    sent = make_envelope(
        _utc("2024-06-04T08:00:00Z"),
        event="Notification Sent",
        campaign_id="c1",
        labels=["Onboarding"],
    )
    window = {"type": "last_days", "days": 2}
    by_label = {"type": "message", "action": "sent", "label": "Onboarding", "window": window}
    assert _matches(by_label, now=now, events=[sent])
    assert not _matches(by_label | {"label": "onboarding"}, now=now, events=[sent])
    by_campaign = {"type": "message", "action": "sent", "campaign_id": "c1", "window": window}
    assert _matches(by_campaign, now=now, events=[sent])
    assert not _matches(by_campaign | {"action": "clicked"}, now=now, events=[sent])


def test_and_or_not() -> None:
    now = datetime(2024, 3, 10, tzinfo=UTC)
    pro = {"type": "trait", "trait": "plan", "op": "eq", "value": "pro"}
    email = {"type": "has_contact", "channel": "email"}
    traits = {"plan": "pro"}
    assert not _matches({"type": "and", "rules": [pro, email]}, now=now, traits=traits)
    assert _matches({"type": "or", "rules": [pro, email]}, now=now, traits=traits)
    assert _matches({"type": "not", "rule": email}, now=now, traits=traits)


# State -------------------------------------------------------------------------------


def test_state_round_trips_json() -> None:
    rule = parse_segment_rule(_did(count={"op": "exactly", "value": 2}))
    state = new_state()
    for at in ("2024-06-05T02:00:00Z", "2024-06-05T01:00:00Z", "2024-06-04T23:00:00Z"):
        apply_event(state, _charged(at), features_of(rule), ZoneInfo("UTC"))
    decoded = orjson.loads(orjson.dumps(state))
    assert SegmentEvaluator(rule, "UTC").matches({}, decoded, _utc("2024-06-05T12:00:00Z"))


def test_state_bounded_by_horizon() -> None:
    rule = parse_segment_rule(_did())
    [feature] = features_of(rule)
    state = new_state()
    start = _utc("2024-01-01T12:00:00Z")
    for day in range(200):
        apply_event(
            state, _charged((start + timedelta(days=day)).isoformat()), [feature], ZoneInfo("UTC")
        )
    entry = state["features"][feature.key]
    assert entry["total"] == 200
    assert len(entry["days"]) == 90 + SPARE_DAYS
    assert len(entry["recent"]) == SPARE_DAYS + 1


def test_late_event_beyond_horizon_counts_lifetime() -> None:
    rule = parse_segment_rule(
        _did(window={"type": "since_first_seen"}, count={"op": "exactly", "value": 2})
    )
    state = new_state()
    for at in ("2024-06-05T01:00:00Z", "2023-06-05T01:00:00Z"):
        apply_event(state, _charged(at), features_of(rule), ZoneInfo("UTC"))
    assert SegmentEvaluator(rule, "UTC").matches({}, state, _utc("2024-06-05T12:00:00Z"))


def test_apply_ignores_other_events() -> None:
    rule = parse_segment_rule(_did())
    state = new_state()
    identify = make_envelope(_utc("2024-06-05T01:00:00Z"), traits={"plan": "pro"})
    assert not apply_event(state, identify, features_of(rule), ZoneInfo("UTC"))
    assert state == {"features": {}}


def test_feature_keys_stable() -> None:
    one = {"property": "Amount", "op": "gt", "value": 1}
    two = {"property": "platform", "op": "eq", "value": "ios"}
    first = features_of(parse_segment_rule(_did(filters=[one, two])))
    second = features_of(parse_segment_rule(_did(filters=[two, one])))
    assert [f.key for f in first] == [f.key for f in second]
    both = {"type": "or", "rules": [_did(filters=[one, two]), _did(filters=[two, one], did=False)]}
    assert len(features_of(parse_segment_rule(both))) == 1


def test_window_longer_than_horizon() -> None:
    rule = parse_segment_rule(
        {"type": "not", "rule": _did(window={"type": "last_days", "days": 30})}
    )
    with pytest.raises(
        ValueError, match=r"^not.rule.event: a window of 30 days is longer than the 7 days"
    ):
        SegmentEvaluator(rule, "UTC", horizon_days=7)


def test_naive_now_rejected() -> None:
    evaluator = SegmentEvaluator(parse_segment_rule(_did()), "UTC")
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluator.matches({}, new_state(), datetime(2024, 3, 10))


def test_shared_feature_counted_once() -> None:
    rule = parse_segment_rule(_did(count={"op": "exactly", "value": 1}))
    [feature] = features_of(rule)
    state = new_state()
    apply_event(state, _charged("2024-06-05T01:00:00Z"), [feature, feature], ZoneInfo("UTC"))
    assert SegmentEvaluator(rule, "UTC").matches({}, state, _utc("2024-06-05T12:00:00Z"))
