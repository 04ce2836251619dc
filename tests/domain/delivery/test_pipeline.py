from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from domain.delivery import (
    AccountRules,
    CampaignRules,
    SendCandidate,
    decide,
    new_campaign_counters,
    new_user_history,
    record_decision,
    record_user_send,
)
from domain.delivery.channels import is_reachable, is_unsubscribed
from domain.errors import InvalidValue
from domain.lifecycle import CampaignState
from schemas.campaign_message import EmailMessage, EmailSender, MessageVariant, WhatSection
from schemas.delivery import Decision, DeliveryOutcome, NotSentReason

AT = datetime(2026, 3, 2, 15, tzinfo=UTC)


def _decide(campaign: CampaignRules, account: AccountRules, candidate: SendCandidate) -> Decision:
    return decide(candidate, campaign, account, new_user_history(), new_campaign_counters())


def test_send_renders_variant(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    decision = _decide(make_campaign(), make_account(), make_candidate(AT))

    assert decision.outcome is DeliveryOutcome.SEND
    assert decision.send_at == AT
    assert decision.variant == "A"
    assert decision.message is not None
    assert decision.message["title"] == "Hi Ada"
    assert decision.reason is None


@pytest.mark.parametrize(
    ("traits", "reason"),
    [
        ({"push_token": "t", "MSG-push": False}, NotSentReason.UNSUBSCRIBED),
        ({"push_token": "t", "MSG-push": "False"}, NotSentReason.UNSUBSCRIBED),
        ({"MSG-push": False}, NotSentReason.UNSUBSCRIBED),
        ({}, NotSentReason.NOT_REACHABLE),
        ({"push_token": "  "}, NotSentReason.NOT_REACHABLE),
        ({"push_token": []}, NotSentReason.NOT_REACHABLE),
        ({"push_token": {"a": 1}}, NotSentReason.NOT_REACHABLE),
        ({"push_token": 42}, NotSentReason.NOT_REACHABLE),
        ({"push_token": "t", "MSG-push": True, "MSG-email": False}, None),
    ],
)
def test_channel_checks(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
    traits: dict[str, Any],
    reason: NotSentReason | None,
) -> None:
    candidate = make_candidate(AT, traits=traits | {"Name": "Ada"})

    decision = _decide(make_campaign(), make_account(), candidate)

    assert decision.reason is reason


def test_channel_contact_traits() -> None:
    assert is_reachable({"email": "a@example.com"}, "email")
    assert is_reachable({"Email": "a@example.com"}, "email")
    assert not is_reachable({"phone": "+15550100"}, "email")
    assert is_reachable({"Phone": "+15550100"}, "sms")
    assert is_reachable({"phone": "+15550100"}, "facebook_audience")
    assert not is_reachable({"push_token": "t"}, "web_push")
    assert is_reachable({"web_push_subscription": {"endpoint": "https://push.test"}}, "web_push")
    for channel in ("in_app", "app_inbox", "native_display", "web_popup", "webhook"):
        assert is_reachable({}, channel)
    assert is_unsubscribed({"MSG-sms": "false"}, "sms")
    assert not is_unsubscribed({"MSG-sms": False}, "email")
    assert not is_unsubscribed({"MSG-email": 0}, "email")


@pytest.mark.parametrize(
    "state", [CampaignState.STOPPED, CampaignState.COMPLETED, CampaignState.DRAFT]
)
def test_campaign_not_live(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
    state: CampaignState,
) -> None:
    decision = _decide(make_campaign(state=state), make_account(), make_candidate(AT))

    assert decision.outcome is DeliveryOutcome.SKIP
    assert decision.reason is NotSentReason.CAMPAIGN_STOPPED
    assert decision.detail == f"the campaign is {state.value}"


def test_cut_off_in_delivery_zone(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    account = make_account("America/New_York")
    by_account = make_campaign(cut_off=time(10))
    by_user = make_campaign(cut_off=time(10), calendar="user")
    candidate = make_candidate(AT, timezone="Asia/Tokyo")  # 10:00 New York, 00:00 Tokyo

    assert _decide(by_account, account, candidate).reason is NotSentReason.CUT_OFF
    assert _decide(by_user, account, candidate).sent
    earlier = make_candidate(AT - timedelta(seconds=1))
    assert _decide(by_account, account, earlier).sent


def test_first_objection_wins(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    delivery = {
        "per_user": {"max_sends": 1, "period": "ever"},
        "quiet_hours": {
            "windows": [{"weekdays": ["mon"], "start": "00:00", "end": "23:00"}],
            "action": "defer",
        },
        "control_group_percent": 99,
    }
    campaign = make_campaign(delivery)
    history = record_user_send(new_user_history(), "campaign-1", "push", AT - timedelta(days=1))
    candidate = make_candidate(AT, traits={"MSG-push": False})

    unsubscribed = decide(candidate, campaign, make_account(), history, new_campaign_counters())
    capped = decide(make_candidate(AT), campaign, make_account(), history, new_campaign_counters())
    deferred = _decide(campaign, make_account(), make_candidate(AT))

    assert unsubscribed.reason is NotSentReason.UNSUBSCRIBED
    assert capped.reason is NotSentReason.CAMPAIGN_CAP
    assert deferred.reason is NotSentReason.QUIET_HOURS
    assert deferred.send_at == datetime(2026, 3, 2, 23, tzinfo=UTC)


def test_control_group_not_sent_or_counted(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    campaign = make_campaign({"control_group_percent": 99})
    account = make_account()
    decisions = {}
    for i in range(20):
        candidate = make_candidate(AT, user_id=f"user-{i}")
        decisions[candidate.user_id] = _decide(campaign, account, candidate)
    held_out = [u for u, d in decisions.items() if d.reason is NotSentReason.CONTROL_GROUP]
    candidate = make_candidate(AT, user_id=held_out[0])
    history, counters = new_user_history(), new_campaign_counters()

    decision = decide(candidate, campaign, account, history, counters)
    after = record_decision(decision, candidate, campaign, account, history, counters)

    assert len(held_out) >= 18
    assert decision.outcome is DeliveryOutcome.SKIP
    assert decision.variant is None
    assert after == (history, counters)


def test_account_control_group(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    account = make_account(control_group_percent=5)
    reasons = [
        _decide(make_campaign(), account, make_candidate(AT, user_id=f"user-{i}")).reason
        for i in range(1000)
    ]

    # 5% of 1,000 users has a standard deviation of about 7 users.
    assert 25 <= reasons.count(NotSentReason.ACCOUNT_CONTROL_GROUP) <= 75
    assert set(reasons) == {None, NotSentReason.ACCOUNT_CONTROL_GROUP}


def test_render_failure_skips(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    candidate = make_candidate(AT, traits={"push_token": "t"})

    decision = _decide(make_campaign(), make_account(), candidate)

    assert decision.outcome is DeliveryOutcome.SKIP
    assert decision.reason is NotSentReason.RENDER_FAILED
    assert decision.detail == (
        "cannot render 'Hi {{ profile.Name }}': 'dict object' has no attribute 'Name'; "
        "add the field to the profile or give it a default in `what.defaults`"
    )


def test_render_type_error_skips(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    message = EmailMessage(
        subject="{{ profile.age + 1 }}",
        sender=EmailSender(address="news@example.com"),
        html_body="<p>hi</p>",
        text_body="hi",
    )
    what = WhatSection(variants=[MessageVariant(message=message)])
    campaign = make_campaign(what=what, channel="email")
    candidate = make_candidate(AT, traits={"email": "a@example.com", "age": "ten"})

    decision = _decide(campaign, make_account(), candidate)

    assert decision.reason is NotSentReason.RENDER_FAILED
    assert decision.detail == (
        "cannot render '{{ profile.age + 1 }}': TypeError: can only concatenate str "
        '(not "int") to str'
    )


def test_awaiting_winner_defers(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
    make_what: Callable[..., WhatSection],
) -> None:
    what = make_what((50, 50), winner_selection={"test_percent": 1, "wait_hours": 4})
    waiting = make_campaign(what=what)
    decided = make_campaign(what=what, winner="B")
    candidate = make_candidate(AT, user_id="user-1")

    first = _decide(waiting, make_account(), candidate)
    second = _decide(decided, make_account(), candidate)

    assert first.outcome is DeliveryOutcome.DEFER
    assert first.reason is NotSentReason.AWAITING_WINNER
    assert first.send_at == AT + timedelta(hours=4)
    assert second.sent
    assert second.variant == "B"


def test_unknown_winner_raises(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
    make_what: Callable[..., WhatSection],
) -> None:
    what = make_what((50, 50), winner_selection={"test_percent": 1, "wait_hours": 4})
    campaign = make_campaign(what=what, winner="Z")

    with pytest.raises(InvalidValue) as caught:
        _decide(campaign, make_account(), make_candidate(AT, user_id="user-1"))

    assert caught.value.message == (
        "winner 'Z' is not a variant of campaign 'campaign-1'; set the winner to one of ['A', 'B']"
    )


def test_record_decision_counts_send(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    campaign = make_campaign()
    account = make_account("America/New_York")
    candidate = make_candidate(AT, run_id="run-1")
    history, counters = new_user_history(), new_campaign_counters()

    decision = decide(candidate, campaign, account, history, counters)
    history, counters = record_decision(decision, candidate, campaign, account, history, counters)

    stamp = int(AT.timestamp())
    assert history == {
        "channels": {"push": [stamp]},
        "campaigns": {"campaign-1": {"total": 1, "recent": [stamp]}},
    }
    assert counters == {
        "buckets": {str(stamp // 300): 1},
        "days": {"2026-03-02": 1},
        "runs": {"run-1": 1},
        "overall": 1,
    }


def test_oversized_message_skips(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    # Each field stays under the per-field limit; together they pass the message's.
    payload = {f"field_{n}": "{{ profile.blob }}" for n in range(4)}
    variant = MessageVariant.model_validate(
        {
            "message": {
                "channel": "webhook",
                "url": "https://hooks.example.com/x",
                "payload": payload,
            }
        }
    )
    campaign = make_campaign(what=WhatSection(variants=[variant]), channel="webhook")
    small = make_candidate(AT, traits={"blob": "x"})
    large = make_candidate(AT, traits={"blob": "x" * 80_000})

    assert _decide(campaign, make_account(), small).outcome is DeliveryOutcome.SEND
    decision = _decide(campaign, make_account(), large)
    assert decision.outcome is DeliveryOutcome.SKIP
    assert decision.reason is NotSentReason.RENDER_FAILED
    assert decision.detail is not None
    assert "more than 262144" in decision.detail
