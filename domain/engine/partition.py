"""The engine of one events partition: from events to send commands, in event time.

Pure: no clock, no Kafka. The stream feeds a partition's events in offset order and writes
out what `Effects` lists; the tests and the benchmark drive the same object.

Per user, the state is one JSON object:

    {"profile":   identity and traits, as `domain.profiles.apply_traits` keeps them,
     "triggers":  `TriggerState` (delayed sends and open inaction windows),
     "deferred":  [[campaign id, occasion, send at µs, run id or null, held], …] held
                  back by quiet hours, the throttle or a user's local run time, decided
                  again at that time. `held` is 1 when the throttle booked the send's
                  place in its bucket (`domain.delivery.throttle.hold`), else absent,
     "history":   `UserSendHistory` for caps,
     "behaviour": segment behaviour state, for the features live audiences read,
     "ledger":    {send id: epoch second decided}, every send id already decided}

Per partition: the event-time watermark and the campaign counters (throttle, limits).
Each partition applies its share of a campaign's throttle and limits
(`domain.delivery.share`), so that together they never exceed them.

Time rules:
- The watermark is the latest event time seen. An event moves it only if its time is at
  most `max_future_us` after its own `received_at` and after the worker's clock: a device
  whose clock runs ahead must not close everyone's windows early, nor a producer that
  writes a `received_at` ahead.
- Before an event is applied, the sends due at the advanced watermark go out. A delayed
  send is due once the watermark reaches its time. An inaction window is due once the
  watermark is past its end, because an event exactly at the end still cancels it.
- An event triggers only if its time lies within [watermark - max_lateness_us,
  watermark + max_future_us]; outside, it still updates the profile and cancels windows.

Scheduled runs: the scheduler writes the members of a run's audience to the runs topic,
in the partition of each user, and `run` decides each one with the same controls. With
delivery in the user's time zone, a user whose local send time is still ahead waits in
`deferred`. A user whose local time has passed gets the next day's, or nothing, as the
campaign's `missed_local_time` sets.

Send ids: BLAKE2b of campaign, occasion (the trigger event's id, or the run id) and user.
Each decided id goes into the user's ledger, so an event processed twice, after a crash or
as a copy, never issues a second command. A pending send of a campaign stopped since is
reported not sent, with the reason `campaign_stopped`.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from domain.delivery import (
    AccountRules,
    SendCandidate,
    decide,
    new_campaign_counters,
    new_user_history,
    record_decision,
)
from domain.delivery.channels import CONTACT_TRAITS
from domain.delivery.clock import local_instant, resolve_zone
from domain.delivery.share import Share
from domain.delivery.state import BUCKET_S, HISTORY_HORIZON_S, prune_campaign_buckets
from domain.delivery.throttle import hold, release
from domain.engine.campaigns import CampaignSet, LiveCampaign, StoppedCampaign
from domain.errors import InvalidValue
from domain.profiles import apply_traits
from domain.segments.state import DEFAULT_HORIZON_DAYS
from domain.segments.state import apply_event as apply_to_behaviour
from domain.segments.state import epoch_us as moment_us
from domain.triggers import (
    DEFAULT_MAX_FUTURE_US,
    DEFAULT_MAX_LATENESS_US,
    TriggerState,
    due_fires,
    epoch_us,
    on_event,
)
from schemas.campaign import SELF_TRIGGERING_EVENTS
from schemas.delivery import Decision, DeliveryOutcome, NotSentReason
from schemas.envelope import format_timestamp

__all__ = [
    "MAX_WAITING",
    "NOT_SENT_EVENT",
    "SENT_EVENT",
    "Effects",
    "EngineRules",
    "PartitionEngine",
    "fit_state",
    "local_run_time",
    "run_request_problem",
    "send_id_of",
]

SENT_EVENT = "Notification Sent"
NOT_SENT_EVENT = "Notification Not Sent"
# Messages one user may have waiting, pending triggers and deferred sends together. A
# user's state is one Kafka record, so a burst of one user's events must not outgrow it.
MAX_WAITING = 1_000
_MAX_LEDGER = 10_000
_KEPT_LEDGER = 7_500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The text of each second a send was decided at. Sends decided together share their
# second, so most lookups hit. The dict is emptied when it reaches its bound.
_SECOND_TEXTS: dict[int, str] = {}
_MAX_SECOND_TEXTS = 4096
_BUCKET_US = BUCKET_S * 1_000_000


@dataclass(frozen=True, slots=True)
class EngineRules:
    """Settings every partition shares."""

    account: AccountRules = field(default_factory=lambda: AccountRules("UTC"))
    max_lateness_us: int = DEFAULT_MAX_LATENESS_US
    max_future_us: int = DEFAULT_MAX_FUTURE_US
    horizon_days: int = DEFAULT_HORIZON_DAYS
    # Of the events topic: each partition applies its share of throttles and limits.
    partitions: int = 1


@dataclass(slots=True)
class Effects:
    """The output of one call, for the stream to write in one transaction.

    - `sends`: send command values, JSON objects with `channel` and `send_id`.
    - `events`: envelopes for the events topic.
    - `changed`: the user keys whose state changed.
    - `reasons`: the decisions not to send, counted by (campaign id, reason).
    - `untimely`: events of a trigger's name too far behind or ahead of the watermark to
      start a send. They are not decisions, so no report counts them.
    - `rejected_traits`: per user key, the traits not stored because the profile was full
      (`domain.profiles.MAX_TRAITS_BYTES`).
    """

    sends: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    meta_changed: bool = False
    untimely: int = 0
    rejected_traits: dict[str, list[str]] = field(default_factory=dict)


def send_id_of(campaign_id: str, occasion: str, user_key: str) -> str:
    """Derive the send id of one campaign, occasion (trigger event or run) and user."""
    text = "\x1f".join((campaign_id, occasion, user_key)).encode()
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def _new_user(envelope: dict[str, Any]) -> dict[str, Any]:
    return {
        "profile": {
            "user_id": envelope.get("user_id"),
            "anonymous_id": envelope.get("anonymous_id"),
            "traits": {},
            "traits_updated_at": None,
        },
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
        self.share = Share(partition % rules.partitions, rules.partitions)
        self.users = users if users is not None else {}
        meta = meta or {}
        self.watermark_us: int | None = meta.get("watermark_us")
        self.counters: dict[str, Any] = meta.get("counters", {})
        # (due µs, user key), and per user the time of its one live entry: an entry whose
        # time is not its user's in `_armed` is stale and skipped. A user's due items are
        # read from state.
        self._due: list[tuple[int, str]] = []
        self._armed: dict[str, int] = {}
        self._pruned_bucket = 0
        self._accounts: dict[str, AccountRules] = {}
        self._now: datetime | None = None
        self._campaigns: CampaignSet | None = None
        self._reads_notifications = False
        self._held_checked: CampaignSet | None = None
        self._last_received: tuple[str, int] = ("", 0)
        # The wall clock of the current `process` call, in microseconds.
        self._clock_us = 0
        self._now_text = ""
        self._rejected: list[str] = []
        for key, state in self.users.items():
            self._schedule(key, state)

    def meta(self) -> dict[str, Any]:
        return {"watermark_us": self.watermark_us, "counters": self.counters}

    # Entry points --------------------------------------------------------------------

    def process(
        self, envelopes: Iterable[dict[str, Any]], campaigns: CampaignSet, now: datetime
    ) -> Effects:
        """Apply a partition's events in order and decide every send they make due."""
        effects = self.sync(campaigns, now)
        self._clock_us = moment_us(now)
        for envelope in envelopes:
            self._process_one(envelope, campaigns, now, effects)
        return effects

    def advance(self, watermark_us: int, campaigns: CampaignSet, now: datetime) -> Effects:
        """Move the watermark forward without an event, as the stream does for an idle
        partition, and decide the sends it makes due."""
        effects = self.sync(campaigns, now)
        if self.watermark_us is None or watermark_us > self.watermark_us:
            self._advance(watermark_us, campaigns, now, effects)
        return effects

    def flush(self, campaigns: CampaignSet, now: datetime) -> Effects:
        """Decide the pending sends whose time has passed by the wall clock `now`, each at
        its own time, without moving the watermark.

        For the end of a replay of history: its windows would otherwise wait for live
        traffic to close them. Windows of live traffic that end after `now`, and sends
        deferred past it, stay pending.
        """
        effects = self.sync(campaigns, now)
        self._due.clear()
        self._armed.clear()
        for key, state in self.users.items():
            self._schedule(key, state)
        self._decide_due(moment_us(now), campaigns, now, effects)
        return effects

    def run(self, request: Any, campaigns: CampaignSet, now: datetime) -> Effects:
        """Decide the sends of one run request: `campaign_id`, `run_id`, `run_at` (ISO) and
        the keys of the `users` in this partition that the run's audience selected.

        Raises:
            ValueError: the request does not have that shape (`run_request_problem`).
        """
        problem = run_request_problem(request)
        if problem is not None:
            # Checked before any state changes: a value of the wrong type found halfway
            # would leave some users decided, or a deferred send that fails when it is due.
            raise ValueError(problem)
        effects = self.sync(campaigns, now)
        campaign = campaigns.by_id.get(request["campaign_id"])
        if campaign is None:
            # Stopped since the scheduler wrote the request: the run sends nothing more.
            return effects
        run_id = request["run_id"]
        run_at = datetime.fromisoformat(request["run_at"])
        run_at_us = moment_us(run_at)
        for key in request["users"]:
            state = self.users.get(key)
            if state is None:
                # The landed profile is ahead of this engine's state: the user's events
                # have not reached it. NOTE: such users are not sent to by this run.
                effects.reasons[(campaign.campaign_id, NotSentReason.NOT_REACHABLE.value)] += 1
                continue
            at = local_run_time(
                campaign, run_at, state["profile"]["traits"], self._account(campaign)
            )
            if at is None:
                decision = Decision(DeliveryOutcome.SKIP, reason=NotSentReason.MISSED_LOCAL_TIME)
                send_id = send_id_of(campaign.campaign_id, run_id, key)
                if send_id not in state["ledger"]:
                    _remember(state["ledger"], send_id, run_at_us // 1_000_000)
                    source = {"run_id": run_id}
                    self._not_sent(
                        campaign, state, send_id, run_at, now, decision, source, campaigns, effects
                    )
                    effects.changed.add(key)
                continue
            at_us = moment_us(at)
            if at_us > run_at_us:
                state["deferred"].append([campaign.campaign_id, run_id, at_us, run_id])
                self._arm(key, at_us)
                effects.changed.add(key)
                continue
            self._decide(
                key, state, campaign.campaign_id, run_id, at_us, campaigns, now, effects, run_id
            )
        return effects

    def sync(self, campaigns: CampaignSet, now: datetime) -> Effects:
        """Take in a change of campaigns without an event, and return the effects.

        The sends that the throttle holds for a campaign that stopped since are decided,
        and reported not sent, at once. Every other entry point starts with this. A call
        with the same campaigns as the last does nothing.
        """
        effects = Effects()
        if campaigns is self._held_checked:
            return effects
        self._held_checked = campaigns
        stopped = {
            campaign_id
            for campaign_id, counters in self.counters.items()
            if counters.get("held") and campaign_id in campaigns.stopped
        }
        if stopped and self.watermark_us is not None:
            # Decided, and reported not sent, at the watermark rather than a day later when
            # their places would have come.
            self._call_back(stopped, self.watermark_us, effects)
            self._decide_due(self.watermark_us, campaigns, now, effects)
        return effects

    def _call_back(self, campaign_ids: set[str], at_us: int, effects: Effects) -> None:
        """Give back the places that the throttle booked for these campaigns' messages,
        and make the messages due at `at_us` instead."""
        for key, state in self.users.items():
            deferred = state["deferred"]
            if not any(item[0] in campaign_ids and _booked(item) for item in deferred):
                continue
            for index, item in enumerate(deferred):
                if item[0] in campaign_ids and _booked(item):
                    release(self.counters[item[0]], _datetime(item[2]))
                    deferred[index] = [item[0], item[1], at_us, item[3]]
            self._arm(key, at_us)
            effects.changed.add(key)
        effects.meta_changed = True

    # Event path ------------------------------------------------------------------------

    def _process_one(
        self, envelope: dict[str, Any], campaigns: CampaignSet, now: datetime, effects: Effects
    ) -> None:
        key = envelope.get("user_id") or envelope.get("anonymous_id")
        if not key:
            return
        event = envelope.get("event")
        if event in SELF_TRIGGERING_EVENTS:
            # The engine's own records come back on the topic it reads. They change no
            # profile and trigger nothing. The audiences that read them counted them when
            # they were decided, which the send id in the user's ledger shows.
            if not self.reads_notifications(campaigns):
                return
            known = self.users.get(key)
            if known is not None and envelope.get("message_id") in known["ledger"]:
                return

        at_us = epoch_us(envelope["timestamp"])
        if self.watermark_us is None or at_us > self.watermark_us:
            if at_us <= self.reach_us(envelope.get("received_at"), self._clock_us):
                self._advance(at_us, campaigns, now, effects)

        state = self.users.get(key)
        # Most events change nothing the engine keeps, and then no state is written.
        changed = state is None
        if state is None:
            state = self.users[key] = _new_user(envelope)
        rejected = self._rejected
        changed |= apply_traits(state["profile"], envelope, rejected)
        if rejected:
            effects.rejected_traits.setdefault(key, []).extend(rejected)
            rejected.clear()
        if campaigns.features:
            changed |= apply_to_behaviour(
                state["behaviour"],
                envelope,
                campaigns.features,
                self._behaviour_zone(campaigns),
                horizon_days=self.rules.horizon_days,
            )
        if changed:
            effects.changed.add(key)

        if event in SELF_TRIGGERING_EVENTS:
            # The engine's own records; campaigns saved before that rule must not loop.
            return
        triggers = campaigns.triggers_for(event)
        if not triggers:
            return

        trigger_state = TriggerState.over(state["triggers"])
        fires = on_event(
            triggers,
            trigger_state,
            envelope,
            state["profile"]["traits"],
            # Without a watermark, only an event too far ahead to set one reaches here.
            self.watermark_us if self.watermark_us is not None else self._clock_us,
            self.rules.max_lateness_us,
            self.rules.max_future_us,
            at_us,
            MAX_WAITING - len(trigger_state.pending) - len(state["deferred"]),
            self._audiences(campaigns, state, at_us) if campaigns.audience_ids else None,
        )
        if trigger_state.untimely:
            effects.untimely += 1
        if trigger_state.changed:
            state["triggers"] = trigger_state.to_json()
            effects.changed.add(key)
            message_id = envelope["message_id"]
            for campaign_id, trigger_id, fire_at_us in trigger_state.pending:
                if trigger_id == message_id:
                    # A window is due only once the watermark is past its end.
                    closes_us = fire_at_us + (campaign_id in campaigns.inaction_ids)
                    self._arm(key, closes_us)
        for fire in trigger_state.crowded or ():
            self._reject_crowded(
                key, state, fire.campaign_id, fire.trigger_id, at_us, campaigns, now, effects
            )

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
        self._decide_due(watermark_us, campaigns, now, effects)
        oldest_bucket = (watermark_us - self.rules.max_lateness_us) // _BUCKET_US - 1
        if oldest_bucket > self._pruned_bucket:
            # No decision reaches further back than the lateness that events are allowed.
            self._pruned_bucket = oldest_bucket
            for campaign_id, counters in self.counters.items():
                self.counters[campaign_id] = prune_campaign_buckets(counters, oldest_bucket)

    def _decide_due(
        self, until_us: int, campaigns: CampaignSet, now: datetime, effects: Effects
    ) -> None:
        # Sends are decided in time order across users, so that throttle and limit counts
        # grow in time order. A later send decided first could push an earlier bucket's
        # count out of the counters, and that bucket would then take one send too many.
        armed = self._armed
        while self._due and self._due[0][0] <= until_us:
            at_us, key = heapq.heappop(self._due)
            if armed.get(key) != at_us:
                continue
            del armed[key]
            self._fire_due(key, at_us, campaigns, now, effects)

    def _fire_due(
        self, key: str, at_us: int, campaigns: CampaignSet, now: datetime, effects: Effects
    ) -> None:
        """Decide a user's pending sends that are due at `at_us`, the time of their entry."""
        state = self.users.get(key)
        if state is None:
            return
        trigger_state = TriggerState.over(state["triggers"])
        # (time, 0 when the throttle booked its place else 1, campaign, occasion, run id)
        due: list[tuple[int, int, str, str, str | None]] = [
            (fire.fire_at_us, 1, fire.campaign_id, fire.trigger_id, None)
            for fire in due_fires(trigger_state, key, at_us, campaigns.inaction_ids)
        ]
        deferred = state["deferred"]
        due += [
            (
                item[2],
                0 if _booked(item) else 1,
                item[0],
                item[1],
                item[3] if len(item) > 3 else None,
            )
            for item in deferred
            if item[2] <= at_us
        ]
        if not due:
            # Popped early, or its item was cancelled: the user's next item is armed again.
            self._schedule(key, state, at_us + 1)
            return
        state["triggers"] = trigger_state.to_json()
        state["deferred"] = [item for item in deferred if item[2] > at_us]
        effects.changed.add(key)
        # A send whose place the throttle booked goes first, so that another message of
        # the same user due at the same time cannot take that place.
        due.sort(key=lambda item: item[:4])
        for item_us, unbooked, campaign_id, occasion, run_id in due:
            if not unbooked:
                # The place is given back just before the send is decided again in it.
                counters = self.counters.get(campaign_id)
                if counters is not None:
                    release(counters, _datetime(item_us))
                    effects.meta_changed = True
            self._decide(
                key,
                state,
                campaign_id,
                occasion,
                item_us,
                campaigns,
                now,
                effects,
                run_id,
                held=True,
            )
        self._schedule(key, state, at_us + 1)

    def _schedule(self, key: str, state: dict[str, Any], not_before_us: int = 0) -> None:
        # The earliest time is enough: an entry popped too early, or stale, only costs a
        # look at the user's state, which schedules the user again.
        times = [item[2] for item in state["triggers"]["pending"]]
        times += [item[2] for item in state["deferred"]]
        if times:
            self._arm(key, max(min(times), not_before_us))

    def _arm(self, key: str, at_us: int) -> None:
        """Make sure the user's entry in the heap is due no later than `at_us`."""
        armed = self._armed.get(key)
        if armed is None or at_us < armed:
            self._armed[key] = at_us
            heapq.heappush(self._due, (at_us, key))

    # Decision --------------------------------------------------------------------------

    def _decide(
        self,
        key: str,
        state: dict[str, Any],
        campaign_id: str,
        occasion: str,
        at_us: int,
        campaigns: CampaignSet,
        now: datetime,
        effects: Effects,
        run_id: str | None = None,
        held: bool = False,
    ) -> None:
        """Decide one message at `at_us`. `held` is True when it was pending or deferred until then."""
        send_id = send_id_of(campaign_id, occasion, key)
        ledger = state["ledger"]
        if send_id in ledger:
            return
        at = _datetime(at_us)
        source = {"trigger_id": occasion} if run_id is None else {"run_id": run_id}

        campaign = campaigns.by_id.get(campaign_id)
        if campaign is None:
            # Stopped since the trigger fired, or deleted: the report counts the first.
            stopped = campaigns.stopped.get(campaign_id)
            if stopped is not None:
                _remember(ledger, send_id, at_us // 1_000_000)
                effects.changed.add(key)
                decision = Decision(DeliveryOutcome.SKIP, reason=NotSentReason.CAMPAIGN_STOPPED)
                self._not_sent(
                    stopped, state, send_id, at, now, decision, source, campaigns, effects
                )
            return
        if not campaign.in_flight(at):
            if held and campaign.end_at is not None and at >= campaign.end_at:
                # It qualified while the campaign ran, so the report counts it.
                _remember(ledger, send_id, at_us // 1_000_000)
                effects.changed.add(key)
                self._not_sent(
                    campaign,
                    state,
                    send_id,
                    at,
                    now,
                    _past_end(campaign.end_at),
                    source,
                    campaigns,
                    effects,
                )
            return

        traits = state["profile"]["traits"]
        # A run's members were selected by SQL over all the landed history; the engine
        # counts behaviour only for the audiences of triggered campaigns.
        if (
            run_id is None
            and campaign.audience is not None
            and not campaign.audience.matches(traits, state["behaviour"], at)
        ):
            if held:
                # It was in the audience when it began to wait, so the report counts it.
                _remember(ledger, send_id, at_us // 1_000_000)
                effects.changed.add(key)
                decision = Decision(DeliveryOutcome.SKIP, reason=NotSentReason.LEFT_AUDIENCE)
                self._not_sent(
                    campaign, state, send_id, at, now, decision, source, campaigns, effects
                )
            return

        candidate = SendCandidate(
            user_id=key, at=at, traits=traits, timezone=_text(traits.get("Tz")), run_id=run_id
        )
        account = self._account(campaign)
        counters = self.counters.get(campaign_id) or new_campaign_counters()
        try:
            decision = decide(
                candidate, campaign.rules, account, state["history"], counters, share=self.share
            )
        except InvalidValue as error:
            decision = Decision(
                DeliveryOutcome.SKIP, reason=NotSentReason.RENDER_FAILED, detail=error.message
            )
        effects.changed.add(key)

        if (
            decision.outcome is DeliveryOutcome.DEFER
            and campaign.end_at is not None
            and decision.send_at is not None
            and decision.send_at >= campaign.end_at
        ):
            # It would wait until after the campaign's end, so it is reported now.
            decision = _past_end(campaign.end_at)
        if decision.outcome is DeliveryOutcome.DEFER:
            if any(item[0] == campaign_id and item[1] == occasion for item in state["deferred"]):
                # This is a copy of the event behind a message that is already waiting.
                return
            if _waiting(state) < MAX_WAITING:
                self._defer(key, state, campaign_id, occasion, decision, counters, run_id, effects)
                return
            decision = _crowded()
        _remember(ledger, send_id, at_us // 1_000_000)
        if decision.outcome is DeliveryOutcome.SKIP:
            self._not_sent(campaign, state, send_id, at, now, decision, source, campaigns, effects)
            return

        state["history"], counters = record_decision(
            decision, candidate, campaign.rules, account, state["history"], counters
        )
        self.counters[campaign_id] = counters
        effects.meta_changed = True
        overall = campaign.rules.delivery.limits.overall
        if (
            overall is not None
            and counters.get("held")
            and counters["overall"] >= self.share.of(overall)
        ):
            # The messages still held can never be sent, so they are reported at once.
            self._call_back({campaign_id}, max(self.watermark_us or at_us, at_us), effects)
        assert decision.send_at is not None, "a send carries its time"
        send_at = _timestamp_text(moment_us(decision.send_at))
        effects.sends.append(_command(send_id, campaign, state, decision, send_at, source))
        notification = _notification(
            SENT_EVENT,
            send_id,
            campaign,
            state,
            send_at,
            self._received_at(now),
            decision.variant,
            source,
        )
        self._emit(notification, state, campaigns, effects)

    def _defer(
        self,
        key: str,
        state: dict[str, Any],
        campaign_id: str,
        occasion: str,
        decision: Decision,
        counters: Any,
        run_id: str | None,
        effects: Effects,
    ) -> None:
        """Keep a message waiting until `decision.send_at`, when it is decided again."""
        assert decision.send_at is not None, "a deferral carries its time"
        send_at_us = moment_us(decision.send_at)
        if decision.reason is NotSentReason.THROTTLED:
            hold(counters, decision.send_at)
            self.counters[campaign_id] = counters
            effects.meta_changed = True
            state["deferred"].append([campaign_id, occasion, send_at_us, run_id, 1])
        else:
            state["deferred"].append([campaign_id, occasion, send_at_us, run_id])
        self._arm(key, send_at_us)

    def _reject_crowded(
        self,
        key: str,
        state: dict[str, Any],
        campaign_id: str,
        occasion: str,
        at_us: int,
        campaigns: CampaignSet,
        now: datetime,
        effects: Effects,
    ) -> None:
        """Report a triggered message not sent because its user has too many waiting."""
        send_id = send_id_of(campaign_id, occasion, key)
        campaign = campaigns.by_id.get(campaign_id)
        if campaign is None or send_id in state["ledger"]:
            return
        _remember(state["ledger"], send_id, at_us // 1_000_000)
        source = {"trigger_id": occasion}
        at = _datetime(at_us)
        self._not_sent(campaign, state, send_id, at, now, _crowded(), source, campaigns, effects)
        effects.changed.add(key)

    @staticmethod
    def _audiences(
        campaigns: CampaignSet, state: dict[str, Any], at_us: int
    ) -> Callable[[str], bool]:
        """Return whether the user is in a campaign's audience at `at_us`, by campaign id."""
        traits = state["profile"]["traits"]
        behaviour = state["behaviour"]
        at = _datetime(at_us)

        def admits(campaign_id: str) -> bool:
            audience = campaigns.by_id[campaign_id].audience
            return audience is None or audience.matches(traits, behaviour, at)

        return admits

    def _behaviour_zone(self, campaigns: CampaignSet) -> ZoneInfo:
        """Return the zone whose calendar days the behaviour counters use: the audiences'."""
        timezone = campaigns.audience_timezone or self.rules.account.timezone
        return self._zone_rules(timezone).zone

    def _zone_rules(self, timezone: str) -> AccountRules:
        rules = self._accounts.get(timezone)
        if rules is None:
            rules = self._accounts[timezone] = AccountRules(timezone, self.rules.account.settings)
        return rules

    def _account(self, campaign: LiveCampaign) -> AccountRules:
        """Return the account rules that the control plane published with the campaign.

        A campaign published without its account's time zone gets the engine's zone, and
        one without the account's delivery settings gets the engine's caps and control group.
        """
        account = campaign.account
        if account is None:
            return self._zone_rules(campaign.timezone or self.rules.account.timezone)
        if campaign.timezone is None:
            return replace(account, timezone=self.rules.account.timezone)
        return account

    def _not_sent(
        self,
        campaign: LiveCampaign | StoppedCampaign,
        state: dict[str, Any],
        send_id: str,
        at: datetime,
        now: datetime,
        decision: Decision,
        source: dict[str, str],
        campaigns: CampaignSet,
        effects: Effects,
    ) -> None:
        assert decision.reason is not None, "a skip carries its reason"
        effects.reasons[(campaign.campaign_id, decision.reason.value)] += 1
        properties = {"reason": decision.reason.value, "detail": decision.detail, **source}
        notification = _notification(
            NOT_SENT_EVENT,
            send_id,
            campaign,
            state,
            _timestamp_text(moment_us(at)),
            self._received_at(now),
            None,
            properties,
        )
        self._emit(notification, state, campaigns, effects)

    def _emit(
        self,
        notification: dict[str, Any],
        state: dict[str, Any],
        campaigns: CampaignSet,
        effects: Effects,
    ) -> None:
        """Write a Notification event, and count it at once for the audiences that read
        them: the copy read back from the topic arrives after the user's next events."""
        effects.events.append(notification)
        if self.reads_notifications(campaigns):
            apply_to_behaviour(
                state["behaviour"],
                notification,
                campaigns.features,
                self._behaviour_zone(campaigns),
                horizon_days=self.rules.horizon_days,
            )

    @property
    def scheduled(self) -> int:
        """The number of entries in the schedule of pending sends, stale ones included."""
        return len(self._due)

    def due_count(self, until_us: int, limit: int) -> int:
        """Count the pending sends due at or before `until_us`, stopping at `limit`.

        The count is an upper bound, because an entry of the schedule may be stale, or
        may find its user's window still open. It serves a caller that chooses where to
        run a step that could decide many sends.
        """
        due = self._due
        count = 0
        # The schedule is a heap, so the entries due by `until_us` form a subtree at its root.
        stack = [0]
        while stack and count < limit:
            index = stack.pop()
            if index < len(due) and due[index][0] <= until_us:
                count += 1
                stack.append(2 * index + 1)
                stack.append(2 * index + 2)
        return count

    def reads_notifications(self, campaigns: CampaignSet) -> bool:
        """Tell whether some live audience counts the engine's own Notification events;
        without one, the engine skips them when they come back on the events topic."""
        if campaigns is not self._campaigns:
            self._campaigns = campaigns
            self._reads_notifications = any(
                feature.event in SELF_TRIGGERING_EVENTS for feature in campaigns.features
            )
        return self._reads_notifications

    def reach_us(self, received_at: str | None, clock_us: int) -> int:
        """Return the latest event time to which an event received at `received_at` may
        move the watermark, by a worker's clock at `clock_us`."""
        # Any producer may write `received_at`, so the worker's clock bounds it too.
        latest_us = clock_us
        if received_at is not None:
            latest_us = min(latest_us, self._received_us(received_at))
        return latest_us + self.rules.max_future_us

    def _received_us(self, received_at: str) -> int:
        # The events of one API request share their `received_at`, so it is parsed once.
        if received_at != self._last_received[0]:
            self._last_received = (received_at, epoch_us(received_at))
        return self._last_received[1]

    def _received_at(self, now: datetime) -> str:
        # One call decides many sends at the same `now`, so it is formatted once.
        if now is not self._now:
            self._now = now
            self._now_text = format_timestamp(now)
        return self._now_text


def run_request_problem(request: Any) -> str | None:
    """Return why a run request cannot be decided, or None when it can.

    The scheduler writes only valid requests, but any producer can write to the topic.
    """
    if not isinstance(request, dict):
        return f"a run request is a JSON object, not {type(request).__name__}"
    for name in ("campaign_id", "run_id", "run_at"):
        if not isinstance(request.get(name), str):
            return f"{name} must be a string"
    try:
        run_at = datetime.fromisoformat(request["run_at"])
    except ValueError:
        return f"run_at {request['run_at'][:40]!r} is not an ISO 8601 time"
    if run_at.tzinfo is None:
        return "run_at has no UTC offset"
    users = request.get("users")
    if not isinstance(users, list) or not all(isinstance(user, str) for user in users):
        return "users must be a list of user keys (strings)"
    return None


def local_run_time(
    campaign: LiveCampaign, run_at: datetime, traits: dict[str, Any], account: AccountRules
) -> datetime | None:
    """Return when a run started at `run_at` sends to one user, or None to skip them.

    With delivery in the account's time zone, that is `run_at`. With delivery in the
    user's zone (trait `Tz`, else the account's), it is the run's local time of day on the
    run's local date in that zone. When that moment has already passed, it is the next
    day's, or None if the campaign drops missed users. Local times that a daylight-saving change skips or
    repeats follow `domain.delivery.clock.local_instant`.
    """
    when = campaign.when
    if getattr(when, "timezone", "account") != "user":
        return run_at
    account_zone = account.zone
    wall = getattr(when, "local_time", None)
    if wall is None:
        scheduled = getattr(when, "at", None) or run_at
        wall = scheduled.astimezone(account_zone).time()
    zone = resolve_zone(_text(traits.get("Tz")), account_zone)
    day = run_at.astimezone(account_zone).date()
    at = local_instant(day, wall, zone)
    if at >= run_at:
        return at
    if campaign.rules.delivery.missed_local_time == "drop":
        return None
    return local_instant(day + timedelta(days=1), wall, zone)


def _remember(ledger: dict[str, int], send_id: str, at_s: int) -> None:
    ledger[send_id] = at_s
    if len(ledger) > _MAX_LEDGER:
        _prune_ledger(ledger, at_s)


def _prune_ledger(ledger: dict[str, int], at_s: int) -> None:
    """Forget the ids decided before the history horizon, then the oldest, down to
    `_KEPT_LEDGER`, so that pruning runs once per thousands of decisions, not on each."""
    oldest_s = at_s - HISTORY_HORIZON_S
    for old in [sid for sid, when in ledger.items() if when < oldest_s]:
        del ledger[old]
    # NOTE: past this many decisions in the horizon, the oldest ids are forgotten.
    _forget_oldest(ledger, _KEPT_LEDGER)


def _forget_oldest(ledger: dict[str, int], keep: int) -> None:
    """Remove all but the `keep` ids decided last."""
    for old in sorted(ledger, key=ledger.__getitem__)[: len(ledger) - keep]:
        del ledger[old]


def _waiting(state: dict[str, Any]) -> int:
    return len(state["triggers"]["pending"]) + len(state["deferred"])


def _crowded() -> Decision:
    detail = f"the user already has {MAX_WAITING} messages waiting"
    return Decision(DeliveryOutcome.SKIP, reason=NotSentReason.TOO_MANY_WAITING, detail=detail)


def fit_state(state: dict[str, Any], max_bytes: int) -> tuple[bytes, list[str]]:
    """Encode a user's state within `max_bytes` if it can be, trimming it in place.

    The oldest send ids of the ledger go first, then the older halves of the send history
    and of the cancelling events' times. Traits and waiting messages are bounded where
    they are added (`domain.profiles.MAX_TRAITS_BYTES`, `MAX_WAITING`), not here.

    Returns:
        The encoded state, which may still be larger than `max_bytes`, and the names of
        the parts trimmed.
    """
    encoded = orjson.dumps(state)
    trimmed: list[str] = []
    for name, trim in _TRIMS:
        while len(encoded) > max_bytes and trim(state):
            if name not in trimmed:
                trimmed.append(name)
            encoded = orjson.dumps(state)
    return encoded, trimmed


def _trim_ledger(state: dict[str, Any]) -> bool:
    ledger = state["ledger"]
    if not ledger:
        return False
    _forget_oldest(ledger, len(ledger) // 2)
    return True


def _trim_history(state: dict[str, Any]) -> bool:
    history = state["history"]
    lists = list(history["channels"].values())
    lists += [sends["recent"] for sends in history["campaigns"].values()]
    return _halve_all(lists)


def _trim_cancels(state: dict[str, Any]) -> bool:
    return _halve_all(list(state["triggers"]["cancels"].values()))


def _halve_all(lists: list[list[int]]) -> bool:
    """Drop the older half of each sorted list of times; False when all were empty."""
    trimmed = False
    for times in lists:
        if times:
            del times[: (len(times) + 1) // 2]
            trimmed = True
    return trimmed


_TRIMS = (
    ("send ids of the ledger", _trim_ledger),
    ("send history", _trim_history),
    ("times of cancelling events", _trim_cancels),
)


def _booked(item: list[Any]) -> bool:
    """Tell whether a deferred item has a place that the throttle booked for it."""
    return len(item) > 4 and bool(item[4])


def _past_end(end_at: datetime) -> Decision:
    detail = f"past the campaign's end at {format_timestamp(end_at)}"
    return Decision(DeliveryOutcome.SKIP, reason=NotSentReason.CAMPAIGN_STOPPED, detail=detail)


def _timestamp_text(at_us: int) -> str:
    """Format microseconds since the epoch as `format_timestamp` does."""
    at_s = at_us // 1_000_000
    second = _SECOND_TEXTS.get(at_s)
    if second is None:
        if len(_SECOND_TEXTS) >= _MAX_SECOND_TEXTS:
            _SECOND_TEXTS.clear()
        second = datetime.fromtimestamp(at_s, UTC).isoformat(timespec="seconds")[:-6]
        _SECOND_TEXTS[at_s] = second
    # Adding a million and dropping its leading 1 pads to six digits, faster than a format.
    return second + "." + str(1_000_000 + at_us % 1_000_000)[1:] + "Z"


def _datetime(at_us: int) -> datetime:
    # Positional arguments, because keywords cost more, and this runs for every decision.
    return _EPOCH + timedelta(0, 0, at_us)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _command(
    send_id: str,
    campaign: LiveCampaign,
    state: dict[str, Any],
    decision: Decision,
    send_at: str,
    source: dict[str, str],
) -> dict[str, Any]:
    profile = state["profile"]
    traits = profile["traits"]
    channel = campaign.rules.channel
    return {
        "send_id": send_id,
        "campaign_id": campaign.campaign_id,
        "campaign_name": campaign.name,
        "channel": channel,
        "labels": list(campaign.labels),
        "variant": decision.variant,
        "user_id": profile["user_id"],
        "anonymous_id": profile["anonymous_id"],
        "send_at": send_at,
        "trigger_id": source.get("trigger_id"),
        "run_id": source.get("run_id"),
        "contact": {
            name: traits[name] for name in CONTACT_TRAITS.get(channel, ()) if name in traits
        },
        "message": decision.message,
    }


def _notification(
    name: str,
    send_id: str,
    campaign: LiveCampaign | StoppedCampaign,
    state: dict[str, Any],
    timestamp: str,
    received_at: str,
    variant: str | None,
    properties: dict[str, Any],
) -> dict[str, Any]:
    profile = state["profile"]
    if campaign.account_id is not None:
        # Segments scope label conditions to an account by this property.
        properties = {**properties, "account_id": campaign.account_id}
    return {
        "message_id": send_id,
        "type": "track",
        "event": name,
        "name": None,
        "user_id": profile["user_id"],
        "anonymous_id": profile["anonymous_id"],
        "group_id": None,
        "previous_id": None,
        "timestamp": timestamp,
        "received_at": received_at,
        "properties": {"send_id": send_id, **properties},
        "traits": {},
        "context": {},
        "campaign_id": campaign.campaign_id,
        "variant": variant,
        "channel": campaign.channel,
        "labels": list(campaign.labels),
    }
