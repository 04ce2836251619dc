"""The campaigns that may send, compiled once per catalog change for the hot path.

The catalog contains each campaign's stored definition as the control plane published it.
`compile_campaigns` turns the ones that may send into `LiveCampaign`s. Each has its
trigger's matchers, the delivery rules `decide` reads and its audience's segment
evaluator. An index by event name matches an event only against the triggers it can start
or cancel, through a `TriggerPlan` that evaluates each of their distinct conditions once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from domain.delivery import AccountRules, CampaignRules
from domain.lifecycle import CampaignState
from domain.segments import SegmentEvaluator
from domain.segments.state import Feature, features_of
from domain.triggers import CompiledTrigger, TriggerPlan, compile_trigger, plan_triggers
from schemas.campaign import (
    TRIGGERED_TYPES,
    CampaignDelivery,
    InlineSegmentAudience,
    SavedSegmentAudience,
    When,
    Who,
)
from schemas.campaign_message import Channel, WhatSection
from schemas.delivery import AccountDeliverySettings
from schemas.segment_rules import parse_segment_rule

__all__ = [
    "LIVE_STATES",
    "SCHEDULED_STATES",
    "CampaignSet",
    "LiveCampaign",
    "StoppedCampaign",
    "compile_campaigns",
]

logger = logging.getLogger(__name__)

# States in which a published triggered campaign reacts to events. An edit waiting for
# approval, or rejected, leaves the published version sending. A scheduled one reacts
# from its `start_at`, which `LiveCampaign.in_flight` checks, whether or not the scheduler
# has marked it running yet.
LIVE_STATES = frozenset({"scheduled", "running", "pending_approval", "rejected"})
# A scheduled campaign is sent by runs that the scheduler starts, so every published state
# counts: a completed one still sends the messages its last run deferred (quiet hours).
SCHEDULED_STATES = LIVE_STATES | {"scheduled", "awaiting_next_run", "completed"}

_WHEN: TypeAdapter[Any] = TypeAdapter(When)
_WHO: TypeAdapter[Any] = TypeAdapter(Who)
_CHANNEL: TypeAdapter[Channel] = TypeAdapter(Channel)


@dataclass(frozen=True, slots=True)
class LiveCampaign:
    """One campaign as the engine sends it: triggered (`trigger`) or sent by runs."""

    campaign_id: str
    name: str
    labels: tuple[str, ...]
    # The account that owns the campaign, which its Notification events name.
    account_id: str | None
    # The account's IANA time zone when the campaign was published.
    timezone: str | None
    trigger: CompiledTrigger | None
    when: Any
    rules: CampaignRules
    audience: SegmentEvaluator | None
    start_at: datetime | None
    end_at: datetime | None
    # The account's frequency caps and control group as published with the campaign, or
    # None when the account has none of its own and the engine's settings apply.
    account: AccountRules | None = None

    @property
    def channel(self) -> str:
        return self.rules.channel

    def in_flight(self, at: datetime) -> bool:
        """Tell whether `at` falls between the campaign's start and end."""
        if self.start_at is not None and at < self.start_at:
            return False
        return self.end_at is None or at < self.end_at


@dataclass(frozen=True, slots=True)
class StoppedCampaign:
    """A published campaign that may no longer send, for reporting what it held back."""

    campaign_id: str
    channel: str
    labels: tuple[str, ...]
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class CampaignSet:
    """The live campaigns, indexed for the hot path."""

    by_id: dict[str, LiveCampaign] = field(default_factory=dict)
    # Event name -> triggers whose start or cancel condition names that event.
    by_event: dict[str, tuple[CompiledTrigger, ...]] = field(default_factory=dict)
    inaction_ids: frozenset[str] = frozenset()
    # Campaigns with a segment audience, which a user must be in for a send to wait.
    audience_ids: frozenset[str] = frozenset()
    # Behaviour features that some audience reads; the engine counts only these.
    features: tuple[Feature, ...] = ()
    stopped: dict[str, StoppedCampaign] = field(default_factory=dict)
    # The account time zone of the campaigns with a segment audience, whose calendar days
    # their evaluators count in. NOTE: with audiences in several zones, the first one wins.
    audience_timezone: str | None = None
    # Event name -> the plan of `by_event[name]`, built from `by_event` on construction.
    plans: dict[str, TriggerPlan] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plans = {name: plan_triggers(name, triggers) for name, triggers in self.by_event.items()}
        object.__setattr__(self, "plans", plans)

    def triggers_for(self, event: str | None) -> TriggerPlan:
        """Return the plan of the triggers that `event` may start or cancel, empty for others."""
        return self.plans.get(event, _NO_TRIGGERS) if event else _NO_TRIGGERS


_NO_TRIGGERS = TriggerPlan(None)


def compile_campaigns(
    campaigns: Mapping[str, Mapping[str, Any]], segments: Mapping[str, Mapping[str, Any]]
) -> CampaignSet:
    """Compile every campaign of the catalog that may send.

    A campaign whose definition no longer parses, or whose saved segment is missing, is
    left out with a warning rather than stopping the worker.
    """
    live: dict[str, LiveCampaign] = {}
    stopped: dict[str, StoppedCampaign] = {}
    for campaign_id, stored in sorted(campaigns.items()):
        # Any producer can write to the campaigns topic, so a field of the wrong type is
        # a record to skip. The compiled build raises TypeError for it where it is read.
        try:
            definition = stored.get("live_definition")
            if not definition:
                continue
            if stored.get("state") not in SCHEDULED_STATES:
                stopped[campaign_id] = _stopped(campaign_id, stored, definition)
                continue
            campaign = _compile_one(campaign_id, stored, definition, segments)
        except (AttributeError, KeyError, TypeError, ValueError, ValidationError) as error:
            logger.warning("campaign skipped: %s", error, extra={"campaign_id": campaign_id})
            continue
        if campaign is not None:
            live[campaign_id] = campaign
    return _index(live, stopped)


