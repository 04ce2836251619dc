from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from domain.delivery import AccountRules, CampaignRules, SendCandidate, record_user_send
from domain.delivery.caps import within_campaign_cap, within_global_cap
from domain.delivery.clock import epoch_seconds
from domain.delivery.state import CampaignSends, new_user_history
from schemas.campaign import PerUserLimit
from schemas.delivery import ChannelFrequencyCap, Decision, NotSentReason

NEW_YORK = ZoneInfo("America/New_York")
SENT = None
CAPPED = NotSentReason.GLOBAL_CAP

Deliver = Callable[[CampaignRules, AccountRules, list[SendCandidate]], list[Decision]]


def _new_york(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=NEW_YORK)


def _sends(*moments: datetime) -> list[int]:
    return sorted(epoch_seconds(moment) for moment in moments)


def test_global_cap_two_per_local_day(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
    deliver: Deliver,
) -> None:
    account = make_account(frequency_caps={"channels": {"push": {"max_messages": 2, "days": 1}}})
    moments = [
        _new_york(2, 9), _new_york(2, 11), _new_york(2, 13), _new_york(2, 15),
        _new_york(3, 9), _new_york(3, 11), _new_york(3, 13),
        # 20:30 and 21:00 in New York are already 5 March in UTC; the user's calendar
        # keeps them on the 4th, with the 09:00 send.
        _new_york(4, 9), _new_york(4, 20, 30), _new_york(4, 21),
    ]  # fmt: skip
    candidates = [make_candidate(m, timezone="America/New_York") for m in moments]

    decisions = deliver(make_campaign(), account, candidates)

    assert [d.reason for d in decisions] == [
        SENT, SENT, CAPPED, CAPPED,
        SENT, SENT, CAPPED,
        SENT, SENT, CAPPED,
    ]  # fmt: skip
    assert sum(d.sent for d in decisions) == 6


def test_global_cap_falls_back_to_account_zone(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
    deliver: Deliver,
) -> None:
    account = make_account(
        "America/New_York", frequency_caps={"channels": {"push": {"max_messages": 1}}}
    )
    candidates = [
        make_candidate(_new_york(4, 9), timezone="Not/AZone"),
        make_candidate(_new_york(4, 21)),
    ]

    decisions = deliver(make_campaign(), account, candidates)

    assert [d.reason for d in decisions] == [SENT, CAPPED]


def test_global_cap_several_days() -> None:
    cap = ChannelFrequencyCap(max_messages=3, days=3)
    sends = _sends(_new_york(2, 23, 59), _new_york(3, 0, 1), _new_york(4, 12))

    assert not within_global_cap(cap, sends, _new_york(4, 23), NEW_YORK)
    # On the 5th the window starts at midnight of the 3rd, so the send at 23:59 on the
    # 2nd no longer counts.
    assert within_global_cap(cap, sends, _new_york(5, 0, 0), NEW_YORK)


def test_global_cap_window_across_dst() -> None:
    cap = ChannelFrequencyCap(max_messages=1, days=1)
    # 8 March 2026 is 23 hours long in New York; 00:30 EST and 23:30 EDT are one day.
    sends = _sends(_new_york(8, 0, 30))

    assert not within_global_cap(cap, sends, _new_york(8, 23, 30), NEW_YORK)
    assert within_global_cap(cap, sends, _new_york(9, 0, 0), NEW_YORK)


