"""The streaming segment evaluator: a rule compiled once into closures over traits and state.

`SegmentEvaluator(rule, tz).matches(traits, state, now)` implements the semantics of
`docs/segments.md` on a profile's traits and a `domain.segments.state` behaviour state. It
must return the same result as the SQL of `queries.segments` over the same events.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from domain.segments.state import (
    DEFAULT_HORIZON_DAYS,
    BehaviourState,
    epoch_us,
    feature_of,
)
from domain.segments.values import local_day_of, value_predicate
from schemas.segment_rules import (
    AndRule,
    BetweenDatesWindow,
    CountCondition,
    EventRule,
    HasContactRule,
    LastDaysWindow,
    MessageRule,
    NotRule,
    OrRule,
    SegmentRule,
    SubscribedRule,
    TraitDateRule,
    TraitRule,
    Window,
    walk_rules,
)

__all__ = ["CONTACT_TRAITS", "SegmentEvaluator", "subscription_trait"]

CONTACT_TRAITS = {"email": "email", "push": "push_token", "sms": "phone"}


def subscription_trait(channel: str) -> str:
    return f"MSG-{channel}"


@dataclass(frozen=True, slots=True)
class _Clock:
    today: int
    now_us: int
    horizon_start: int


_Traits = dict[str, Any]
_Features = dict[str, Any]
_Predicate = Callable[[_Traits, _Features, _Clock], bool]
_DayRange = Callable[[_Clock], tuple[int, int] | None]


class SegmentEvaluator:
    """A segment rule compiled for one account time zone.

    Args:
        rule: a validated rule tree (`schemas.segment_rules.parse_segment_rule`).
        tz: the account's IANA time zone name; day windows are its calendar days.
        horizon_days: how many local days, today included, the behaviour state keeps;
            it must be the value the state was built with.
        account_id: the account whose segment this is; its label conditions then count
            only Notification events of that account's campaigns.

    Raises:
        ValueError: a `last_days` window is longer than `horizon_days`.
    """

    def __init__(
        self,
        rule: SegmentRule,
        tz: str,
        *,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        account_id: str | None = None,
    ) -> None:
        self.rule = rule
        self.zone = ZoneInfo(tz)
        self.horizon_days = horizon_days
        self.account_id = account_id
        _check_horizon(rule, horizon_days)
        self._predicate = _compile(rule, _Scope(self.zone, account_id))

    def matches(self, traits: _Traits, state: BehaviourState, now: datetime) -> bool:
        """Tell whether a user with these traits and this behaviour is in the segment at `now`.

        Raises:
            ValueError: `now` is a naive datetime.
        """
        if now.tzinfo is None:
            raise ValueError(f"`now` must be timezone-aware, got {now.isoformat()}")
        today = now.astimezone(self.zone).date().toordinal()
        clock = _Clock(today, epoch_us(now), today - self.horizon_days + 1)
        return self._predicate(traits, state.get("features", {}), clock)


def _check_horizon(rule: SegmentRule, horizon_days: int) -> None:
    for path, node in walk_rules(rule):
        window = getattr(node, "window", None)
        if isinstance(window, LastDaysWindow) and window.days > horizon_days:
            location = ".".join(str(part) for part in path)
            raise ValueError(
                f"{location}: a window of {window.days} days is longer than the "
                f"{horizon_days} days of behaviour the state keeps"
            )


@dataclass(frozen=True, slots=True)
class _Scope:
    zone: ZoneInfo
    account_id: str | None


def _compile(rule: SegmentRule, scope: _Scope) -> _Predicate:
    if isinstance(rule, (AndRule, OrRule)):
        return _compile_group(rule, scope)
    if isinstance(rule, NotRule):
        inner = _compile(rule.rule, scope)
        return lambda traits, features, clock: not inner(traits, features, clock)
    if isinstance(rule, TraitRule):
        return _compile_trait(rule)
    if isinstance(rule, TraitDateRule):
        return _compile_trait_date(rule, scope.zone)
    if isinstance(rule, (EventRule, MessageRule)):
        return _compile_behaviour(rule, scope.account_id)
    if isinstance(rule, HasContactRule):
        return _compile_contact(rule)
    return _compile_subscribed(rule)


def _compile_group(rule: AndRule | OrRule, scope: _Scope) -> _Predicate:
    parts = tuple(_compile(child, scope) for child in rule.rules)
    if isinstance(rule, AndRule):
        return lambda traits, features, clock: all(p(traits, features, clock) for p in parts)
    return lambda traits, features, clock: any(p(traits, features, clock) for p in parts)


def _compile_trait(rule: TraitRule) -> _Predicate:
    test = value_predicate(rule.op, rule.value)
    name = rule.trait
    return lambda traits, features, clock: test(traits.get(name))


def _compile_trait_date(rule: TraitDateRule, zone: ZoneInfo) -> _Predicate:
    name, days = rule.trait, rule.days
    bounds: Callable[[int], tuple[int, int]] = {
        "in_last_days": lambda today: (today - days + 1, today),
        "in_next_days": lambda today: (today, today + days - 1),
        "days_from_now": lambda today: (today + days, today + days),
    }[rule.op]

    def test(traits: _Traits, features: _Features, clock: _Clock) -> bool:
        day = local_day_of(traits.get(name), zone)
        if day is None:
            return False
        low, high = bounds(clock.today)
        return low <= day <= high

    return test


def _compile_contact(rule: HasContactRule) -> _Predicate:
    name = CONTACT_TRAITS[rule.channel]

    def test(traits: _Traits, features: _Features, clock: _Clock) -> bool:
        value = traits.get(name)
        return isinstance(value, str) and value != ""

    return test


def _compile_subscribed(rule: SubscribedRule) -> _Predicate:
    name = subscription_trait(rule.channel)

    def test(traits: _Traits, features: _Features, clock: _Clock) -> bool:
        # As delivery decides: false, or the text "false" in any case, unsubscribes.
        flag = traits.get(name)
        if isinstance(flag, str):
            return flag.strip(" ").lower() != "false"
        return flag is not False

    return test


def _compile_behaviour(rule: EventRule | MessageRule, account_id: str | None) -> _Predicate:
    key = feature_of(rule, account_id).key
    day_range = _day_range(rule.window)
    holds = _count_test(rule.count)
    did = rule.did

    def test(traits: _Traits, features: _Features, clock: _Clock) -> bool:
        entry = features.get(key)
        if entry is None:
            count = 0
        else:
            bounds = day_range(clock)
            count = (
                _lifetime_count(entry, clock)
                if bounds is None
                else _window_count(entry, bounds, clock)
            )
        return holds(count) is did

    return test


def _count_test(condition: CountCondition) -> Callable[[int], bool]:
    value = condition.value
    if condition.op == "at_least":
        return lambda count: count >= value
    if condition.op == "at_most":
        return lambda count: count <= value
    return lambda count: count == value


def _day_range(window: Window) -> _DayRange:
    """Build the clipped local day range of a window; None means since first seen."""
    if isinstance(window, LastDaysWindow):
        span = window.days
        return lambda clock: (max(clock.today - span + 1, clock.horizon_start), clock.today)
    if isinstance(window, BetweenDatesWindow):
        start, end = window.start.toordinal(), window.end.toordinal()
        return lambda clock: (max(start, clock.horizon_start), min(end, clock.today))
    return lambda clock: None


def _window_count(entry: dict[str, Any], bounds: tuple[int, int], clock: _Clock) -> int:
    low, high = bounds
    count = 0
    for day, events in reversed(entry["days"]):
        if day > high:
            continue
        if day < low:
            break
        count += events
    if low <= clock.today <= high:
        count -= _today_after_now(entry, clock)
    return count


def _lifetime_count(entry: dict[str, Any], clock: _Clock) -> int:
    later = 0
    for day, events in reversed(entry["days"]):
        if day <= clock.today:
            break
        later += events
    return int(entry["total"]) - later - _today_after_now(entry, clock)


def _today_after_now(entry: dict[str, Any], clock: _Clock) -> int:
    """Count today's events that happened after `now`."""
    for day, times in entry["recent"]:
        if day == clock.today:
            return len(times) - bisect_right(times, clock.now_us)
    # NOTE: today's exact times are dropped once an event lands more than SPARE_DAYS local
    # days after today. Today's events after `now` then still count, which needs an event
    # far ahead of the evaluation's clock.
    return 0
