from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.delivery import AccountRules, CampaignRules, SendCandidate, decide
from domain.delivery.quiet_hours import ENDLESS, quiet_until
from domain.delivery.state import new_campaign_counters, new_user_history
from schemas.campaign import QuietHours
from schemas.delivery import Decision, DeliveryOutcome, NotSentReason

NEW_YORK = ZoneInfo("America/New_York")
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
NIGHTS = {"windows": [{"weekdays": EVERY_DAY, "start": "22:00", "end": "08:00"}], "action": "defer"}


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _quiet(*windows: tuple[list[str], str, str], action: str = "defer") -> QuietHours:
    return QuietHours.model_validate(
        {
            "windows": [{"weekdays": w, "start": start, "end": end} for w, start, end in windows],
            "action": action,
        }
    )


def _decide_in_new_york(
    campaign: CampaignRules, account: AccountRules, candidate: SendCandidate
) -> Decision:
    return decide(candidate, campaign, account, new_user_history(), new_campaign_counters())


# Each case: the candidate's UTC time, its New York wall time, the expected UTC send time.
# Spring forward is 2024-03-10 02:00 EST -> 03:00 EDT; fall back is 2024-11-03
# 02:00 EDT -> 01:00 EST. The 22:00-08:00 window lasts 9 hours on the first night and
# 11 hours on the second.
DST_CASES = [
    (_utc(2024, 3, 9, 4, 0), "Fri 23:00 EST", _utc(2024, 3, 9, 13, 0)),
    (_utc(2024, 3, 10, 2, 59), "Sat 21:59 EST", _utc(2024, 3, 10, 2, 59)),
    (_utc(2024, 3, 10, 3, 0), "Sat 22:00 EST", _utc(2024, 3, 10, 12, 0)),
    (_utc(2024, 3, 10, 6, 30), "Sun 01:30 EST", _utc(2024, 3, 10, 12, 0)),
    (_utc(2024, 3, 10, 7, 30), "Sun 03:30 EDT", _utc(2024, 3, 10, 12, 0)),
    (_utc(2024, 3, 10, 11, 59), "Sun 07:59 EDT", _utc(2024, 3, 10, 12, 0)),
    (_utc(2024, 3, 10, 12, 0), "Sun 08:00 EDT", _utc(2024, 3, 10, 12, 0)),
    (_utc(2024, 3, 11, 2, 30), "Sun 22:30 EDT", _utc(2024, 3, 11, 12, 0)),
    (_utc(2024, 11, 2, 3, 0), "Fri 23:00 EDT", _utc(2024, 11, 2, 12, 0)),
    (_utc(2024, 11, 3, 2, 0), "Sat 22:00 EDT", _utc(2024, 11, 3, 13, 0)),
    (_utc(2024, 11, 3, 5, 30), "Sun 01:30 EDT", _utc(2024, 11, 3, 13, 0)),
    (_utc(2024, 11, 3, 6, 30), "Sun 01:30 EST", _utc(2024, 11, 3, 13, 0)),
    (_utc(2024, 11, 3, 12, 59), "Sun 07:59 EST", _utc(2024, 11, 3, 13, 0)),
    (_utc(2024, 11, 3, 13, 0), "Sun 08:00 EST", _utc(2024, 11, 3, 13, 0)),
    (_utc(2024, 11, 4, 3, 0), "Sun 22:00 EST", _utc(2024, 11, 4, 13, 0)),
]


@pytest.mark.parametrize(("at", "wall_time", "send_at"), DST_CASES)
def test_defer_across_dst(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
    at: datetime,
    wall_time: str,
    send_at: datetime,
) -> None:
    campaign = make_campaign({"quiet_hours": NIGHTS})
    account = make_account()
    assert at.astimezone(NEW_YORK).strftime("%a %H:%M %Z") == wall_time

    decision = _decide_in_new_york(
        campaign, account, make_candidate(at, timezone="America/New_York")
    )

    assert decision.send_at == send_at
    if at == send_at:
        assert decision.outcome is DeliveryOutcome.SEND
    else:
        assert decision.outcome is DeliveryOutcome.DEFER
        assert decision.reason is NotSentReason.QUIET_HOURS
        again = make_candidate(send_at, timezone="America/New_York")
        assert _decide_in_new_york(campaign, account, again).sent