def test_global_cap_counts_later_sends() -> None:
    # A late event is decided after a send later than itself, on the same or a later day.
    one_a_day = ChannelFrequencyCap(max_messages=1, days=1)
    two_in_three_days = ChannelFrequencyCap(max_messages=2, days=3)
    sends = _sends(_new_york(4, 9, 25))
    spread = _sends(_new_york(4, 10), _new_york(6, 10))

    assert not within_global_cap(one_a_day, sends, _new_york(4, 8, 55), NEW_YORK)
    assert within_global_cap(one_a_day, sends, _new_york(3, 23, 59), NEW_YORK)
    # The 3rd to the 5th would contain two sends with this one, and so would the 4th to the
    # 6th. The 1st to the 3rd contains none.
    assert not within_global_cap(two_in_three_days, spread, _new_york(4, 9), NEW_YORK)
    assert within_global_cap(two_in_three_days, spread, _new_york(3, 9), NEW_YORK)
    assert not within_global_cap(two_in_three_days, spread, _new_york(5, 9), NEW_YORK)
    assert within_global_cap(two_in_three_days, spread, _new_york(1, 9), NEW_YORK)


def test_min_gap_both_sides() -> None:
    cap = ChannelFrequencyCap(min_gap=timedelta(hours=4))
    sends = _sends(_new_york(2, 9), _new_york(2, 20))

    assert not within_global_cap(cap, sends, _new_york(2, 12, 59), NEW_YORK)
    assert within_global_cap(cap, sends, _new_york(2, 13), NEW_YORK)
    assert not within_global_cap(cap, sends, _new_york(2, 16, 1), NEW_YORK)
    assert within_global_cap(cap, sends, _new_york(2, 16), NEW_YORK)


