"""The streaming evaluator and the SQL compiler choose the same members for any rule.

Hypothesis draws rules, a `now`, and a time zone with DST or a non-hour offset. It also
draws a history of a few users over the 100 days before `now` and the two days after it.
Many timestamps fall at or near local midnight, on window edges, or at `now` itself. The
history is landed as Parquet and folded into profiles and behaviour states, and both
sides must return the same user ids for every rule.
"""

from __future__ import annotations

import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.segments import SegmentEvaluator, apply_event, features_of, new_state
from queries.catalog import connect
from queries.segments import segment_members
from schemas.segment_rules import SegmentRule, parse_segment_rule
from schemas.wire import partition_key
from tests.queries.test_segment_sql import build_profiles, land, make_envelope

# Hundreds of examples each land and fsync a few dozen files, which memory-backed storage
# makes cheap where the machine has it.
_SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
ZONES = [
    "UTC",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Europe/London",
]
DST_DATES = [
    date(2024, 3, 9), date(2024, 3, 10), date(2024, 3, 11), date(2024, 3, 31),
    date(2024, 4, 7), date(2024, 10, 6), date(2024, 10, 27), date(2024, 11, 3),
    date(2024, 11, 4),
]  # fmt: skip
EVENTS = [
    "Charged",
    "App Launched",
    "Notification Sent",
    "Notification Clicked",
    "Notification Viewed",
]
# Day offsets from today on both sides of every window edge the rules below can draw.
EDGE_OFFSETS = [-100, -91, -90, -89, -88, -30, -29, -7, -6, -2, -1, 0, 1, 2]
WINDOW_DAYS = [1, 2, 7, 30, 89, 90]
USERS = [("u1", None), ("u2", None), ("u3", None), (None, "anon-4")]
VALUES: list[Any] = ["pro", "Pro", "a", "", "42", 1, 3, 42, 42.0, 41.5, -1, True, False]
NUMBERS: list[Any] = [-1, 0, 3, 41.5, 42, 100]
TRAIT_NAMES = ["plan", "age", "tags", "email", "MSG-email", "renew", "missing"]


