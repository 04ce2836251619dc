"""Event-time triggers: which events start a send, and when inaction windows close.

Pure, so that a stream worker can keep a `TriggerState` per user and a watermark per
partition while the tests drive the same functions with hand-made events.

Time is event time (the envelope's `timestamp`), never the wall clock, so replaying
history produces the sends that live traffic would have produced. Times are integer
microseconds since the epoch, UTC.

Rules:
- An action trigger fires at its event's time plus the campaign's delay.
- An inaction trigger opens a window [t, t + within] at each `did` event at t. A `did_not`
  event of the same user anywhere in the closed window cancels it, including one at t
  that was processed before the `did` event. The window fires at t + within once the
  watermark has passed that time, because until then a cancelling event may still come.
- An event more than `max_lateness_us` behind the watermark, or more than `max_future_us`
  ahead of it, does not trigger; it still cancels windows, because it still happened.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from domain.segments.values import value_predicate
from schemas.campaign import EventTrigger, InactionTrigger, PropertyFilter

__all__ = [
    "DEFAULT_MAX_FUTURE_US",
    "DEFAULT_MAX_LATENESS_US",
    "MAX_KEPT_CANCELS",
    "CompiledTrigger",
    "TriggerFire",
    "TriggerPlan",
    "TriggerState",
    "compile_trigger",
    "due_fires",
    "epoch_us",
    "on_event",
    "plan_triggers",
]

DEFAULT_MAX_LATENESS_US = 2 * 3600 * 1_000_000
DEFAULT_MAX_FUTURE_US = 2 * 60 * 1_000_000
MAX_KEPT_CANCELS = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_Matcher = Callable[[dict[str, Any]], bool]


def epoch_us(timestamp: str) -> int:
    """Convert an envelope timestamp (`…Z`) to microseconds since the epoch."""
    # This runs per event, and subtracting takes a third less time than `timestamp()`.
    since = datetime.fromisoformat(timestamp) - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def _micros(span: timedelta) -> int:
    return (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds


@dataclass(slots=True)
class TriggerFire:
    """A decision to start a send: campaign, user, the event behind it and when."""

    campaign_id: str
    user_id: str
    trigger_id: str
    fire_at_us: int

    # Written out so that mypyc compiles it: the `__init__` that `dataclass` generates
    # stays interpreted, which cost the compiled engine about 8% of its time across the
    # classes made per event or per decision. Not frozen, so that it can set its fields.
    def __init__(self, campaign_id: str, user_id: str, trigger_id: str, fire_at_us: int) -> None:
        self.campaign_id = campaign_id
        self.user_id = user_id
        self.trigger_id = trigger_id
        self.fire_at_us = fire_at_us


@dataclass(frozen=True, slots=True)
class CompiledTrigger:
    """A campaign's trigger turned into matchers over envelopes and profile traits."""

    campaign_id: str
    kind: str
    start: _Matcher
    cancel: _Matcher | None = None
    profile: _Matcher | None = None
    offset_us: int = 0
    # Names of the events the matchers accept, so that a caller can index triggers by event.
    start_event: str = ""
    cancel_event: str | None = None
    # The property filters alone. Triggers with equal filters share one function, so an
    # event evaluates each distinct condition once however many campaigns use it.
    start_properties: _Matcher | None = None
    cancel_properties: _Matcher | None = None
    # Names the cancelling condition (event and filters) in `TriggerState.cancels`, so that
    # campaigns with the same `did_not` keep one list of times per user, not one each.
    cancel_key: str = ""