def test_min_gap_in_pipeline(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
    deliver: Deliver,
) -> None:
    account = make_account(frequency_caps={"channels": {"push": {"min_gap": "PT4H"}}})
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    candidates = [make_candidate(start + timedelta(hours=hours)) for hours in range(10)]

    decisions = deliver(make_campaign(), account, candidates)

    sent_hours = [hours for hours, d in enumerate(decisions) if d.sent]
    assert sent_hours == [0, 4, 8]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "a frequency cap needs `max_messages`, `min_gap` or both"),
        ({"min_gap": "PT4M"}, "Input should be greater than or equal to 5 minutes"),
        ({"min_gap": "P8D"}, "Input should be less than or equal to 7 days"),
        ({"max_messages": 1, "days": 31}, "Input should be less than or equal to 30"),
    ],
)
def test_cap_settings_invalid(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ChannelFrequencyCap.model_validate(settings)

    assert message in str(caught.value)


def test_other_channel_not_capped(make_account: Callable[..., AccountRules]) -> None:
    account = make_account(frequency_caps={"channels": {"email": {"max_messages": 1}}})
    history = record_user_send(
        new_user_history(), "other", "push", datetime(2026, 3, 2, 8, tzinfo=UTC)
    )
    cap = account.settings.frequency_caps.channels.get("push")

    assert cap is None
    assert within_global_cap(
        cap, history["channels"]["push"], datetime(2026, 3, 2, 9, tzinfo=UTC), NEW_YORK
    )


def test_ignore_global_caps(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
    deliver: Deliver,
) -> None:
    account = make_account(frequency_caps={"channels": {"push": {"max_messages": 1}}})
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    candidates = [make_candidate(start + timedelta(hours=hours)) for hours in range(3)]

    decisions = deliver(make_campaign({"ignore_global_caps": True}), account, candidates)

    assert all(d.sent for d in decisions)


def test_ignoring_campaign_not_counted() -> None:
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    history = record_user_send(new_user_history(), "receipt", "push", at, False)

    assert "push" not in history["channels"]
    assert history["campaigns"]["receipt"] == {"total": 1, "recent": [epoch_seconds(at)]}


def _campaign_sends(*moments: datetime, total: int | None = None) -> CampaignSends:
    recent = _sends(*moments)
    return {"total": len(recent) if total is None else total, "recent": recent}


def _limit(**fields: Any) -> PerUserLimit:
    return PerUserLimit.model_validate(fields)


def test_campaign_cap_rolling() -> None:
    limit = _limit(max_sends=1, period="rolling", window="P1D")
    sends = _campaign_sends(_new_york(2, 10))

    assert not within_campaign_cap(limit, sends, _new_york(3, 9, 59), NEW_YORK)
    assert within_campaign_cap(limit, sends, _new_york(3, 10), NEW_YORK)


def test_campaign_cap_calendar_periods() -> None:
    # 4 March 2026 is a Wednesday.
    sends = _campaign_sends(_new_york(2, 10), _new_york(4, 8))
    day = _limit(max_sends=1, period="calendar_day")
    week = _limit(max_sends=2, period="calendar_week")
    month = _limit(max_sends=2, period="calendar_month")

    assert not within_campaign_cap(day, sends, _new_york(4, 23), NEW_YORK)
    assert within_campaign_cap(day, sends, _new_york(5, 0), NEW_YORK)
    assert not within_campaign_cap(week, sends, _new_york(8, 23), NEW_YORK)
    assert within_campaign_cap(week, sends, _new_york(9, 0), NEW_YORK)
    assert not within_campaign_cap(month, sends, _new_york(31, 23), NEW_YORK)
    assert within_campaign_cap(month, sends, datetime(2026, 4, 1, tzinfo=NEW_YORK), NEW_YORK)


def test_campaign_cap_counts_later_sends() -> None:
    sends = _campaign_sends(_new_york(4, 9, 25))
    day = _limit(max_sends=1, period="calendar_day")
    rolling = _limit(max_sends=1, period="rolling", window="PT1H")
    week = _limit(max_sends=1, period="calendar_week")

    assert not within_campaign_cap(day, sends, _new_york(4, 8, 55), NEW_YORK)
    assert within_campaign_cap(day, sends, _new_york(3, 23, 59), NEW_YORK)
    assert not within_campaign_cap(rolling, sends, _new_york(4, 8, 26), NEW_YORK)
    assert within_campaign_cap(rolling, sends, _new_york(4, 8, 25), NEW_YORK)
    # 2 March 2026 is a Monday, the first day of the 4th's week.
    assert not within_campaign_cap(week, sends, _new_york(2, 0), NEW_YORK)
    assert within_campaign_cap(week, sends, _new_york(1, 23, 59), NEW_YORK)


def test_rolling_cap_checks_every_window() -> None:
    limit = _limit(max_sends=2, period="rolling", window="PT1H")
    sends = _campaign_sends(_new_york(2, 10), _new_york(2, 10, 30), _new_york(2, 12))

    # The hour that ends at 10:30 would hold three sends.
    assert not within_campaign_cap(limit, sends, _new_york(2, 9, 45), NEW_YORK)
    assert within_campaign_cap(limit, sends, _new_york(2, 9, 0), NEW_YORK)
    assert not within_campaign_cap(limit, sends, _new_york(2, 10, 59), NEW_YORK)
    # A window is open at its start, so the hour that ends at 11:00 leaves out 10:00.
    assert within_campaign_cap(limit, sends, _new_york(2, 11), NEW_YORK)


def test_campaign_cap_ever() -> None:
    limit = _limit(max_sends=2, period="ever")
    # Send times older than the history horizon are pruned, but the total remains.
    old = _campaign_sends(total=2)

    assert not within_campaign_cap(limit, old, _new_york(2, 9), NEW_YORK)
    assert within_campaign_cap(limit, _campaign_sends(total=1), _new_york(2, 9), NEW_YORK)


def test_campaign_cap_in_pipeline(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
    deliver: Deliver,
) -> None:
    campaign = make_campaign(
        {"per_user": {"max_sends": 2, "period": "calendar_day"}}, calendar="user"
    )
    moments = [_new_york(2, 9), _new_york(2, 20), _new_york(2, 22), _new_york(3, 9)]
    candidates = [make_candidate(m, timezone="America/New_York") for m in moments]

    decisions = deliver(campaign, make_account(), candidates)

    assert [d.reason for d in decisions] == [SENT, SENT, NotSentReason.CAMPAIGN_CAP, SENT]