def test_drop_action(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    campaign = make_campaign({"quiet_hours": NIGHTS | {"action": "drop"}})
    candidate = make_candidate(_utc(2024, 3, 10, 6, 30), timezone="America/New_York")

    decision = _decide_in_new_york(campaign, make_account(), candidate)

    assert decision.outcome is DeliveryOutcome.SKIP
    assert decision.reason is NotSentReason.QUIET_HOURS
    assert decision.send_at is None


def test_end_in_spring_gap() -> None:
    # 02:30 does not exist on 2024-03-10; the window ends at 03:30 EDT.
    quiet = _quiet((["sun"], "00:00", "02:30"))

    assert quiet_until(quiet, _utc(2024, 3, 10, 6, 0), NEW_YORK) == _utc(2024, 3, 10, 7, 30)


def test_start_in_spring_gap() -> None:
    # 02:30 becomes 03:30 EDT, so 03:15 EDT is before the window.
    quiet = _quiet((["sun"], "02:30", "04:00"))

    assert quiet_until(quiet, _utc(2024, 3, 10, 7, 15), NEW_YORK) is None
    assert quiet_until(quiet, _utc(2024, 3, 10, 7, 45), NEW_YORK) == _utc(2024, 3, 10, 8, 0)


def test_end_in_repeated_hour() -> None:
    # 01:30 occurs twice on 2024-11-03; the window ends at the first, 01:30 EDT.
    quiet = _quiet((["sun"], "00:00", "01:30"))

    assert quiet_until(quiet, _utc(2024, 11, 3, 4, 30), NEW_YORK) == _utc(2024, 11, 3, 5, 30)
    assert quiet_until(quiet, _utc(2024, 11, 3, 6, 10), NEW_YORK) is None


def test_window_belongs_to_start_day() -> None:
    quiet = _quiet((["fri"], "22:00", "08:00"))

    # Friday 2026-03-06 23:00 and Saturday 07:00 are inside; Saturday 23:00 is not.
    assert quiet_until(quiet, _utc(2026, 3, 7, 4, 0), NEW_YORK) == _utc(2026, 3, 7, 13, 0)
    assert quiet_until(quiet, _utc(2026, 3, 7, 12, 0), NEW_YORK) == _utc(2026, 3, 7, 13, 0)
    assert quiet_until(quiet, _utc(2026, 3, 8, 4, 0), NEW_YORK) is None


def test_same_day_window() -> None:
    quiet = _quiet((["mon"], "12:00", "14:00"))

    assert quiet_until(quiet, _utc(2026, 3, 2, 16, 59), NEW_YORK) is None
    assert quiet_until(quiet, _utc(2026, 3, 2, 17, 0), NEW_YORK) == _utc(2026, 3, 2, 19, 0)
    assert quiet_until(quiet, _utc(2026, 3, 2, 19, 0), NEW_YORK) is None


def test_touching_windows_chain() -> None:
    quiet = _quiet((["mon"], "22:00", "08:00"), (["tue"], "08:00", "09:00"))

    assert quiet_until(quiet, _utc(2026, 3, 3, 4, 0), NEW_YORK) == _utc(2026, 3, 3, 14, 0)


def test_whole_week_is_endless(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    always: dict[str, Any] = {
        "windows": [{"weekdays": EVERY_DAY, "start": "00:00", "end": "00:00"}],
        "action": "defer",
    }
    at = _utc(2026, 3, 2, 12)
    assert quiet_until(QuietHours.model_validate(always), at, NEW_YORK) is ENDLESS

    decision = _decide_in_new_york(
        make_campaign({"quiet_hours": always}), make_account(), make_candidate(at)
    )

    assert decision.outcome is DeliveryOutcome.SKIP
    assert decision.reason is NotSentReason.QUIET_HOURS
    assert decision.detail == "quiet hours cover the whole week"


def test_zone_falls_back_to_account(
    make_campaign: Callable[..., CampaignRules],
    make_account: Callable[..., AccountRules],
    make_candidate: Callable[..., SendCandidate],
) -> None:
    campaign = make_campaign({"quiet_hours": NIGHTS})
    at = _utc(2026, 3, 2, 23, 0)  # 23:00 in UTC, 18:00 in New York

    in_utc = _decide_in_new_york(campaign, make_account(), make_candidate(at))
    in_new_york = _decide_in_new_york(
        campaign, make_account("America/New_York"), make_candidate(at)
    )

    assert in_utc.send_at == _utc(2026, 3, 3, 8, 0)
    assert in_new_york.sent


ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago"]
wall_times = st.times().map(lambda t: t.replace(second=0, microsecond=0))
windows = st.builds(
    lambda days, start, end: (days, start.isoformat(), end.isoformat()),
    st.lists(st.sampled_from(EVERY_DAY), min_size=1, max_size=7, unique=True),
    wall_times,
    wall_times,
)


@settings(max_examples=300, deadline=None)
@given(
    chosen=st.lists(windows, min_size=1, max_size=4),
    zone_name=st.sampled_from(ZONES),
    at=st.datetimes(datetime(2024, 1, 1), datetime(2024, 12, 31), timezones=st.just(UTC)),
)
def test_quiet_period_is_contiguous(
    chosen: list[tuple[list[str], str, str]], zone_name: str, at: datetime
) -> None:
    zone = ZoneInfo(zone_name)
    quiet = _quiet(*chosen)

    end = quiet_until(quiet, at, zone)

    if end is None or end is ENDLESS:
        return
    assert end > at
    assert quiet_until(quiet, end, zone) is None
    for step in range(5):
        assert quiet_until(quiet, at + (end - at) * step / 5, zone) is not None
