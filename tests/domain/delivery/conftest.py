"""Factories for the delivery tests: a push campaign, an account and a reachable user."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
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
)
from domain.lifecycle import CampaignState
from schemas.campaign import CampaignDelivery
from schemas.campaign_message import MessageVariant, PushMessage, WhatSection
from schemas.delivery import AccountDeliverySettings, Decision

PUSH_TRAITS = {"push_token": "token-1", "Name": "Ada"}


def _push_what(weights: tuple[int, ...] = (100,), **what: Any) -> WhatSection:
    variants = [
        MessageVariant(
            name="ABC"[index],
            weight=weight,
            message=PushMessage(title="Hi {{ profile.Name }}", body=f"variant {'ABC'[index]}"),
        )
        for index, weight in enumerate(weights)
    ]
    return WhatSection(variants=variants, **what)


@pytest.fixture
def make_what() -> Callable[..., WhatSection]:
    """Return a factory of push messages with variants A, B, C of the given weights."""
    return _push_what


@pytest.fixture
def make_campaign() -> Callable[..., CampaignRules]:
    def make(
        delivery: dict[str, Any] | None = None,
        what: WhatSection | None = None,
        **rules: Any,
    ) -> CampaignRules:
        fields: dict[str, Any] = {
            "campaign_id": "campaign-1",
            "channel": "push",
            "state": CampaignState.RUNNING,
            "delivery": CampaignDelivery.model_validate(delivery or {}),
            "what": what or _push_what(),
        }
        return CampaignRules(**(fields | rules))

    return make


@pytest.fixture
def make_account() -> Callable[..., AccountRules]:
    def make(timezone: str = "UTC", **settings: Any) -> AccountRules:
        return AccountRules(timezone, AccountDeliverySettings.model_validate(settings))

    return make


@pytest.fixture
def make_candidate() -> Callable[..., SendCandidate]:
    def make(at: datetime, user_id: str = "user-1", **fields: Any) -> SendCandidate:
        traits = fields.pop("traits", PUSH_TRAITS)
        return SendCandidate(user_id=user_id, at=at, traits=traits, **fields)

    return make


@pytest.fixture
def deliver() -> Callable[..., list[Decision]]:
    """Return a function that decides candidates in order, recording every send."""

    def run(
        campaign: CampaignRules, account: AccountRules, candidates: list[SendCandidate]
    ) -> list[Decision]:
        history, counters = new_user_history(), new_campaign_counters()
        decisions = []
        for candidate in candidates:
            decision = decide(candidate, campaign, account, history, counters)
            history, counters = record_decision(
                decision, candidate, campaign, account, history, counters
            )
            decisions.append(decision)
        return decisions

    return run