def _stopped(
    campaign_id: str, stored: Mapping[str, Any], definition: Mapping[str, Any]
) -> StoppedCampaign:
    return StoppedCampaign(
        campaign_id,
        _text(definition, "channel") or "",
        _labels(definition),
        _text(stored, "account_id"),
    )


def _text(record: Mapping[str, Any], key: str) -> str | None:
    # The same check in both builds: the source would otherwise carry a number on into
    # the events it writes, where the compiled build raises at once.
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string, not {type(value).__name__}")
    return value


def _labels(definition: Mapping[str, Any]) -> tuple[str, ...]:
    labels = definition.get("labels") or ()
    if not isinstance(labels, list | tuple) or not all(isinstance(label, str) for label in labels):
        raise TypeError(f"labels must be a list of strings, not {labels!r}")
    return tuple(labels)


def _compile_one(
    campaign_id: str,
    stored: Mapping[str, Any],
    definition: Mapping[str, Any],
    segments: Mapping[str, Mapping[str, Any]],
) -> LiveCampaign | None:
    when = _WHEN.validate_python(definition["when"])
    trigger = compile_trigger(campaign_id, when)
    # A date-property campaign is triggered, but the scheduler sends it by daily runs.
    if when.type in TRIGGERED_TYPES and stored.get("state") not in LIVE_STATES:
        return None
    timezone = _text(stored, "timezone") or "UTC"
    # It names the topic of the send commands.
    channel = _CHANNEL.validate_python(definition["channel"])
    delivery = CampaignDelivery.model_validate(definition["delivery"])
    rules = CampaignRules(
        campaign_id=campaign_id,
        channel=channel,
        # The published version keeps sending while an edit waits for approval.
        state=CampaignState.RUNNING,
        delivery=delivery,
        what=WhatSection.model_validate(definition["what"]),
        calendar=when.timezone,
        cut_off=delivery.cutoff_local_time,
    )
    return LiveCampaign(
        campaign_id=campaign_id,
        name=_text(definition, "name") or _text(stored, "name") or campaign_id,
        labels=_labels(definition),
        account_id=_text(stored, "account_id"),
        timezone=_text(stored, "timezone"),
        trigger=trigger,
        when=when,
        rules=rules,
        audience=_audience(
            _WHO.validate_python(definition["who"]), segments, timezone, stored.get("account_id")
        ),
        start_at=when.start_at,
        end_at=when.end_at,
        account=_account_rules(stored),
    )


def _account_rules(stored: Mapping[str, Any]) -> AccountRules | None:
    settings = stored.get("account_delivery")
    if settings is None:
        return None
    # The engine puts its own zone in place of a missing one.
    timezone = stored.get("timezone") or ""
    return AccountRules(
        timezone, AccountDeliverySettings.model_validate(settings), stored.get("account_id")
    )


def _audience(
    who: Any, segments: Mapping[str, Mapping[str, Any]], timezone: str, account_id: str | None
) -> SegmentEvaluator | None:
    if isinstance(who, InlineSegmentAudience):
        definition = who.definition
    elif isinstance(who, SavedSegmentAudience):
        segment = segments.get(who.segment_id)
        if segment is None:
            raise KeyError(f"saved segment {who.segment_id!r} is not in the catalog")
        definition = segment["definition"]
    else:
        return None
    return SegmentEvaluator(parse_segment_rule(definition), timezone, account_id=account_id)


def _index(live: dict[str, LiveCampaign], stopped: dict[str, StoppedCampaign]) -> CampaignSet:
    by_event: dict[str, list[CompiledTrigger]] = {}
    features: dict[str, Feature] = {}
    inaction: set[str] = set()
    with_audience: set[str] = set()
    audience_timezone = None
    for campaign in live.values():
        if campaign.audience is not None:
            with_audience.add(campaign.campaign_id)
            audience_timezone = audience_timezone or campaign.timezone
            audience = campaign.audience
            for feature in features_of(audience.rule, audience.account_id):
                features.setdefault(feature.key, feature)
        trigger = campaign.trigger
        if trigger is None:
            continue
        for name in _event_names(trigger):
            by_event.setdefault(name, []).append(trigger)
        if trigger.kind == "inaction":
            inaction.add(campaign.campaign_id)
    return CampaignSet(
        by_id=live,
        by_event={name: tuple(triggers) for name, triggers in by_event.items()},
        inaction_ids=frozenset(inaction),
        audience_ids=frozenset(with_audience),
        features=tuple(features.values()),
        stopped=stopped,
        audience_timezone=audience_timezone,
    )


def _event_names(trigger: CompiledTrigger) -> list[str]:
    names = [trigger.start_event]
    if trigger.cancel_event is not None and trigger.cancel_event != trigger.start_event:
        names.append(trigger.cancel_event)
    return names