@dataclass(slots=True)
class TriggerState:
    """The pending sends of one user's triggers, in plain lists so that it serialises as JSON.

    `pending` contains [campaign id, trigger id, fire time] of delayed action sends and open
    inaction windows (whose start is fire time minus the window). `cancels` contains, per
    cancelling condition (`CompiledTrigger.cancel_key`), the sorted times of the user's
    latest `did_not` events, so that a `did` event that arrives after them still finds the
    ones inside its window.
    """

    pending: list[list[Any]] = field(default_factory=list)
    cancels: dict[str, list[int]] = field(default_factory=dict)
    # Set by `on_event` when it changed the state; not part of the JSON.
    changed: bool = field(default=False, compare=False)
    # Set by `on_event` when the event could have started a send but was out of time.
    untimely: bool = field(default=False, compare=False)
    # Set by `on_event` to the sends it could not keep pending for want of room.
    crowded: list[TriggerFire] | None = field(default=None, compare=False)

    def __init__(
        self, pending: list[list[Any]] | None = None, cancels: dict[str, list[int]] | None = None
    ) -> None:
        self.pending = [] if pending is None else pending
        self.cancels = {} if cancels is None else cancels
        self.changed = False
        self.untimely = False
        self.crowded = None

    def to_json(self) -> dict[str, Any]:
        return {"pending": self.pending, "cancels": self.cancels}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TriggerState:
        if not data:
            return cls()
        return cls(
            pending=[list(item) for item in data["pending"]],
            cancels={campaign: list(times) for campaign, times in data["cancels"].items()},
        )

    @classmethod
    def over(cls, data: dict[str, Any]) -> TriggerState:
        """Wrap stored JSON without copying it; write `to_json()` back after a change."""
        # Positional arguments, because this runs once per event and keywords cost more.
        return cls(data["pending"], data["cancels"])


def compile_trigger(campaign_id: str, when: Any) -> CompiledTrigger | None:
    """Compile an event or inaction trigger; other schedules return None."""
    if isinstance(when, EventTrigger):
        return CompiledTrigger(
            campaign_id,
            "action",
            start=_event_matcher(when.event, when.property_filters),
            profile=_filters_matcher(when.profile_filters) if when.profile_filters else None,
            offset_us=_micros(when.delay),
            start_event=when.event,
            start_properties=_filters_matcher(when.property_filters),
        )
    if isinstance(when, InactionTrigger):
        cancel_properties = _filters_matcher(when.did_not.property_filters)
        return CompiledTrigger(
            campaign_id,
            "inaction",
            start=_event_matcher(when.did.event, when.did.property_filters),
            cancel=_event_matcher(when.did_not.event, when.did_not.property_filters),
            offset_us=_micros(when.within),
            start_event=when.did.event,
            cancel_event=when.did_not.event,
            start_properties=_filters_matcher(when.did.property_filters),
            cancel_properties=cancel_properties,
            cancel_key=_condition_key(when.did_not.event, cancel_properties),
        )
    return None


def _condition_key(event: str, properties: _Matcher) -> str:
    # Stored in user states, so it must not change between releases or restarts: it is a
    # hash of the event name and the canonical JSON of the filters, never a process's id.
    text = event.encode() + b"\x1f" + _MATCHER_KEYS[properties]
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def _event_matcher(name: str, filters: list[PropertyFilter]) -> _Matcher:
    properties = _filters_matcher(filters)

    def matches(envelope: dict[str, Any]) -> bool:
        return (
            envelope.get("type") == "track"
            and envelope.get("event") == name
            and properties(envelope.get("properties") or {})
        )

    return matches


def _filters_matcher(filters: list[PropertyFilter]) -> _Matcher:
    key = orjson.dumps(
        sorted(
            (item.model_dump(mode="json") for item in filters),
            key=lambda dumped: orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS),
        ),
        option=orjson.OPT_SORT_KEYS,
    )
    matcher = _SHARED_MATCHERS.get(key)
    if matcher is None:
        matcher = _SHARED_MATCHERS[key] = _build_filters_matcher(filters)
        _SHARED_FILTERS[matcher] = tuple(filters)
        _MATCHER_KEYS[matcher] = key
    return matcher


def _build_filters_matcher(filters: list[PropertyFilter]) -> _Matcher:
    if not filters:
        return _always
    tests = [(item.property, value_predicate(item.op, item.value)) for item in filters]
    if len(tests) == 1:
        [(name, test)] = tests

        def matches_one(values: dict[str, Any]) -> bool:
            return test(values.get(name))

        return matches_one

    def matches(values: dict[str, Any]) -> bool:
        for name, test in tests:
            if not test(values.get(name)):
                return False
        return True

    return matches


def _always(_values: dict[str, Any]) -> bool:
    return True


# Matchers by the canonical JSON of their filters; bounded by the campaigns' conditions.
_SHARED_MATCHERS: dict[bytes, _Matcher] = {}
# The filters each shared matcher tests, so that `plan_triggers` can take them apart.
_SHARED_FILTERS: dict[_Matcher, tuple[PropertyFilter, ...]] = {}
# The canonical JSON of each shared matcher's filters.
_MATCHER_KEYS: dict[_Matcher, bytes] = {}


