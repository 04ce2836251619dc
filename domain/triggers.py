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

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
    "TriggerState",
    "compile_trigger",
    "due_fires",
    "epoch_us",
    "on_event",
]

DEFAULT_MAX_LATENESS_US = 2 * 3600 * 1_000_000
DEFAULT_MAX_FUTURE_US = 2 * 60 * 1_000_000
MAX_KEPT_CANCELS = 64

_Matcher = Callable[[dict[str, Any]], bool]


def epoch_us(timestamp: str) -> int:
    """Convert an envelope timestamp (`…Z`) to microseconds since the epoch."""
    moment = datetime.fromisoformat(timestamp)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _micros(span: timedelta) -> int:
    return (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds


@dataclass(frozen=True, slots=True)
class TriggerFire:
    """A decision to start a send: campaign, user, the event behind it and when."""

    campaign_id: str
    user_id: str
    trigger_id: str
    fire_at_us: int


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


@dataclass(slots=True)
class TriggerState:
    """The pending sends of one user's triggers, in plain lists so that it serialises as JSON.

    `pending` contains [campaign id, trigger id, fire time] of delayed action sends and open
    inaction windows (whose start is fire time minus the window). `cancels` contains, per
    inaction campaign, the sorted times of the user's latest `did_not` events, so that a
    `did` event that arrives after them still finds the ones inside its window.
    """

    pending: list[list[Any]] = field(default_factory=list)
    cancels: dict[str, list[int]] = field(default_factory=dict)
    # Set by `on_event` when it changed the state; not part of the JSON.
    changed: bool = field(default=False, compare=False)

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
        return cls(pending=data["pending"], cancels=data["cancels"])


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
        return CompiledTrigger(
            campaign_id,
            "inaction",
            start=_event_matcher(when.did.event, when.did.property_filters),
            cancel=_event_matcher(when.did_not.event, when.did_not.property_filters),
            offset_us=_micros(when.within),
            start_event=when.did.event,
            cancel_event=when.did_not.event,
            start_properties=_filters_matcher(when.did.property_filters),
            cancel_properties=_filters_matcher(when.did_not.property_filters),
        )
    return None


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


def on_event(
    triggers: Iterable[CompiledTrigger],
    state: TriggerState,
    envelope: dict[str, Any],
    traits: dict[str, Any],
    watermark_us: int,
    max_lateness_us: int = DEFAULT_MAX_LATENESS_US,
    max_future_us: int = DEFAULT_MAX_FUTURE_US,
    at_us: int | None = None,
) -> list[TriggerFire]:
    """Apply one event of a user to their trigger state; return the sends it fires now.

    `traits` is the user's profile as it is after this event; `watermark_us` is the
    partition's watermark, which this very event may have advanced; `at_us` is the event's
    time when the caller has already read it. Delayed sends and windows go into
    `state.pending`, and `state.changed` tells whether anything changed.
    """
    if envelope.get("type") != "track":
        return []
    name = envelope.get("event")
    if at_us is None:
        at_us = epoch_us(envelope["timestamp"])
    in_time = watermark_us - max_lateness_us <= at_us <= watermark_us + max_future_us
    # Each distinct property condition is evaluated once for this event.
    verdicts: dict[_Matcher, bool] = {}
    fires: list[TriggerFire] = []
    for trigger in triggers:
        if trigger.cancel is not None and trigger.cancel_event == name:
            if _passes(trigger.cancel_properties, trigger.cancel, envelope, verdicts):
                _cancel_windows(state, trigger, at_us)
        if trigger.start_event != name or not in_time:
            continue
        if not _passes(trigger.start_properties, trigger.start, envelope, verdicts):
            continue
        if trigger.profile is not None and not trigger.profile(traits):
            continue
        fire = TriggerFire(
            trigger.campaign_id, _user(envelope), envelope["message_id"], at_us + trigger.offset_us
        )
        if trigger.kind == "action" and trigger.offset_us == 0:
            fires.append(fire)
        elif trigger.kind == "action" or not _cancelled_before(state, trigger, at_us):
            state.pending.append([fire.campaign_id, fire.trigger_id, fire.fire_at_us])
            state.changed = True
    return fires


def _passes(
    properties_matcher: _Matcher | None,
    envelope_matcher: _Matcher,
    envelope: dict[str, Any],
    verdicts: dict[_Matcher, bool],
) -> bool:
    """Apply a trigger's property filters, remembering the verdict for this event.

    A trigger built without a properties matcher is matched on the whole envelope.
    """
    if properties_matcher is None:
        return envelope_matcher(envelope)
    verdict = verdicts.get(properties_matcher)
    if verdict is None:
        verdict = properties_matcher(envelope.get("properties") or {})
        verdicts[properties_matcher] = verdict
    return verdict


def _cancelled_before(state: TriggerState, trigger: CompiledTrigger, at_us: int) -> bool:
    """Tell whether a cancelling event processed earlier falls in the window opening at `at_us`."""
    times = state.cancels.get(trigger.campaign_id)
    if not times:
        return False
    index = bisect_left(times, at_us)
    return index < len(times) and times[index] <= at_us + trigger.offset_us


def _cancel_windows(state: TriggerState, trigger: CompiledTrigger, at_us: int) -> None:
    campaign = trigger.campaign_id
    times = state.cancels.setdefault(campaign, [])
    index = bisect_left(times, at_us)
    if index == len(times) or times[index] != at_us:
        times.insert(index, at_us)
        # NOTE: only the latest cancels are kept, so a `did` event that arrives after this
        # many newer `did_not` events may miss an older one inside its window.
        del times[:-MAX_KEPT_CANCELS]
        state.changed = True
    remaining = [
        item
        for item in state.pending
        if not (item[0] == campaign and item[2] - trigger.offset_us <= at_us <= item[2])
    ]
    if len(remaining) != len(state.pending):
        state.pending = remaining
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
