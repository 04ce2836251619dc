from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from domain.delivery import (
    AccountRules,
    CampaignRules,
    SendCandidate,
    decide,
    new_campaign_counters,
    new_user_history,
    overall_limit_reached,
    record_decision,
    too_many_qualified,
)
from schemas.campaign import CampaignLimits
from schemas.delivery import Decision, NotSentReason


def _run(
    campaign: CampaignRules, account: AccountRules, candidates: list[SendCandidate]
) -> tuple[list[Decision], bool]:
    counters = new_campaign_counters()
    decisions = []
    for candidate in candidates:
        history = new_user_history()
        decision = decide(candidate, campaign, account, history, counters)
        _, counters = record_decision(decision, candidate, campaign, account, history, counters)
        decisions.append(decision)
    return decisions, overall_limit_reached(campaign.delivery.limits, counters)


def test_limits_per_run_day_overall(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    campaign = make_campaign({"limits": {"per_run": 3, "per_day": 5, "overall": 7}})
    account = make_account("America/New_York")
    day_one = datetime(2026, 3, 2, 15, tzinfo=UTC)  # 10:00 in New York
    late_day_one = datetime(2026, 3, 3, 4, 30, tzinfo=UTC)  # 23:30 on the 2nd in New York
    day_two = datetime(2026, 3, 3, 5, 30, tzinfo=UTC)  # 00:30 on the 3rd in New York
    plan = [
        ("run-1", day_one, 5),
        ("run-2", day_one + timedelta(hours=1), 5),
        ("run-3", late_day_one, 1),
        ("run-3", day_two, 5),
    ]
    candidates = [
        make_candidate(at + timedelta(seconds=i), user_id=f"{run}-{i}", run_id=run)
        for run, at, count in plan
        for i in range(count)
    ]

    decisions, completed = _run(campaign, account, candidates)

    per_run, per_day, overall = (
        NotSentReason.LIMIT_PER_RUN,
        NotSentReason.LIMIT_PER_DAY,
        NotSentReason.LIMIT_OVERALL,
    )
    assert [d.reason for d in decisions] == [
        None, None, None, per_run, per_run,  # run-1
        None, None, per_day, per_day, per_day,  # run-2, same day
        per_day,  # run-3 at 23:30, still the same day in New York
        None, None, overall, overall, overall,  # run-3 after midnight
    ]  # fmt: skip
    assert Counter(d.reason for d in decisions) == {
        None: 7,
        NotSentReason.LIMIT_PER_RUN: 2,
        NotSentReason.LIMIT_PER_DAY: 4,
        NotSentReason.LIMIT_OVERALL: 3,
    }
    assert completed


def test_triggered_campaign_has_no_run_limit(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    campaign = make_campaign({"limits": {"per_run": 1, "overall": 4}})
    at = datetime(2026, 3, 2, 15, tzinfo=UTC)
    candidates = [make_candidate(at, user_id=f"user-{i}") for i in range(6)]

    decisions, completed = _run(campaign, make_account(), candidates)

    assert sum(d.sent for d in decisions) == 4
    assert [d.reason for d in decisions[4:]] == [NotSentReason.LIMIT_OVERALL] * 2
    assert completed


def test_no_limits_never_complete(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    at = datetime(2026, 3, 2, 15, tzinfo=UTC)
    candidates = [make_candidate(at, user_id=f"user-{i}") for i in range(50)]

    decisions, completed = _run(make_campaign(), make_account(), candidates)

    assert all(d.sent for d in decisions)
    assert not completed


def test_too_many_qualified() -> None:
    limits = CampaignLimits(max_qualified_users=1000)

    assert not too_many_qualified(limits, 1000)
    assert too_many_qualified(limits, 1001)
    assert not too_many_qualified(CampaignLimits(), 10**9)