# A step is (position, trigger). Position 2 * i is the cancel of the plan's i-th trigger and
# 2 * i + 1 is its start, so steps sorted by position follow a loop over the listed triggers.
_Step = tuple[int, CompiledTrigger]
_Group = tuple[_Matcher, tuple[_Step, ...]]


@dataclass(frozen=True, slots=True)
class _Checks:
    """The conditions of one role (start or cancel) of a plan's triggers, each listed once."""

    # Steps of triggers without property filters.
    always: tuple[_Step, ...] = ()
    # Matchers over the event's properties, each with the steps of the triggers using it.
    on_properties: tuple[_Group, ...] = ()
    # Matchers over the whole envelope, of triggers compiled without a properties matcher.
    on_envelope: tuple[_Group, ...] = ()
    # Property name -> a string that an `eq` or `in` filter on it accepts -> the matchers of
    # the other filters with their steps, so that one dict lookup replaces a test per campaign.
    lookups: tuple[tuple[str, dict[str, tuple[_Group, ...]]], ...] = ()

    def collect(
        self, envelope: dict[str, Any], properties: dict[str, Any], hits: list[tuple[_Step, ...]]
    ) -> None:
        """Append to `hits` the steps of every condition that this event meets."""
        if self.always:
            hits.append(self.always)
        for matcher, steps in self.on_properties:
            if matcher(properties):
                hits.append(steps)
        for matcher, steps in self.on_envelope:
            if matcher(envelope):
                hits.append(steps)
        for name, table in self.lookups:
            value = properties.get(name)
            # Only a string can meet the filters behind `table` (see `_string_operands`).
            if isinstance(value, str):
                for matcher, steps in table.get(value, ()):
                    if matcher(properties):
                        hits.append(steps)


@dataclass(frozen=True, slots=True)
class TriggerPlan:
    """The triggers that one event name can start or cancel, arranged for `on_event`.

    Iterating a plan yields its triggers, so it can stand where a sequence of triggers did.
    """

    event: str | None
    triggers: tuple[CompiledTrigger, ...] = ()
    cancels: _Checks = field(default_factory=_Checks)
    starts: _Checks = field(default_factory=_Checks)

    def __iter__(self) -> Iterator[CompiledTrigger]:
        return iter(self.triggers)

    def __len__(self) -> int:
        return len(self.triggers)


def plan_triggers(event: str | None, triggers: Iterable[CompiledTrigger]) -> TriggerPlan:
    """Build the plan of `triggers` for events named `event`.

    `on_event` applies a plan's steps in the order of the listed triggers, so its fires and
    state changes are those of a loop over the triggers. Triggers that test the same
    filters share one matcher, which the plan evaluates once per event. Triggers with an
    `eq` or `in` filter on strings are found by a dict lookup of that property's value, so
    an event tests only the campaigns whose value it carries.
    """
    listed = tuple(triggers)
    cancels: list[tuple[_Step, _Matcher | None, _Matcher]] = []
    starts: list[tuple[_Step, _Matcher | None, _Matcher]] = []
    for index, trigger in enumerate(listed):
        if trigger.cancel is not None and trigger.cancel_event == event:
            cancels.append(((2 * index, trigger), trigger.cancel_properties, trigger.cancel))
        if trigger.start_event == event:
            starts.append(((2 * index + 1, trigger), trigger.start_properties, trigger.start))
    return TriggerPlan(event, listed, _plan_checks(cancels), _plan_checks(starts))


def _plan_checks(entries: list[tuple[_Step, _Matcher | None, _Matcher]]) -> _Checks:
    """Group steps by the condition they test, in position order within each group."""
    always: list[_Step] = []
    on_properties: dict[_Matcher, list[_Step]] = {}
    on_envelope: dict[_Matcher, list[_Step]] = {}
    keyed: list[tuple[_Step, tuple[PropertyFilter, ...]]] = []
    for step, properties_matcher, envelope_matcher in entries:
        if properties_matcher is None:
            on_envelope.setdefault(envelope_matcher, []).append(step)
            continue
        # A matcher that `_filters_matcher` did not build is tested as it is.
        filters = _SHARED_FILTERS.get(properties_matcher)
        if filters is None:
            on_properties.setdefault(properties_matcher, []).append(step)
        elif not filters:
            always.append(step)
        elif any(_string_operands(item) is not None for item in filters):
            keyed.append((step, filters))
        else:
            on_properties.setdefault(properties_matcher, []).append(step)
    return _Checks(
        always=tuple(always),
        on_properties=_groups(on_properties),
        on_envelope=_groups(on_envelope),
        lookups=_lookups(keyed),
    )


