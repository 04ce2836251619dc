"""Profiles folded from events: trait merging and the bound on a profile's traits."""

from __future__ import annotations

from typing import Any

import orjson

from domain.profiles import MAX_TRAITS_BYTES, apply_event, new_profile


def _identify(timestamp: str, **traits: Any) -> dict[str, Any]:
    return {
        "message_id": f"m-{timestamp}",
        "type": "identify",
        "user_id": "u1",
        "anonymous_id": None,
        "timestamp": timestamp,
        "traits": traits,
    }


def _filled(size: int) -> dict[str, Any]:
    """A profile whose traits are exactly `size` bytes of JSON: one trait `pad`."""
    first = _identify("2024-03-13T10:00:00Z")
    profile = new_profile(first, 0)
    # {"pad":"…"} is 10 bytes around the value.
    apply_event(profile, _identify("2024-03-13T10:00:00Z", pad="x" * (size - 10)))
    assert len(orjson.dumps(profile["traits"])) == size
    return profile


def test_traits_merge_and_null_removes() -> None:
    profile = new_profile(_identify("2024-03-13T10:00:00Z"), 0)
    apply_event(profile, _identify("2024-03-13T10:00:00Z", plan="pro", city="Lima"))
    apply_event(profile, _identify("2024-03-13T10:01:00Z", city=None, seats=3))
    assert profile["traits"] == {"plan": "pro", "seats": 3}


def test_late_trait_update_is_ignored() -> None:
    profile = new_profile(_identify("2024-03-13T10:00:00Z"), 0)
    apply_event(profile, _identify("2024-03-13T10:05:00Z", plan="pro"))
    apply_event(profile, _identify("2024-03-13T10:01:00Z", plan="free"))
    assert profile["traits"] == {"plan": "pro"}


def test_trait_filling_bound_kept() -> None:
    profile = _filled(MAX_TRAITS_BYTES - len(',"a":1'))
    rejected: list[str] = []
    apply_event(profile, _identify("2024-03-13T10:01:00Z", a=1), rejected)
    assert rejected == []
    assert profile["traits"]["a"] == 1
    assert len(orjson.dumps(profile["traits"])) == MAX_TRAITS_BYTES


def test_trait_past_bound_keeps_old_value() -> None:
    profile = _filled(MAX_TRAITS_BYTES - len(',"a":1'))
    apply_event(profile, _identify("2024-03-13T10:01:00Z", a=1))
    rejected: list[str] = []
    update = _identify("2024-03-13T10:02:00Z", a=12, b=None, c="small")
    apply_event(profile, update, rejected)
    assert rejected == ["a", "c"]
    assert profile["traits"]["a"] == 1
    assert "c" not in profile["traits"]
    # The update still counts as applied, so an older one cannot follow it.
    assert profile["traits_updated_at"] == "2024-03-13T10:02:00Z"


def test_removed_trait_frees_room() -> None:
    profile = _filled(MAX_TRAITS_BYTES)
    rejected: list[str] = []
    update = _identify("2024-03-13T10:01:00Z", pad=None, plan="pro")
    apply_event(profile, update, rejected)
    assert rejected == []
    assert profile["traits"] == {"plan": "pro"}


def test_many_identify_calls_stay_bounded() -> None:
    profile = new_profile(_identify("2024-03-13T10:00:00Z"), 0)
    rejected: list[str] = []
    for n in range(40):
        at = f"2024-03-13T10:{n:02d}:00Z"
        apply_event(profile, _identify(at, **{f"t{n}": "x" * 30_000}), rejected)
    assert len(orjson.dumps(profile["traits"])) <= MAX_TRAITS_BYTES
    assert rejected == [f"t{n}" for n in range(4, 40)]


def test_oversized_profile_shrinks_not_grows() -> None:
    profile = new_profile(_identify("2024-03-13T10:00:00Z"), 0)
    profile["traits"] = {"pad": "x" * MAX_TRAITS_BYTES}
    rejected: list[str] = []
    update = _identify("2024-03-13T10:01:00Z", pad="x" * 100, plan="pro")
    apply_event(profile, update, rejected)
    assert rejected == []
    assert profile["traits"] == {"pad": "x" * 100, "plan": "pro"}

    profile["traits"] = {"pad": "x" * MAX_TRAITS_BYTES}
    apply_event(profile, _identify("2024-03-13T10:02:00Z", plan="pro"), rejected)
    assert rejected == ["plan"]


def test_removal_first_whatever_trait_order() -> None:
    for order in ("removal last", "removal first"):
        profile = _filled(MAX_TRAITS_BYTES)
        rejected: list[str] = []
        items = [("plan", "pro"), ("pad", None)]
        if order == "removal first":
            items.reverse()
        apply_event(profile, _identify("2024-03-13T10:01:00Z", **dict(items)), rejected)
        assert rejected == []
        assert profile["traits"] == {"plan": "pro"}
