"""How events change a user's profile. Pure: the stream and the tests share it."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["MAX_TRAITS_BYTES", "apply_event", "apply_traits", "list_traits", "new_profile"]

# A profile travels as one Kafka record (the profiles changelog, the engine's state), and
# the broker rejects records past 1 MiB by default. Identify calls each within the event
# size limit could otherwise add traits until no worker can write the profile.
MAX_TRAITS_BYTES = 128 * 1024

# Event types whose traits describe the user; a group call's traits describe the group.
_PROFILE_TYPES = frozenset({"identify"})


def new_profile(envelope: dict[str, Any], partition: int) -> dict[str, Any]:
    """Start the profile of a user from their first event."""
    return {
        "user_id": envelope.get("user_id"),
        "anonymous_id": envelope.get("anonymous_id"),
        "traits": {},
        "first_seen": envelope["timestamp"],
        "last_seen": envelope["timestamp"],
        "traits_updated_at": None,
        "partition": partition,
    }


def apply_event(
    profile: dict[str, Any], envelope: dict[str, Any], rejected: list[str] | None = None
) -> dict[str, Any]:
    """Fold one event into a profile, in place, and return it.

    Traits of an identify call are merged key by key; a trait sent as null is removed,
    so a client can clear a value. A trait update older than the last one applied is
    ignored, so that a late event cannot overwrite newer data. A trait that would take
    the traits past `MAX_TRAITS_BYTES` of JSON is not stored. The value it had before
    stays, and its name is appended to `rejected`.
    """
    timestamp = envelope["timestamp"]
    profile["first_seen"] = min(profile["first_seen"], timestamp)
    profile["last_seen"] = max(profile["last_seen"], timestamp)
    apply_traits(profile, envelope, rejected)
    return profile


def apply_traits(
    profile: dict[str, Any], envelope: dict[str, Any], rejected: list[str] | None = None
) -> bool:
    """Fold one event's identity and traits into a profile, in place.

    The same rules as `apply_event`, without the first and last seen times: the engine
    keeps only what its decisions read, so that most events leave its state unchanged.

    Returns:
        True when the profile changed.
    """
    changed = False
    if envelope.get("anonymous_id") and not profile.get("anonymous_id"):
        profile["anonymous_id"] = envelope["anonymous_id"]
        changed = True
    if envelope["type"] in _PROFILE_TYPES and envelope.get("traits"):
        timestamp = envelope["timestamp"]
        updated_at = profile.get("traits_updated_at")
        if updated_at is None or timestamp >= updated_at:
            _merge_traits(profile["traits"], envelope["traits"], rejected)
            profile["traits_updated_at"] = timestamp
            changed = True
    return changed


def _merge_traits(
    traits: dict[str, Any], update: dict[str, Any], rejected: list[str] | None
) -> None:
    size = len(orjson.dumps(traits))
    if size + len(orjson.dumps(update)) <= MAX_TRAITS_BYTES:
        # Both together bound the merged size, so no trait needs weighing on its own.
        for key, value in update.items():
            if value is None:
                traits.pop(key, None)
            else:
                traits[key] = value
        return
    # Exact sizes: an item is `"key":value`, and all but the first take a comma. Removals
    # go first, so that the order of an update's traits does not decide what fits.
    for key, value in update.items():
        if value is None and key in traits:
            size -= _item_bytes(key, traits[key]) + (len(traits) > 1)
            del traits[key]
    for key, value in update.items():
        if value is None:
            continue
        before = _item_bytes(key, traits[key]) if key in traits else None
        after = _item_bytes(key, value)
        grown = size + after - before if before is not None else size + after + bool(traits)
        if grown > MAX_TRAITS_BYTES and grown > size:
            # A profile stored before the bound was set may lie past it; it may shrink.
            if rejected is not None:
                rejected.append(key)
            continue
        traits[key] = value
        size = grown


def list_traits(names: list[str], limit: int = 10) -> str:
    """Return the first `limit` trait names for a log line, with an ellipsis for more."""
    return ", ".join(names[:limit]) + (" …" if len(names) > limit else "")


def _item_bytes(key: str, value: Any) -> int:
    return len(orjson.dumps({key: value})) - 2