def _lookups(
    keyed: list[tuple[_Step, tuple[PropertyFilter, ...]]],
) -> tuple[tuple[str, dict[str, tuple[_Group, ...]]], ...]:
    # Each step is filed under one of its string filters. The property that the most steps
    # can be filed under wins, so that few lookups serve many campaigns. Among those, the one
    # with the most distinct operands wins, so that each lookup leaves few candidates.
    steps_per_property: dict[str, int] = {}
    operands_per_property: dict[str, set[str]] = {}
    for _, filters in keyed:
        names: set[str] = set()
        for item in filters:
            operands = _string_operands(item)
            if operands is not None:
                names.add(item.property)
                operands_per_property.setdefault(item.property, set()).update(operands)
        for name in names:
            steps_per_property[name] = steps_per_property.get(name, 0) + 1

    def rank(item: PropertyFilter) -> tuple[int, int, str]:
        name = item.property
        return (-steps_per_property[name], -len(operands_per_property[name]), name)

    tables: dict[str, dict[str, dict[_Matcher, list[_Step]]]] = {}
    for step, filters in keyed:
        chosen = min((item for item in filters if _string_operands(item) is not None), key=rank)
        rest = _filters_matcher([item for item in filters if item is not chosen])
        by_value = tables.setdefault(chosen.property, {})
        # Each distinct operand once, so that no event reaches the step twice.
        for value in dict.fromkeys(_string_operands(chosen) or ()):
            by_value.setdefault(value, {}).setdefault(rest, []).append(step)
    return tuple(
        (name, {value: _groups(groups) for value, groups in by_value.items()})
        for name, by_value in tables.items()
    )


def _string_operands(item: PropertyFilter) -> tuple[str, ...] | None:
    """Return the strings that `item` accepts when it accepts nothing but them, else None.

    By `equals`, a string operand matches only a string of the same characters. So an `eq`
    on a string, or an `in` whose operands are all strings, matches exactly the values that
    a dict lookup among the operands finds, once non-strings are left out.
    """
    if item.op == "eq" and isinstance(item.value, str):
        return (item.value,)
    if item.op == "in" and isinstance(item.value, list):
        operands = [operand for operand in item.value if isinstance(operand, str)]
        if len(operands) == len(item.value):
            return tuple(operands)
    return None


def _groups(steps_by_matcher: dict[_Matcher, list[_Step]]) -> tuple[_Group, ...]:
    return tuple((matcher, tuple(steps)) for matcher, steps in steps_by_matcher.items())


