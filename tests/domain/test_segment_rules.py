"""Validation of the segment rule language: accepted shapes and the paths of errors."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.segment_rules import (
    MAX_RULE_DEPTH,
    MAX_RULE_NODES,
    AndRule,
    BetweenDatesWindow,
    EventRule,
    MessageRule,
    TraitRule,
    parse_segment_rule,
)

LAST_WEEK = {"type": "last_days", "days": 7}


def _errors(definition: Any) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        parse_segment_rule(definition)
    return [(tuple(error["loc"]), error["msg"]) for error in caught.value.errors()]


def test_parse_nested_rule() -> None:
    rule = parse_segment_rule(
        {
            "type": "and",
            "rules": [
                {"type": "trait", "trait": "plan", "op": "in", "value": ["pro", "team"]},
                {
                    "type": "event",
                    "event": "Charged",
                    "filters": [{"property": "Amount", "op": "gte", "value": 100}],
                    "count": {"op": "at_least", "value": 2},
                    "window": {"type": "between", "start": "2024-03-01", "end": "2024-03-10"},
                },
            ],
        }
    )
    assert isinstance(rule, AndRule)
    trait, event = rule.rules
    assert isinstance(trait, TraitRule)
    assert isinstance(event, EventRule)
    assert event.window == BetweenDatesWindow(start=date(2024, 3, 1), end=date(2024, 3, 10))
    assert event.filters[0].property == "Amount"


def test_event_defaults() -> None:
    rule = parse_segment_rule({"type": "event", "event": "App Launched", "window": LAST_WEEK})
    assert isinstance(rule, EventRule)
    assert rule.did is True
    assert (rule.count.op, rule.count.value) == ("at_least", 1)


def test_message_by_label() -> None:
    rule = parse_segment_rule(
        {"type": "message", "action": "clicked", "label": "Reengage", "window": LAST_WEEK}
    )
    assert isinstance(rule, MessageRule)
    assert rule.campaign_id is None


def test_unknown_type_path() -> None:
    definition = {"type": "or", "rules": [{"type": "segment", "id": "x"}]}
    [(loc, msg)] = _errors(definition)
    assert loc == ("or", "rules", 0)
    assert msg.startswith("Input tag 'segment' found using 'type' does not match")


def test_count_value_path() -> None:
    definition = {
        "type": "and",
        "rules": [
            {"type": "has_contact", "channel": "email"},
            {"type": "event", "event": "Charged", "count": {"value": -1}, "window": LAST_WEEK},
        ],
    }
    assert _errors(definition) == [
        (
            ("and", "rules", 1, "event", "count", "value"),
            "Input should be greater than or equal to 0",
        )
    ]


def test_at_least_zero_rejected() -> None:
    definition = {
        "type": "event",
        "event": "Charged",
        "count": {"op": "at_least", "value": 0},
        "window": LAST_WEEK,
    }
    assert _errors(definition) == [
        (
            ("event", "count"),
            "Value error, `at_least 0` is true for every user; use a value of 1 or more",
        )
    ]


def test_window_too_long() -> None:
    definition = {"type": "event", "event": "Charged", "window": {"type": "last_days", "days": 91}}
    assert _errors(definition) == [
        (("event", "window", "last_days", "days"), "Input should be less than or equal to 90")
    ]


def test_between_reversed() -> None:
    window = {"type": "between", "start": "2024-03-10", "end": "2024-03-01"}
    definition = {"type": "not", "rule": {"type": "event", "event": "Charged", "window": window}}
    assert _errors(definition) == [
        (
            ("not", "rule", "event", "window", "between"),
            "Value error, `end` 2024-03-01 is before `start` 2024-03-10; swap them",
        )
    ]


def test_message_needs_one_selector() -> None:
    both = {
        "type": "message",
        "action": "sent",
        "campaign_id": "c1",
        "label": "Onboarding",
        "window": LAST_WEEK,
    }
    assert _errors(both) == [
        (("message",), "Value error, give exactly one of `campaign_id` and `label`")
    ]


def test_message_action_path() -> None:
    definition = {"type": "message", "action": "opened", "label": "x", "window": LAST_WEEK}
    [(loc, msg)] = _errors(definition)
    assert loc == ("message", "action")
    assert msg == "Input should be 'sent', 'viewed' or 'clicked'"


@pytest.mark.parametrize(
    ("op", "value", "message"),
    [
        ("exists", 1, "Value error, operator 'exists' takes no `value`"),
        ("in", "pro", "Value error, operator 'in' needs a list of 1 to 100 values"),
        ("in", [], "Value error, operator 'in' needs a list of 1 to 100 values"),
        ("gt", "10", "Value error, operator 'gt' needs a number as `value`, got '10'"),
        ("gt", True, "Value error, operator 'gt' needs a number as `value`, got True"),
        ("between", [5, 1], "Value error, 'between' needs low <= high, got [5, 1]"),
        (
            "between",
            [1],
            "Value error, operator 'between' needs a list of two numbers: [low, high]",
        ),
        ("starts_with", 4, "Value error, operator 'starts_with' needs a string as `value`, got 4"),
        ("eq", None, "Value error, operator 'eq' needs a single value"),
        ("contains", ["a"], "Value error, operator 'contains' needs a single value"),
    ],
)
def test_trait_value_fits_op(op: str, value: Any, message: str) -> None:
    definition = {"type": "trait", "trait": "plan", "op": op, "value": value}
    assert _errors(definition) == [(("trait",), message)]


def test_trait_name_with_quote() -> None:
    [(loc, msg)] = _errors({"type": "trait", "trait": 'a"b', "op": "exists"})
    assert loc == ("trait", "trait")
    assert msg.startswith("String should match pattern")


def test_trait_date_span() -> None:
    definition = {"type": "trait_date", "trait": "renewal", "op": "in_next_days", "days": 0}
    assert _errors(definition) == [
        (("trait_date",), "Value error, operator 'in_next_days' needs `days` of 1 or more, got 0")
    ]


def test_days_from_now_negative() -> None:
    definition = {"type": "trait_date", "trait": "renewal", "op": "days_from_now", "days": -3}
    assert parse_segment_rule(definition).days == -3  # type: ignore[union-attr]


def test_extra_field_path() -> None:
    [(loc, msg)] = _errors({"type": "has_contact", "channel": "email", "verified": True})
    assert loc == ("has_contact", "verified")
    assert msg == "Extra inputs are not permitted"


def test_empty_and_rejected() -> None:
    [(loc, msg)] = _errors({"type": "and", "rules": []})
    assert loc == ("and", "rules")
    assert msg == "List should have at least 1 item after validation, not 0"


def test_depth_bound_path() -> None:
    rule: dict[str, Any] = {"type": "subscribed", "channel": "sms"}
    for _ in range(MAX_RULE_DEPTH):
        rule = {"type": "not", "rule": rule}
    assert _errors(rule) == [
        (
            ("not", "rule") * MAX_RULE_DEPTH + ("subscribed",),
            f"rules nest deeper than {MAX_RULE_DEPTH} levels",
        )
    ]


def test_depth_at_bound_accepted() -> None:
    rule: dict[str, Any] = {"type": "subscribed", "channel": "sms"}
    for _ in range(MAX_RULE_DEPTH - 1):
        rule = {"type": "not", "rule": rule}
    parse_segment_rule(rule)


def test_size_bound_path() -> None:
    leaf = {"type": "has_contact", "channel": "push"}
    half = MAX_RULE_NODES // 2
    definition = {
        "type": "or",
        "rules": [{"type": "and", "rules": [leaf] * half}, {"type": "and", "rules": [leaf] * half}],
    }
    # The root, two groups and 100 leaves: the 101st rule is the 98th leaf.
    assert _errors(definition) == [
        (
            ("or", "rules", 1, "and", "rules", half - 3, "has_contact"),
            "a segment has at most 100 rules",
        )
    ]
