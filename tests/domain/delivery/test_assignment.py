from __future__ import annotations

from collections import Counter

from domain.delivery.assignment import (
    choose_variant,
    in_account_control_group,
    in_control_group,
    point_of,
)
from schemas.campaign_message import MessageVariant, PushMessage, WhatSection

USERS = [f"user-{i}" for i in range(100_000)]


def _what(*weights: int, test_percent: int | None = None) -> WhatSection:
    variants = [
        MessageVariant(name=name, weight=weight, message=PushMessage(title=name, body=name))
        for name, weight in zip("ABC", weights, strict=False)
    ]
    selection = None if test_percent is None else {"test_percent": test_percent, "wait_hours": 2}
    return WhatSection.model_validate({"variants": variants, "winner_selection": selection})


def test_points_are_stable() -> None:
    # Fixed values: BLAKE2b is the same on every platform and Python version, so a
    # change here means users would move between groups.
    assert [point_of(b"control", "campaign-1", f"user-{i}") for i in range(5)] == [
        66, 32, 8, 4, 95,
    ]  # fmt: skip
    assert [point_of(b"variant", "campaign-1", f"user-{i}") for i in range(5)] == [
        17, 1, 59, 18, 97,
    ]  # fmt: skip
    assert point_of(b"control", "ab", "c") != point_of(b"control", "a", "bc")


def test_control_group_ten_percent() -> None:
    # 100,000 users at 10% have a standard deviation of about 95 users; 500 is over
    # five of them.
    members = [user for user in USERS if in_control_group(10, "campaign-1", user)]

    assert abs(len(members) - 10_000) <= 500
    assert len(members) == 10_069
    assert members == [user for user in USERS if in_control_group(10, "campaign-1", user)]


def test_control_group_differs_by_campaign() -> None:
    first = {user for user in USERS[:10_000] if in_control_group(10, "campaign-1", user)}
    second = {user for user in USERS[:10_000] if in_control_group(10, "campaign-2", user)}

    # Independent groups of 10% share about 1% of users.
    assert 50 <= len(first & second) <= 150


def test_account_control_group_same_everywhere() -> None:
    members = [user for user in USERS if in_account_control_group(5, user)]

    assert abs(len(members) - 5_000) <= 350
    assert not in_account_control_group(None, members[0])


def test_no_control_group() -> None:
    assert not any(in_control_group(None, "campaign-1", user) for user in USERS[:1000])


def test_variant_split_50_30_20() -> None:
    what = _what(50, 30, 20)

    split = Counter(choose_variant(what, "campaign-1", user) for user in USERS)

    # Standard deviations are about 158, 145 and 126 users; 800 is over five.
    assert abs(split["A"] - 50_000) <= 800
    assert abs(split["B"] - 30_000) <= 800
    assert abs(split["C"] - 20_000) <= 800
    assert sum(split.values()) == 100_000
    assert split == Counter(choose_variant(what, "campaign-1", user) for user in USERS)


def test_variant_independent_of_control() -> None:
    what = _what(50, 50)
    control = [user for user in USERS if in_control_group(20, "campaign-1", user)]

    split = Counter(choose_variant(what, "campaign-1", user) for user in control)

    assert abs(split["A"] - len(control) / 2) <= 400


def test_winner_selection_test_share() -> None:
    what = _what(50, 50, test_percent=20)

    before = Counter(choose_variant(what, "campaign-1", user) for user in USERS[:10_000])
    after = Counter(choose_variant(what, "campaign-1", user, "B") for user in USERS[:10_000])

    assert abs(before[None] - 8_000) <= 300
    assert before["A"] + before["B"] == 10_000 - before[None]
    assert after["B"] == before["B"] + before[None]
    assert after["A"] == before["A"]