def on_event(
    triggers: Iterable[CompiledTrigger],
    state: TriggerState,
    envelope: dict[str, Any],
    traits: dict[str, Any],
    watermark_us: int,
    max_lateness_us: int = DEFAULT_MAX_LATENESS_US,
    max_future_us: int = DEFAULT_MAX_FUTURE_US,
    at_us: int | None = None,
    room: int | None = None,
    admits: Callable[[str], bool] | None = None,
) -> list[TriggerFire]:
    """Apply one event of a user to their trigger state; return the sends it fires now.

    `triggers` is best a `TriggerPlan` for the event's name, because other iterables are
    planned again on every call. `traits` is the user's profile as it is after this event.
    `watermark_us` is the partition's watermark, which this very event may have advanced.
    `at_us` is the event's time when the caller has already read it. Delayed sends and
    windows go into `state.pending`, and `state.changed` is True when anything changed.
    `room` bounds how many this event may add; the ones past it go into `state.crowded`.
    `admits` tells whether the user is in a campaign's audience now; a send of a campaign
    it does not admit does not wait, as it would not be sent if it were due now.
    """
    if envelope.get("type") != "track":
        return []
    name = envelope.get("event")
    plan = triggers
    if not isinstance(plan, TriggerPlan) or plan.event != name:
        plan = plan_triggers(name, triggers)
    if at_us is None:
        at_us = epoch_us(envelope["timestamp"])
    in_time = watermark_us - max_lateness_us <= at_us <= watermark_us + max_future_us
    if not in_time and any(trigger.start_event == name for trigger in plan):
        state.untimely = True

    properties = envelope.get("properties") or {}
    hits: list[tuple[_Step, ...]] = []
    plan.cancels.collect(envelope, properties, hits)
    if in_time:
        plan.starts.collect(envelope, properties, hits)
    if not hits:
        return []
    steps = hits[0] if len(hits) == 1 else sorted(step for group in hits for step in group)

    fires: list[TriggerFire] = []
    noted = ""
    for position, trigger in steps:
        if position % 2 == 0:  # a cancel step, see `_Step`
            # Campaigns on one cancelling condition share its times, so they are noted once.
            if trigger.cancel_key != noted:
                _note_cancel(state, trigger.cancel_key, at_us)
                noted = trigger.cancel_key
            if state.pending:
                _close_windows(state, trigger, at_us)
            continue
        if trigger.profile is not None and not trigger.profile(traits):
            continue
        fire = TriggerFire(
            trigger.campaign_id, _user(envelope), envelope["message_id"], at_us + trigger.offset_us
        )
        if trigger.kind == "action" and trigger.offset_us == 0:
            fires.append(fire)
        elif trigger.kind == "action" or not _cancelled_before(state, trigger, at_us):
            if _is_pending(state, fire):
                # A copy of the event behind a send that is already pending.
                continue
            if admits is not None and not admits(fire.campaign_id):
                continue
            if room is not None and room <= 0:
                if state.crowded is None:
                    state.crowded = []
                state.crowded.append(fire)
                continue
            state.pending.append([fire.campaign_id, fire.trigger_id, fire.fire_at_us])
            state.changed = True
            if room is not None:
                room -= 1
    return fires


def _is_pending(state: TriggerState, fire: TriggerFire) -> bool:
    campaign_id, trigger_id = fire.campaign_id, fire.trigger_id
    return any(item[1] == trigger_id and item[0] == campaign_id for item in state.pending)


def _cancelled_before(state: TriggerState, trigger: CompiledTrigger, at_us: int) -> bool:
    """Tell whether a cancelling event processed earlier falls in the window opening at `at_us`."""
    times = state.cancels.get(trigger.cancel_key)
    if not times:
        return False
    index = bisect_left(times, at_us)
    return index < len(times) and times[index] <= at_us + trigger.offset_us


def _note_cancel(state: TriggerState, cancel_key: str, at_us: int) -> None:
    times = state.cancels.setdefault(cancel_key, [])
    index = bisect_left(times, at_us)
    if index == len(times) or times[index] != at_us:
        times.insert(index, at_us)
        if len(times) > MAX_KEPT_CANCELS:
            # NOTE: only the latest cancels are kept, so a `did` event that arrives after
            # this many newer `did_not` events may miss an older one inside its window.
            del times[:-MAX_KEPT_CANCELS]
        state.changed = True


def _close_windows(state: TriggerState, trigger: CompiledTrigger, at_us: int) -> None:
    campaign = trigger.campaign_id
    pending = state.pending
    window_us = trigger.offset_us
    for item in pending:
        if item[0] == campaign and item[2] - window_us <= at_us <= item[2]:
            break
    else:
        # No window of the campaign covers `at_us`, so the stored list is kept as it is.
        return
    state.pending = [
        item
        for item in pending
        if not (item[0] == campaign and item[2] - window_us <= at_us <= item[2])
    ]
    state.changed = True


def due_fires(
    state: TriggerState, user_id: str, watermark_us: int, inaction: frozenset[str]
) -> list[TriggerFire]:
    """Remove and return the pending sends that are due at `watermark_us`.

    A delayed action send is due once the watermark reaches its time. An inaction window
    (campaign ids in `inaction`) is due only once the watermark is past its end, because an
    event exactly at the end still cancels it.
    """
    due: list[TriggerFire] = []
    kept: list[list[Any]] = []
    for campaign_id, trigger_id, fire_at_us in state.pending:
        closed = (
            fire_at_us < watermark_us if campaign_id in inaction else fire_at_us <= watermark_us
        )
        if closed:
            due.append(TriggerFire(campaign_id, user_id, trigger_id, fire_at_us))
        else:
            kept.append([campaign_id, trigger_id, fire_at_us])
    state.pending = kept
    return due


def _user(envelope: dict[str, Any]) -> str:
    return envelope.get("user_id") or envelope["anonymous_id"]