def _pick(*weighted: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Choose among strategies by weight; `one_of` would weigh the branches of nested ones."""
    choices = [strategy for weight, strategy in weighted for _ in range(weight)]
    return st.sampled_from(choices).flatmap(lambda strategy: strategy)


day_offsets = _pick((3, st.sampled_from(EDGE_OFFSETS)), (1, st.integers(-100, 2)))
local_times = st.one_of(
    st.sampled_from(
        [time(0), time(0, 0, 0, 1), time(0, 30), time(23, 30), time(23, 59, 59, 999999)]
    ),
    st.times(),
)
clocks = st.tuples(
    st.one_of(
        st.sampled_from(DST_DATES),
        st.dates(min_value=date(2024, 1, 1), max_value=date(2024, 12, 31)),
    ),
    local_times,
    st.sampled_from(ZONES),
)
# An event time is microseconds from `now`, or a local day offset from today and a time.
event_times = _pick(
    (1, st.tuples(st.just("now"), st.sampled_from([-1, 0, 1]))),
    (7, st.tuples(st.just("day"), day_offsets, local_times)),
)
# A date trait is a day offset from today and a format; the test writes the string.
date_traits = st.tuples(
    _pick((3, st.sampled_from([-2, -1, 0, 1, 2])), (1, st.integers(-12, 12))),
    st.sampled_from(["date", "Z", "+05:30", "-03:30", "+13:45", "naive", "bad", "number"]),
    st.sampled_from(["00:30:00", "23:45:10.5", "12:00:00"]),
)
trait_updates = st.fixed_dictionaries(
    {},
    optional={
        "plan": st.sampled_from(VALUES),
        "age": st.sampled_from(VALUES),
        "tags": st.lists(st.sampled_from(VALUES), max_size=3),
        "email": st.sampled_from(["a@x.io", "", 7, None]),
        "push_token": st.sampled_from(["tok", ""]),
        "phone": st.sampled_from(["+15550100", None]),
        "MSG-email": st.sampled_from([True, False, "false", " FALSE ", "falsy", None]),
        "MSG-sms": st.sampled_from([True, False]),
        "renew": date_traits,
    },
)
tracks = st.fixed_dictionaries(
    {
        "event": _pick((4, st.just(EVENTS[0])), (1, st.sampled_from(EVENTS[1:]))),
        "properties": st.builds(
            lambda values, account: values | account,
            st.dictionaries(
                st.sampled_from(["Amount", "platform"]),
                st.sampled_from([*VALUES, "ios", "android"]),
            ),
            # The account of a Notification event's campaign, which scopes label rules.
            st.sampled_from([{}, {"account_id": "acc-a"}, {"account_id": "acc-b"}]),
        ),
        "campaign_id": st.sampled_from(["c1", "c2", None]),
        "labels": st.one_of(st.none(), st.lists(st.sampled_from(["Onboarding", "Reengage"]))),
    }
)
histories = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        event_times,
        _pick((2, tracks), (1, st.builds(lambda traits: {"traits": traits}, trait_updates))),
    ),
    min_size=10,
    max_size=30,
)


def _operand(op: str) -> st.SearchStrategy[Any]:
    if op in ("in", "not_in"):
        return st.lists(st.sampled_from(VALUES), min_size=1, max_size=3)
    if op in ("gt", "gte", "lt", "lte"):
        return st.sampled_from(NUMBERS)
    if op == "between":
        return st.lists(st.sampled_from(NUMBERS), min_size=2, max_size=2).map(sorted)
    if op == "starts_with":
        return st.sampled_from(["p", "P", "a@", "", "4"])
    return st.sampled_from(VALUES)


def _trait_rule(op: str) -> st.SearchStrategy[dict[str, Any]]:
    base = st.builds(
        lambda trait: {"type": "trait", "trait": trait, "op": op}, st.sampled_from(TRAIT_NAMES)
    )
    if op in ("exists", "not_exists", "is_empty"):
        return base
    return st.builds(lambda rule, value: rule | {"value": value}, base, _operand(op))


TRAIT_OPS = [
    "eq", "ne", "in", "not_in", "contains", "starts_with", "gt", "gte", "lt", "lte",
    "between", "exists", "not_exists", "is_empty",
]  # fmt: skip
trait_rules = st.sampled_from(TRAIT_OPS).flatmap(_trait_rule)
trait_date_rules = _pick(
    (
        2,
        st.builds(
            lambda trait, op, days: {"type": "trait_date", "trait": trait, "op": op, "days": days},
            st.sampled_from(["renew", "renew", "plan"]),
            st.sampled_from(["in_last_days", "in_next_days"]),
            st.sampled_from([1, 2, 8]),
        ),
    ),
    (
        1,
        st.builds(
            lambda trait, days: {
                "type": "trait_date",
                "trait": trait,
                "op": "days_from_now",
                "days": days,
            },
            st.sampled_from(["renew", "renew", "plan"]),
            st.integers(-2, 2),
        ),
    ),
)
# A `between` window has day offsets from today until the test turns them into dates.
windows = _pick(
    (3, st.builds(lambda days: {"type": "last_days", "days": days}, st.sampled_from(WINDOW_DAYS))),
    (
        2,
        st.builds(
            lambda pair: {"type": "between", "start": pair[0], "end": pair[1]},
            st.lists(day_offsets, min_size=2, max_size=2).map(sorted),
        ),
    ),
    (1, st.just({"type": "since_first_seen"})),
)
counts = st.one_of(
    st.builds(lambda value: {"op": "at_least", "value": value}, st.integers(1, 3)),
    st.builds(
        lambda op, value: {"op": op, "value": value},
        st.sampled_from(["at_most", "exactly"]),
        st.integers(0, 3),
    ),
)
property_filters = st.builds(
    lambda name, op, value: {"property": name, "op": op, "value": value},
    st.sampled_from(["Amount", "platform"]),
    st.sampled_from(["eq", "ne", "gt", "lte", "contains"]),
    st.sampled_from([*VALUES, "ios"]),
)
event_rules = st.fixed_dictionaries(
    {
        "type": st.just("event"),
        "event": _pick((4, st.just(EVENTS[0])), (1, st.sampled_from([*EVENTS[1:], "Never Done"]))),
        "did": st.booleans(),
        "filters": _pick((3, st.just([])), (1, st.lists(property_filters, min_size=1, max_size=2))),
        "count": counts,
        "window": windows,
    }
)
message_rules = st.builds(
    lambda rule, selector: rule | selector,
    st.fixed_dictionaries(
        {
            "type": st.just("message"),
            "action": st.sampled_from(["sent", "viewed", "clicked"]),
            "did": st.booleans(),
            "count": counts,
            "window": windows,
        }
    ),
    st.one_of(
        st.builds(lambda value: {"campaign_id": value}, st.sampled_from(["c1", "c2"])),
        st.builds(lambda value: {"label": value}, st.sampled_from(["Onboarding", "Reengage"])),
    ),
)
channels = st.sampled_from(["email", "push", "sms"])
rules = st.recursive(
    _pick(
        (2, trait_rules),
        (2, trait_date_rules),
        (6, event_rules),
        (2, message_rules),
        (1, st.builds(lambda channel: {"type": "has_contact", "channel": channel}, channels)),
        (1, st.builds(lambda channel: {"type": "subscribed", "channel": channel}, channels)),
    ),
    lambda children: st.one_of(
        st.builds(
            lambda rules: {"type": "and", "rules": rules},
            st.lists(children, min_size=1, max_size=3),
        ),
        st.builds(
            lambda rules: {"type": "or", "rules": rules}, st.lists(children, min_size=1, max_size=3)
        ),
        st.builds(lambda rule: {"type": "not", "rule": rule}, children),
    ),
    max_leaves=6,
)


def _event_time(spec: tuple[Any, ...], now: datetime, zone: ZoneInfo) -> datetime:
    if spec[0] == "now":
        return now + timedelta(microseconds=spec[1])
    today = now.astimezone(zone).date()
    return datetime.combine(today + timedelta(days=spec[1]), spec[2], tzinfo=zone)


def _date_trait(spec: tuple[int, str, str], today: date) -> Any:
    offset, form, clock = spec
    day = (today + timedelta(days=offset)).isoformat()
    written = {"date": day, "naive": f"{day}T{clock}", "bad": "2024-02-30", "number": 20240310}
    return written.get(form, f"{day}T{clock}{form}")


def _envelopes(history: list[Any], now: datetime, zone: ZoneInfo) -> list[dict[str, Any]]:
    today = now.astimezone(zone).date()
    envelopes = []
    for (user_id, anonymous_id), when, payload in history:
        at = _event_time(when, now, zone)
        fields = dict(payload)
        if "traits" in fields and "renew" in fields["traits"]:
            traits = dict(fields["traits"])
            traits["renew"] = _date_trait(traits["renew"], today)
            fields["traits"] = traits
        envelopes.append(make_envelope(at, user_id=user_id, anonymous_id=anonymous_id, **fields))
    return envelopes


def _dated(definition: Any, today: date) -> Any:
    """Turn the day offsets of `between` windows into ISO dates, anywhere in the tree."""
    if isinstance(definition, list):
        return [_dated(item, today) for item in definition]
    if not isinstance(definition, dict):
        return definition
    if definition.get("type") == "between":
        return definition | {
            key: (today + timedelta(days=definition[key])).isoformat() for key in ("start", "end")
        }
    return {key: _dated(value, today) for key, value in definition.items()}


def _streaming_members(
    rules: list[SegmentRule],
    envelopes: list[dict[str, Any]],
    now: datetime,
    tz: str,
    account_id: str | None,
) -> list[set[str]]:
    zone = ZoneInfo(tz)
    features = [feature for rule in rules for feature in features_of(rule, account_id)]
    states: dict[str, dict[str, Any]] = {}
    for envelope in envelopes:
        state = states.setdefault(partition_key(envelope), new_state())
        apply_event(state, envelope, features, zone)
    profiles = build_profiles(envelopes)
    members = []
    for rule in rules:
        evaluator = SegmentEvaluator(rule, tz, account_id=account_id)
        members.append(
            {
                key
                for key, profile in profiles.items()
                if evaluator.matches(profile["traits"], states[key], now)
            }
        )
    return members


def _sql_members(
    rules: list[SegmentRule],
    envelopes: list[dict[str, Any]],
    now: datetime,
    tz: str,
    account_id: str | None,
) -> list[set[str]]:
    with tempfile.TemporaryDirectory(dir=_SCRATCH) as directory:
        data_dir = Path(directory)
        land(data_dir, envelopes)
        with connect(data_dir) as connection:
            return [
                set(segment_members(connection, rule, now=now, tz=tz, account_id=account_id))
                for rule in rules
            ]


def _parse(definition: dict[str, Any], today: date) -> SegmentRule:
    try:
        return parse_segment_rule(_dated(definition, today))
    except ValidationError:
        # Only a long chain of `not` can nest deeper than the rule language allows.
        assume(False)
        raise


# Landing the history costs more than a query, so each example checks several rules on it:
# three drawn from the whole language and one condition on traits alone.
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    clock=clocks,
    history=histories,
    definitions=st.lists(rules, min_size=3, max_size=3),
    profile_definition=_pick((1, trait_rules), (2, trait_date_rules)),
    account_id=st.sampled_from([None, "acc-a"]),
)
def test_evaluators_agree(
    clock: tuple[date, time, str],
    history: list[Any],
    definitions: list[dict[str, Any]],
    profile_definition: dict[str, Any],
    account_id: str | None,
) -> None:
    day, local_time, tz = clock
    zone = ZoneInfo(tz)
    now = datetime.combine(day, local_time, tzinfo=zone)
    today = now.astimezone(zone).date()
    rules = [_parse(definition, today) for definition in [*definitions, profile_definition]]
    envelopes = _envelopes(history, now, zone)

    streaming = _streaming_members(rules, envelopes, now, tz, account_id)
    sql = _sql_members(rules, envelopes, now, tz, account_id)

    for rule, streamed, selected in zip(rules, streaming, sql, strict=True):
        assert streamed == selected, rule


def test_label_rules_count_own_account_only() -> None:
    now = datetime(2024, 3, 13, 12, tzinfo=ZoneInfo("UTC"))
    sent = now - timedelta(hours=1)
    rule = parse_segment_rule(
        {
            "type": "message",
            "action": "sent",
            "label": "Onboarding",
            "window": {"type": "last_days", "days": 7},
        }
    )
    envelopes = [
        make_envelope(
            sent,
            user_id=user,
            event="Notification Sent",
            labels=["Onboarding"],
            properties=properties,
        )
        for user, properties in [
            ("u1", {"account_id": "acc-a"}),
            ("u2", {"account_id": "acc-b"}),
            ("u3", {}),
            ("u4", {"account_id": 12}),
            ("u5", {"account_id": ["acc-a"]}),
            ("u6", {"account_id": "12"}),
        ]
    ]

    everyone = {"u1", "u2", "u3", "u4", "u5", "u6"}
    for account_id, expected in [(None, everyone), ("acc-a", {"u1"}), ("12", {"u6"})]:
        [streamed] = _streaming_members([rule], envelopes, now, "UTC", account_id)
        [selected] = _sql_members([rule], envelopes, now, "UTC", account_id)
        assert streamed == expected, account_id
        assert selected == expected, account_id
