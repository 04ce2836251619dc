"""The audience segment rule language: a JSON tree of conditions joined by and, or and not.

A segment definition (`InlineSegmentAudience.definition`, or a saved segment's
`definition`) is one rule object; every object has a `type`:

    {"type": "and", "rules": [
        {"type": "trait", "trait": "plan", "op": "in", "value": ["pro", "team"]},
        {"type": "event", "event": "Charged",
         "filters": [{"property": "Amount", "op": "gte", "value": 100}],
         "count": {"op": "at_least", "value": 2},
         "window": {"type": "last_days", "days": 30}},
        {"type": "not", "rule": {"type": "message", "action": "clicked",
                                 "label": "Reengage",
                                 "window": {"type": "last_days", "days": 7}}},
        {"type": "has_contact", "channel": "email"},
        {"type": "subscribed", "channel": "email"}]}

`parse_segment_rule` validates a definition and raises pydantic's `ValidationError`, whose
`loc` names the path to the offending field, with the `type` of each union member in it:
`('and', 'rules', 1, 'event', 'count', 'value')`.

`docs/segments.md` defines what every condition means, how days and windows follow the
account time zone, and how values of different types compare. Both evaluators,
`domain.segments` and `queries.segments`, implement that text.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.campaign import PropertyFilter

__all__ = [
    "MAX_RULE_DEPTH",
    "MAX_RULE_NODES",
    "MAX_WINDOW_DAYS",
    "AndRule",
    "BetweenDatesWindow",
    "CountCondition",
    "EventRule",
    "HasContactRule",
    "LastDaysWindow",
    "MessageRule",
    "NotRule",
    "OrRule",
    "PropertyFilter",
    "SegmentRule",
    "SinceFirstSeenWindow",
    "SubscribedRule",
    "TraitDateRule",
    "TraitRule",
    "Window",
    "parse_segment_rule",
    "walk_rules",
]

# Day windows reach back at most this many local days, today included, because the
# streaming state keeps no more and the SQL side clips to the same horizon.
MAX_WINDOW_DAYS = 90
# Depth counts every rule on the longest path from the root, the root included.
MAX_RULE_DEPTH = 6
MAX_RULE_NODES = 100
_MAX_LIST_VALUES = 100
_MAX_RELATIVE_DAYS = 3650

# Keys become JSON paths (`$."key"`) in SQL, where a quote or a backslash would end the key.
Key = Annotated[str, Field(min_length=1, max_length=120, pattern=r'^[^"\\\x00-\x1f]+$')]
Scalar = str | int | float | bool
Channel = Literal["email", "push", "sms"]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Windows ---------------------------------------------------------------------------------


class LastDaysWindow(_Rule):
    """The `days` local calendar days that end with today, today included."""

    type: Literal["last_days"] = "last_days"
    days: StrictInt = Field(ge=1, le=MAX_WINDOW_DAYS)


class BetweenDatesWindow(_Rule):
    """The local calendar days from `start` to `end`, both included."""

    type: Literal["between"] = "between"
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> BetweenDatesWindow:
        if self.end < self.start:
            raise ValueError(f"`end` {self.end} is before `start` {self.start}; swap them")
        return self


class SinceFirstSeenWindow(_Rule):
    """Every event of the user up to now, however old."""

    type: Literal["since_first_seen"] = "since_first_seen"


Window = Annotated[
    LastDaysWindow | BetweenDatesWindow | SinceFirstSeenWindow, Field(discriminator="type")
]


class CountCondition(_Rule):
    """How many matching events the window must hold."""

    op: Literal["at_least", "at_most", "exactly"] = "at_least"
    value: StrictInt = Field(default=1, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _not_always_true(self) -> CountCondition:
        if self.op == "at_least" and self.value == 0:
            raise ValueError("`at_least 0` is true for every user; use a value of 1 or more")
        return self


# User properties -------------------------------------------------------------------------

TraitOp = Literal[
    "eq", "ne", "in", "not_in", "contains", "starts_with",
    "gt", "gte", "lt", "lte", "between", "exists", "not_exists", "is_empty",
]  # fmt: skip
_NO_VALUE_OPS = frozenset({"exists", "not_exists", "is_empty"})
_LIST_OPS = frozenset({"in", "not_in"})
_NUMBER_OPS = frozenset({"gt", "gte", "lt", "lte"})


class TraitRule(_Rule):
    """A condition on one profile trait; the type rules are in `docs/segments.md`."""

    type: Literal["trait"] = "trait"
    trait: Key
    op: TraitOp
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> TraitRule:
        _check_trait_value(self.op, self.value)
        return self


def _check_trait_value(op: str, value: Any) -> None:
    if op in _NO_VALUE_OPS:
        if value is not None:
            raise ValueError(f"operator {op!r} takes no `value`")
    elif op in _LIST_OPS:
        if not isinstance(value, list) or not 1 <= len(value) <= _MAX_LIST_VALUES:
            raise ValueError(f"operator {op!r} needs a list of 1 to {_MAX_LIST_VALUES} values")
    elif op == "between":
        if not isinstance(value, list) or len(value) != 2 or not all(map(_is_number, value)):
            raise ValueError("operator 'between' needs a list of two numbers: [low, high]")
        if value[1] < value[0]:
            raise ValueError(f"'between' needs low <= high, got {value}")
    elif op in _NUMBER_OPS:
        if not _is_number(value):
            raise ValueError(f"operator {op!r} needs a number as `value`, got {value!r}")
    elif op == "starts_with":
        if not isinstance(value, str):
            raise ValueError(f"operator 'starts_with' needs a string as `value`, got {value!r}")
    elif value is None or isinstance(value, list):
        raise ValueError(f"operator {op!r} needs a single value")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class TraitDateRule(_Rule):
    """A relative date condition on a date or datetime trait, by local calendar day.

    `in_last_days`: the trait's day is one of the `days` days ending with today.
    `in_next_days`: one of the `days` days starting with today.
    `days_from_now`: exactly today plus `days` (negative for days ago, 0 for today).
    """

    type: Literal["trait_date"] = "trait_date"
    trait: Key
    op: Literal["in_last_days", "in_next_days", "days_from_now"]
    days: StrictInt = Field(ge=-_MAX_RELATIVE_DAYS, le=_MAX_RELATIVE_DAYS)

    @model_validator(mode="after")
    def _positive_span(self) -> TraitDateRule:
        if self.op != "days_from_now" and self.days < 1:
            raise ValueError(f"operator {self.op!r} needs `days` of 1 or more, got {self.days}")
        return self


# Behaviour -------------------------------------------------------------------------------


class EventRule(_Rule):
    """The user did (or, with `did` false, did not) do `event` `count` times in `window`.

    Only `track` events count. `did: false` negates the whole count condition, so
    `{"did": false, "count": {"op": "at_least", "value": 3}}` means fewer than 3.
    """

    type: Literal["event"] = "event"
    event: Key
    did: StrictBool = True
    filters: list[PropertyFilter] = Field(default=[], max_length=20)
    count: CountCondition = CountCondition()
    window: Window


class MessageRule(_Rule):
    """The user was sent, viewed or clicked a campaign, picked by id or by label.

    `sent`, `viewed` and `clicked` are the events Notification Sent, Notification Viewed
    and Notification Clicked; a label matches when the event's `labels` contain it exactly.
    """

    type: Literal["message"] = "message"
    action: Literal["sent", "viewed", "clicked"]
    campaign_id: Key | None = None
    label: Key | None = None
    did: StrictBool = True
    count: CountCondition = CountCondition()
    window: Window

    @model_validator(mode="after")
    def _one_campaign_selector(self) -> MessageRule:
        if (self.campaign_id is None) == (self.label is None):
            raise ValueError("give exactly one of `campaign_id` and `label`")
        return self


# Reachability ----------------------------------------------------------------------------


class HasContactRule(_Rule):
    """The profile has a non-empty string address for the channel.

    The traits are `email`, `push_token` and `phone`.
    """

    type: Literal["has_contact"] = "has_contact"
    channel: Channel


class SubscribedRule(_Rule):
    """The user has not unsubscribed from the channel: `MSG-<channel>` is neither `false`
    nor the text "false" in any case."""

    type: Literal["subscribed"] = "subscribed"
    channel: Channel


# Nesting ---------------------------------------------------------------------------------


class AndRule(_Rule):
    type: Literal["and"] = "and"
    rules: list[SegmentRule] = Field(min_length=1, max_length=MAX_RULE_NODES)


class OrRule(_Rule):
    type: Literal["or"] = "or"
    rules: list[SegmentRule] = Field(min_length=1, max_length=MAX_RULE_NODES)


class NotRule(_Rule):
    type: Literal["not"] = "not"
    rule: SegmentRule


SegmentRule = Annotated[
    AndRule
    | OrRule
    | NotRule
    | TraitRule
    | TraitDateRule
    | EventRule
    | MessageRule
    | HasContactRule
    | SubscribedRule,
    Field(discriminator="type"),
]

for _model in (AndRule, OrRule, NotRule):
    _model.model_rebuild()

_ADAPTER: TypeAdapter[Any] = TypeAdapter(SegmentRule)


def check_segment_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """Return `definition` after checking that it is a valid rule, for pydantic validators.

    Raises:
        ValueError: with the path and message of each problem.
    """
    try:
        parse_segment_rule(definition)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'definition'}: {item['msg']}"
            for item in error.errors()[:5]
        )
        raise ValueError(f"invalid segment rule: {problems}") from None
    return definition


def parse_segment_rule(definition: Any) -> SegmentRule:
    """Validate a segment definition and return its rule tree.

    Raises:
        ValidationError: the definition is not a valid rule, nests deeper than
            `MAX_RULE_DEPTH`, or has more than `MAX_RULE_NODES` rules. Each error's
            `loc` is the path to the offending value.
    """
    rule = _ADAPTER.validate_python(definition)
    _check_bounds(rule)
    return rule  # type: ignore[no-any-return]


def walk_rules(
    rule: SegmentRule, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], SegmentRule]]:
    """Yield every rule of the tree with its path, parents before children."""
    rule_path = (*path, rule.type)
    yield rule_path, rule
    if isinstance(rule, (AndRule, OrRule)):
        for index, child in enumerate(rule.rules):
            yield from walk_rules(child, (*rule_path, "rules", index))
    elif isinstance(rule, NotRule):
        yield from walk_rules(rule.rule, (*rule_path, "rule"))


def _check_bounds(rule: SegmentRule) -> None:
    nodes = 0
    for path, _node in walk_rules(rule):
        nodes += 1
        depth = 1 + sum(1 for part in path if part in ("rules", "rule"))
        if depth > MAX_RULE_DEPTH:
            _raise_at(path, "segment_too_deep", f"rules nest deeper than {MAX_RULE_DEPTH} levels")
        if nodes > MAX_RULE_NODES:
            _raise_at(path, "segment_too_large", f"a segment has at most {MAX_RULE_NODES} rules")


def _raise_at(path: tuple[str | int, ...], kind: str, message: str) -> None:
    error = InitErrorDetails(type=PydanticCustomError(kind, message), loc=path, input=None)
    raise ValidationError.from_exception_data("SegmentRule", [error])
