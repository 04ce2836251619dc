"""`decide`: the delivery controls run in order for one candidate message.

The order is: campaign live → cut-off → unsubscribed → reachable → global frequency cap
→ campaign per-user limit → overall limit already spent → quiet hours → throttle →
campaign limits → account control group → campaign control group → A/B variant → render.
The first control that objects decides; later ones are not consulted. A spent overall
limit is checked before quiet hours and the throttle, because a message that can never
be sent should be reported now rather than deferred first. Nothing here reads a clock or a table: the caller
passes the moment, the user's send history and the campaign's counters, and after a
`send` records it with `record_decision`.

A deferred message is not remembered here. The stream keeps it and calls `decide` again
at `send_at`, where every control runs again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from domain.delivery.assignment import choose_variant, in_account_control_group, in_control_group
from domain.delivery.caps import within_campaign_cap, within_global_cap
from domain.delivery.channels import is_reachable, is_unsubscribed
from domain.delivery.clock import resolve_zone
from domain.delivery.limits import limit_reached
from domain.delivery.quiet_hours import ENDLESS, quiet_until
from domain.delivery.rendering import MessageRenderer, render_variant
from domain.delivery.share import WHOLE, Share
from domain.delivery.state import (
    CampaignCounters,
    UserSendHistory,
    record_campaign_send,
    record_user_send,
)
from domain.delivery.throttle import throttled_until
from domain.errors import InvalidValue
from domain.lifecycle import CampaignState
from schemas.campaign import CampaignDelivery
from schemas.campaign_message import Channel, WhatSection
from schemas.delivery import AccountDeliverySettings, Decision, DeliveryOutcome, NotSentReason

__all__ = ["AccountRules", "CampaignRules", "SendCandidate", "decide", "record_decision"]

# Deferred messages of a recurring campaign come back between runs, so a campaign
# awaiting its next run still sends; stopped and completed campaigns do not.
_SENDING_STATES = frozenset(
    {CampaignState.SCHEDULED, CampaignState.RUNNING, CampaignState.AWAITING_NEXT_RUN}
)
_UTC_ZONE = ZoneInfo("UTC")


@dataclass(slots=True)
class SendCandidate:
    """One message that a trigger or a run would send to one user.

    Attributes:
        user_id: the user's id, which the control group and the variant hash.
        at: when the message would be sent; for a deferred message, its `send_at`.
        traits: the user's profile traits.
        timezone: the user's IANA time zone (profile trait `Tz`); None, or a name that is
            not an IANA zone, means the account's zone.
        run_id: the run of a one-time or recurring campaign; None for a triggered one.
    """

    user_id: str
    at: datetime
    traits: Mapping[str, Any]
    timezone: str | None = None
    run_id: str | None = None

    # Written out so that mypyc compiles it, as `domain.triggers.TriggerFire` explains.
    def __init__(
        self,
        user_id: str,
        at: datetime,
        traits: Mapping[str, Any],
        timezone: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self.user_id = user_id
        self.at = at
        self.traits = traits
        self.timezone = timezone
        self.run_id = run_id


@dataclass(frozen=True, slots=True)
class CampaignRules:
    """Settings of one campaign that `decide` reads, taken from its stored definition.

    Attributes:
        calendar: whose calendar the per-user limit and the cut-off follow, the
            campaign's `when.timezone`.
        cut_off: the local time of day after which the campaign sends nothing more that
            day, in the `calendar` zone.
        winner: the winning variant of an A/B test with winner selection, once known.
    """

    campaign_id: str
    channel: Channel
    state: CampaignState
    delivery: CampaignDelivery
    what: WhatSection
    calendar: Literal["account", "user"] = "account"
    cut_off: time | None = None
    winner: str | None = None


@dataclass(frozen=True, slots=True)
class AccountRules:
    """Settings of the account that `decide` reads.

    Attributes:
        timezone: the account's IANA time zone; a name that is not one reads as UTC.
        account_id: the account whose settings these are, which picks its control group,
            or None for the workers' own settings.
    """

    timezone: str
    settings: AccountDeliverySettings = field(default_factory=AccountDeliverySettings)
    account_id: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return resolve_zone(self.timezone, _UTC_ZONE)


@dataclass(slots=True)
class _Context:
    candidate: SendCandidate
    campaign: CampaignRules
    account: AccountRules
    history: UserSendHistory
    counters: CampaignCounters
    at: datetime
    account_zone: ZoneInfo
    user_zone: ZoneInfo
    share: Share

    def __init__(
        self,
        candidate: SendCandidate,
        campaign: CampaignRules,
        account: AccountRules,
        history: UserSendHistory,
        counters: CampaignCounters,
        at: datetime,
        account_zone: ZoneInfo,
        user_zone: ZoneInfo,
        share: Share,
    ) -> None:
        self.candidate = candidate
        self.campaign = campaign
        self.account = account
        self.history = history
        self.counters = counters
        self.at = at
        self.account_zone = account_zone
        self.user_zone = user_zone
        self.share = share


def decide(
    candidate: SendCandidate,
    campaign: CampaignRules,
    account: AccountRules,
    history: UserSendHistory,
    counters: CampaignCounters,
    render: MessageRenderer = render_variant,
    share: Share = WHOLE,
) -> Decision:
    """Decide whether to send, defer or skip one message, and render it when sending.

    `counters` are the campaign's sends counted where `share` applies its throttle and
    limits: the whole of them by default, a partition's share in the engine.

    Raises:
        InvalidValue: `campaign.winner` names no variant of the campaign.
    """
    account_zone = account.zone
    context = _Context(
        candidate=candidate,
        campaign=campaign,
        account=account,
        history=history,
        counters=counters,
        at=candidate.at.astimezone(UTC),
        account_zone=account_zone,
        user_zone=resolve_zone(candidate.timezone, account_zone),
        share=share,
    )
    # The controls in their order, called one by one: mypyc calls each directly, where a
    # loop over a tuple of functions would go through Python's generic call.
    decision = (
        _check_live(context)
        or _check_cut_off(context)
        or _check_channel(context)
        or _check_caps(context)
        or _check_spent(context)
        or _check_quiet_hours(context)
        or _check_throttle(context)
        or _check_limits(context)
        or _check_control_groups(context)
    )
    if decision is not None:
        return decision
    return _assign_and_render(context, render)


def record_decision(
    decision: Decision,
    candidate: SendCandidate,
    campaign: CampaignRules,
    account: AccountRules,
    history: UserSendHistory,
    counters: CampaignCounters,
) -> tuple[UserSendHistory, CampaignCounters]:
    """Return the history and counters after `decision`; unchanged unless it is a send."""
    if decision.send_at is None or decision.outcome is not DeliveryOutcome.SEND:
        return history, counters
    counts = not campaign.delivery.ignore_global_caps
    history = record_user_send(
        history, campaign.campaign_id, campaign.channel, decision.send_at, counts
    )
    counters = record_campaign_send(counters, decision.send_at, candidate.run_id, account.zone)
    return history, counters


def _check_live(context: _Context) -> Decision | None:
    state = context.campaign.state
    if state in _SENDING_STATES:
        return None
    return _skip(NotSentReason.CAMPAIGN_STOPPED, f"the campaign is {state.value}")


def _check_cut_off(context: _Context) -> Decision | None:
    cut_off = context.campaign.cut_off
    if cut_off is None:
        return None
    zone = context.user_zone if context.campaign.calendar == "user" else context.account_zone
    if context.at.astimezone(zone).time() < cut_off:
        return None
    return _skip(NotSentReason.CUT_OFF, f"past the cut-off time {cut_off.isoformat()}")


def _check_channel(context: _Context) -> Decision | None:
    traits = context.candidate.traits
    channel = context.campaign.channel
    if is_unsubscribed(traits, channel):
        return _skip(NotSentReason.UNSUBSCRIBED)
    if not is_reachable(traits, channel):
        return _skip(NotSentReason.NOT_REACHABLE, f"the profile has no contact for {channel}")
    return None


def _check_caps(context: _Context) -> Decision | None:
    campaign = context.campaign
    delivery = campaign.delivery
    if not delivery.ignore_global_caps:
        cap = context.account.settings.frequency_caps.channels.get(campaign.channel)
        sends = context.history["channels"].get(campaign.channel, [])
        if not within_global_cap(cap, sends, context.at, context.user_zone):
            return _skip(NotSentReason.GLOBAL_CAP)
    if delivery.per_user is not None:
        sends_of_campaign = context.history["campaigns"].get(campaign.campaign_id)
        zone = context.user_zone if campaign.calendar == "user" else context.account_zone
        if not within_campaign_cap(delivery.per_user, sends_of_campaign, context.at, zone):
            return _skip(NotSentReason.CAMPAIGN_CAP)
    return None


def _check_quiet_hours(context: _Context) -> Decision | None:
    quiet = context.campaign.delivery.quiet_hours
    end = quiet_until(quiet, context.at, context.user_zone)
    if end is None or quiet is None:
        return None
    if end is ENDLESS:
        return _skip(NotSentReason.QUIET_HOURS, "quiet hours cover the whole week")
    if quiet.action == "drop":
        return _skip(NotSentReason.QUIET_HOURS)
    return _defer(NotSentReason.QUIET_HOURS, end)


def _check_spent(context: _Context) -> Decision | None:
    overall = context.campaign.delivery.limits.overall
    if overall is not None and context.counters["overall"] >= context.share.of(overall):
        return _skip(NotSentReason.LIMIT_OVERALL)
    return None


def _check_throttle(context: _Context) -> Decision | None:
    throttle = context.campaign.delivery.throttle
    until = throttled_until(throttle, context.counters, context.at, context.share)
    return None if until is None else _defer(NotSentReason.THROTTLED, until)


def _check_limits(context: _Context) -> Decision | None:
    reason = limit_reached(
        context.campaign.delivery.limits,
        context.counters,
        context.at,
        context.candidate.run_id,
        context.account_zone,
        context.share,
    )
    return None if reason is None else _skip(reason)


def _check_control_groups(context: _Context) -> Decision | None:
    user_id = context.candidate.user_id
    account_percent = context.account.settings.control_group_percent
    if in_account_control_group(account_percent, user_id, context.account.account_id):
        return _skip(NotSentReason.ACCOUNT_CONTROL_GROUP)
    campaign = context.campaign
    if in_control_group(campaign.delivery.control_group_percent, campaign.campaign_id, user_id):
        return _skip(NotSentReason.CONTROL_GROUP)
    return None


def _assign_and_render(context: _Context, render: MessageRenderer) -> Decision:
    campaign = context.campaign
    what = campaign.what
    name = choose_variant(what, campaign.campaign_id, context.candidate.user_id, campaign.winner)
    if name is None:
        # The winner is picked `wait_hours` after the test share was sent. Asking again
        # after that long finds it, unless the test started later than this message.
        wait = timedelta(hours=what.winner_selection.wait_hours if what.winner_selection else 0)
        return _defer(NotSentReason.AWAITING_WINNER, context.at + wait)
    variant = next((v for v in what.variants if v.name == name), None)
    if variant is None:
        known = [v.name for v in what.variants]
        raise InvalidValue(
            f"winner {name!r} is not a variant of campaign {campaign.campaign_id!r}; "
            f"set the winner to one of {known}",
            ("winner",),
        )
    try:
        message = render(variant, context.candidate.traits, what.defaults)
    except InvalidValue as error:
        return _skip(NotSentReason.RENDER_FAILED, error.message)
    return Decision(DeliveryOutcome.SEND, send_at=context.at, variant=name, message=message)


def _skip(reason: NotSentReason, detail: str | None = None) -> Decision:
    return Decision(DeliveryOutcome.SKIP, reason=reason, detail=detail)


def _defer(reason: NotSentReason, send_at: datetime) -> Decision:
    return Decision(DeliveryOutcome.DEFER, reason=reason, send_at=send_at)
