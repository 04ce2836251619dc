"""The engine of one events partition: from events to send commands, in event time.

Pure: no clock, no Kafka. The stream feeds a partition's events in offset order and writes
out what `Effects` lists; the tests and the benchmark drive the same object.

Per user, the state is one JSON object:

    {"profile":   the profile as `domain.profiles` keeps it,
     "triggers":  `TriggerState` (delayed sends and open inaction windows),
     "deferred":  [[campaign id, trigger id, send at µs], …] held back by quiet hours
                  or the throttle, decided again at that time,
     "history":   `UserSendHistory` for caps,
     "behaviour": segment behaviour state, for the features live audiences read,
     "ledger":    {send id: epoch second decided}, every send id already decided}

Per partition: the event-time watermark and the campaign counters (throttle, limits).

Time rules:
- The watermark is the latest event time seen. An event moves it only if its time is at
  most `max_future_us` after its own `received_at`: a device whose clock runs ahead must
  not close everyone's windows early.
- Before an event is applied, the sends due at the advanced watermark go out: a delayed
  send once the watermark reaches its time, an inaction window once the watermark is past
  its end (an event exactly at the end still cancels it).
- An event triggers only if its time lies within [watermark - max_lateness_us,
  watermark + max_future_us]; outside, it still updates the profile and cancels windows.

Send ids: BLAKE2b of campaign, trigger event id (or run id) and user. Each decided id goes
into the user's ledger, so an event processed twice, after a crash or as a copy, never
issues a second command.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.delivery import (
    AccountRules,
    SendCandidate,
    decide,
    new_campaign_counters,
    new_user_history,
    record_decision,
)
from domain.delivery.channels import CONTACT_TRAITS
from domain.delivery.state import HISTORY_HORIZON_S
from domain.engine.campaigns import CampaignSet, LiveCampaign
from domain.errors import InvalidValue
from domain.profiles import apply_event as apply_to_profile
from domain.profiles import new_profile
from domain.segments.state import DEFAULT_HORIZON_DAYS
from domain.segments.state import apply_event as apply_to_behaviour
from domain.triggers import (
    DEFAULT_MAX_FUTURE_US,
    DEFAULT_MAX_LATENESS_US,
    TriggerState,
    due_fires,
    epoch_us,
    on_event,
)
from schemas.delivery import Decision, DeliveryOutcome, NotSentReason
from schemas.envelope import format_timestamp

__all__ = [
    "NOT_SENT_EVENT",
    "SENT_EVENT",
    "Effects",
    "EngineRules",
    "PartitionEngine",
    "send_id_of",
]

SENT_EVENT = "Notification Sent"
NOT_SENT_EVENT = "Notification Not Sent"
_FAR_FUTURE_US = 2**62
_MAX_LEDGER = 10_000


@dataclass(frozen=True, slots=True)
class EngineRules:
    """Settings every partition shares."""

    account: AccountRules = field(default_factory=lambda: AccountRules("UTC"))
    max_lateness_us: int = DEFAULT_MAX_LATENESS_US
    max_future_us: int = DEFAULT_MAX_FUTURE_US
    horizon_days: int = DEFAULT_HORIZON_DAYS


@dataclass(slots=True)
class Effects:
    """What one call produced, for the stream to write in one transaction.

    `sends` are send command values (JSON objects with `channel` and `send_id`); `events`
    are envelopes for the events topic; `changed` are the user keys whose state changed;
    `reasons` counts the decisions not to send by (campaign id, reason).
    """

    sends: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    meta_changed: bool = False


def send_id_of(campaign_id: str, occasion: str, user_key: str) -> str:
    """Derive the send id of one campaign, occasion (trigger event or run) and user."""
    text = "\x1f".join((campaign_id, occasion, user_key)).encode()
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def _new_user(envelope: dict[str, Any], partition: int) -> dict[str, Any]:
    return {
        "profile": new_profile(envelope, partition),
        "triggers": TriggerState().to_json(),
        "deferred": [],
        "history": new_user_history(),
        "behaviour": {"features": {}},
        "ledger": {},
    }


class PartitionEngine:
    """The triggered sends of one partition's users.

    Args:
        partition: the events partition, written into new profiles.
        rules: settings shared by every partition.
        users: restored user states by key (user id, or anonymous id without one).
        meta: the restored partition record (`meta()`), or None for a new partition.
    """

    def __init__(
        self,
        partition: int,
        rules: EngineRules,
        users: dict[str, dict[str, Any]] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.partition = partition
        self.rules = rules
        self.users = users if users is not None else {}
        meta = meta or {}
        self.watermark_us: int | None = meta.get("watermark_us")
        self.counters: dict[str, Any] = meta.get("counters", {})
        # (due µs, user key); entries may be stale, a user's due items are read from state.
        self._due: list[tuple[int, str]] = []
        for key, state in self.users.items():
            self._schedule(key, state)

    def meta(self) -> dict[str, Any]:
        return {"watermark_us": self.watermark_us, "counters": self.counters}

    # Entry points --------------------------------------------------------------------

    def process(
        self, envelopes: Iterable[dict[str, Any]], campaigns: CampaignSet, now: datetime
    ) -> Effects:
        """Apply a partition's events in order and decide every send they make due."""
        effects = Effects()
        for envelope in envelopes:
            self._process_one(envelope, campaigns, now, effects)
        return effects

    def advance(self, watermark_us: int, campaigns: CampaignSet, now: datetime) -> Effects:
        """Move the watermark forward without an event, as the stream does for an idle
        partition, and decide the sends it makes due."""
        effects = Effects()
        if self.watermark_us is None or watermark_us > self.watermark_us:
            self._advance(watermark_us, campaigns, now, effects)
        return effects

    def flush(self, campaigns: CampaignSet, now: datetime) -> Effects:
        """Decide every pending send now, each at its own time, without moving the watermark.

        For the end of a replay of history: the windows still open would otherwise wait
        for live traffic to close them.
        """
        effects = Effects()
        waiting = [
            key
            for key, state in self.users.items()
            if state["triggers"]["pending"] or state["deferred"]
        ]
        self._due.clear()
        for key in sorted(waiting):
            self._fire_due(key, _FAR_FUTURE_US, campaigns, now, effects)
        return effects

    # Event path ------------------------------------------------------------------------

    def _process_one(
        self, envelope: dict[str, Any], campaigns: CampaignSet, now: datetime, effects: Effects
    ) -> None:
        key = envelope.get("user_id") or envelope.get("anonymous_id")
        if not key:
            return
        at_us = epoch_us(envelope["timestamp"])
        received = envelope.get("received_at")
        trusted = received is None or at_us <= epoch_us(received) + self.rules.max_future_us
        if trusted and (self.watermark_us is None or at_us > self.watermark_us):
            self._advance(at_us, campaigns, now, effects)
        state = self.users.get(key)
        if state is None:
            state = self.users[key] = _new_user(envelope, self.partition)
        apply_to_profile(state["profile"], envelope)
        if campaigns.features:
            apply_to_behaviour(
                state["behaviour"],
                envelope,
                campaigns.features,
                self.rules.account.zone,
                horizon_days=self.rules.horizon_days,
            )
        effects.changed.add(key)
        triggers = campaigns.triggers_for(envelope.get("event"))
        if not triggers:
            return
        trigger_state = TriggerState.from_json(state["triggers"])
        pending_before = len(trigger_state.pending)
        fires = on_event(
            triggers,
            trigger_state,
            envelope,
            state["profile"]["traits"],
            self.watermark_us if self.watermark_us is not None else at_us,
            self.rules.max_lateness_us,
            self.rules.max_future_us,
        )
        state["triggers"] = trigger_state.to_json()
        for campaign_id, _, fire_at_us in trigger_state.pending[pending_before:]:
            # A window is due only once the watermark is past its end.
            closes_us = fire_at_us + (campaign_id in campaigns.inaction_ids)
            heapq.heappush(self._due, (closes_us, key))
        for fire in fires:
            self._decide(
                key,
                state,
                fire.campaign_id,
                fire.trigger_id,
                fire.fire_at_us,
                campaigns,
                now,
                effects,
            )

    def _advance(
        self, watermark_us: int, campaigns: CampaignSet, now: datetime, effects: Effects
    ) -> None:
        self.watermark_us = watermark_us
        effects.meta_changed = True
        while self._due and self._due[0][0] <= watermark_us:
            _, key = heapq.heappop(self._due)
            self._fire_due(key, watermark_us, campaigns, now, effects)

    def _fire_due(
        self, key: str, watermark_us: int, campaigns: CampaignSet, now: datetime, effects: Effects
    ) -> None:
        state = self.users.get(key)
        if state is None:
            return
        trigger_state = TriggerState.from_json(state["triggers"])
        due = [
            (fire.fire_at_us, fire.campaign_id, fire.trigger_id)
            for fire in due_fires(trigger_state, key, watermark_us, campaigns.inaction_ids)
        ]
        deferred = state["deferred"]
        due += [(at_us, cid, tid) for cid, tid, at_us in deferred if at_us <= watermark_us]
        if not due:
            # Nothing can be due before the watermark moves again.
            self._schedule(key, state, watermark_us + 1)
            return
        state["triggers"] = trigger_state.to_json()
        state["deferred"] = [item for item in deferred if item[2] > watermark_us]
        effects.changed.add(key)
        for at_us, campaign_id, trigger_id in sorted(due):
            self._decide(key, state, campaign_id, trigger_id, at_us, campaigns, now, effects)
        self._schedule(key, state, watermark_us + 1)

    def _schedule(self, key: str, state: dict[str, Any], not_before_us: int = 0) -> None:
        # The earliest time is enough: an entry popped too early, or stale, only costs a
        # look at the user's state, which schedules the user again.
        times = [item[2] for item in state["triggers"]["pending"]]
        times += [item[2] for item in state["deferred"]]
        if times:
            heapq.heappush(self._due, (max(min(times), not_before_us), key))

    # Decision --------------------------------------------------------------------------

    def _decide(
        self,
        key: str,
        state: dict[str, Any],
        campaign_id: str,
        trigger_id: str,
        at_us: int,
        campaigns: CampaignSet,
        now: datetime,
        effects: Effects,
    ) -> None:
        campaign = campaigns.by_id.get(campaign_id)
        if campaign is None:
            # Stopped or deleted since the trigger fired: nothing is owed to the user.
            return
        at = datetime.fromtimestamp(at_us / 1_000_000, UTC).replace(microsecond=at_us % 1_000_000)
        if not campaign.in_flight(at):
            return
        send_id = send_id_of(campaign_id, trigger_id, key)
        ledger = state["ledger"]
        if send_id in ledger:
            return
        traits = state["profile"]["traits"]
        if campaign.audience is not None and not campaign.audience.matches(
            traits, state["behaviour"], at
        ):
            return
        candidate = SendCandidate(
            user_id=key, at=at, traits=traits, timezone=_text(traits.get("Tz"))
        )
        counters = self.counters.get(campaign_id) or new_campaign_counters()
        try:
            decision = decide(
                candidate, campaign.rules, self.rules.account, state["history"], counters
            )
        except InvalidValue as error:
            decision = Decision(
                DeliveryOutcome.SKIP, reason=NotSentReason.RENDER_FAILED, detail=error.message
            )
        effects.changed.add(key)
        if decision.outcome is DeliveryOutcome.DEFER:
            assert decision.send_at is not None, "a deferral carries its time"
            state["deferred"].append([campaign_id, trigger_id, _micros(decision.send_at)])
            heapq.heappush(self._due, (_micros(decision.send_at), key))
            return
        _remember(ledger, send_id, at_us // 1_000_000)
        if decision.outcome is DeliveryOutcome.SKIP:
            assert decision.reason is not None, "a skip carries its reason"
            effects.reasons[(campaign_id, decision.reason.value)] += 1
            effects.events.append(
                _notification(
                    NOT_SENT_EVENT,
                    send_id,
                    campaign,
                    state,
                    at,
                    now,
                    None,
                    {
                        "reason": decision.reason.value,
                        "detail": decision.detail,
                        "trigger_id": trigger_id,
                    },
                )
            )
            return
        history, counters = record_decision(
            decision, candidate, campaign.rules, self.rules.account, state["history"], counters
        )
        state["history"] = history
        self.counters[campaign_id] = counters
        effects.meta_changed = True
        effects.sends.append(_command(send_id, campaign, state, decision, trigger_id))
        effects.events.append(
            _notification(
                SENT_EVENT,
                send_id,
                campaign,
                state,
                at,
                now,
                decision.variant,
                {"trigger_id": trigger_id},
            )
        )


def _remember(ledger: dict[str, int], send_id: str, at_s: int) -> None:
    ledger[send_id] = at_s
    if len(ledger) > _MAX_LEDGER // 2:
        oldest_s = at_s - HISTORY_HORIZON_S
        for old in [sid for sid, when in ledger.items() if when < oldest_s]:
            del ledger[old]
    if len(ledger) > _MAX_LEDGER:
        # NOTE: past this many decisions in the horizon, the oldest ids are forgotten.
        for old in sorted(ledger, key=ledger.__getitem__)[: len(ledger) - _MAX_LEDGER]:
            del ledger[old]


def _micros(moment: datetime) -> int:
    return epoch_us(format_timestamp(moment))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _command(
    send_id: str,
    campaign: LiveCampaign,
    state: dict[str, Any],
    decision: Decision,
    trigger_id: str,
) -> dict[str, Any]:
    profile = state["profile"]
    traits = profile["traits"]
    channel = campaign.rules.channel
    assert decision.send_at is not None, "a send carries its time"
    return {
        "send_id": send_id,
        "campaign_id": campaign.campaign_id,
        "campaign_name": campaign.name,
        "channel": channel,
        "labels": list(campaign.labels),
        "variant": decision.variant,
        "user_id": profile["user_id"],
        "anonymous_id": profile["anonymous_id"],
        "send_at": format_timestamp(decision.send_at),
        "trigger_id": trigger_id,
        "run_id": None,
        "contact": {
            name: traits[name] for name in CONTACT_TRAITS.get(channel, ()) if name in traits
        },
        "message": decision.message,
    }


def _notification(
    name: str,
    send_id: str,
    campaign: LiveCampaign,
    state: dict[str, Any],
    at: datetime,
    now: datetime,
    variant: str | None,
    properties: dict[str, Any],
) -> dict[str, Any]:
    profile = state["profile"]
    return {
        "message_id": send_id,
        "type": "track",
        "event": name,
        "name": None,
        "user_id": profile["user_id"],
        "anonymous_id": profile["anonymous_id"],
        "group_id": None,
        "previous_id": None,
        "timestamp": format_timestamp(at),
        "received_at": format_timestamp(now),
        "properties": {"send_id": send_id, **properties},
        "traits": {},
        "context": {},
        "campaign_id": campaign.campaign_id,
        "variant": variant,
        "channel": campaign.rules.channel,
        "labels": list(campaign.labels),
    }
