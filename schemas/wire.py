"""How envelopes travel through Kafka.

A record's value is one envelope as a JSON object, or a micro-batch of envelopes as a JSON
array. All envelopes of a micro-batch belong to users of the record's partition. Faust
charges its overhead per record, so batching many events into one record is what lets a
worker keep up; consumers accept both shapes, so producers that write one event per record
keep working.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from schemas.envelope import ENGINE_EVENT_NAMES, format_timestamp

__all__ = [
    "ENGINE_ORIGIN",
    "JSON_FIELDS",
    "ORIGIN_HEADER",
    "STRING_FIELDS",
    "decode_events",
    "encode_events",
    "encode_rejection",
    "envelope_problem",
    "origin_problem",
    "partition_key",
    "written_by_engine",
]

_MAX_PAYLOAD_TEXT = 16 * 1024
STRING_FIELDS = (
    "message_id", "type", "event", "name", "user_id", "anonymous_id", "group_id",
    "previous_id", "campaign_id", "variant", "channel",
)  # fmt: skip
JSON_FIELDS = ("properties", "traits", "context")
# Marks the events records that the engine writes, which contain only its Notification events.
ORIGIN_HEADER = "herald-origin"
ENGINE_ORIGIN = b"engine"


def partition_key(envelope: dict[str, Any]) -> str:
    """Return the key whose hash picks an event's partition: the user id, else the anonymous id."""
    return envelope.get("user_id") or envelope["anonymous_id"]


def encode_events(encoded: Sequence[bytes]) -> bytes:
    """Join already serialised envelopes into one record value (a JSON array)."""
    return b"[" + b",".join(encoded) + b"]"


def decode_events(value: bytes | None) -> list[dict[str, Any]]:
    """Decode a record value holding one envelope or an array of them.

    Raises:
        ValueError: the value is missing, not JSON, or neither an object nor an array.
    """
    if value is None:
        raise ValueError("record has no value")
    decoded = orjson.loads(value)
    if isinstance(decoded, dict):
        return [decoded]
    if isinstance(decoded, list):
        return decoded
    raise ValueError(f"record value is a JSON {type(decoded).__name__}, not an object or array")


def encode_rejection(
    *,
    source: str,
    reason: str,
    field: str | None,
    index: int | None,
    payload: Any,
    received_at: datetime,
) -> bytes:
    """Serialise a rejected event, with its reason, for the `events.rejected` topic.

    A payload that JSON cannot hold again (nested past orjson's limit) is kept as the
    start of its text form, so the rejection itself never fails.
    """
    record = {
        "source": source,
        "reason": reason,
        "field": field,
        "index": index,
        "received_at": format_timestamp(received_at),
        "payload": payload,
    }
    try:
        return orjson.dumps(record, default=repr)
    except (TypeError, orjson.JSONEncodeError):
        record["payload"] = _payload_text(payload)
        return orjson.dumps(record)


def _payload_text(payload: Any) -> str:
    try:
        return repr(payload)[:_MAX_PAYLOAD_TEXT]
    except RecursionError:
        return f"<{type(payload).__name__} nested too deeply to keep>"


def envelope_problem(envelope: Any) -> str | None:
    """Return why a decoded envelope cannot be processed, or None when it can.

    Herald's API writes only valid envelopes, but any producer can write to the topic.
    Every consumer therefore checks the shape it relies on, rather than crash on a stray
    record.
    """
    if not isinstance(envelope, dict):
        return f"expected an event object, got {type(envelope).__name__}"
    if not (envelope.get("message_id") and envelope.get("type")):
        return "event lacks message_id or type"
    if not (envelope.get("user_id") or envelope.get("anonymous_id")):
        return "event has neither user_id nor anonymous_id"
    for name in STRING_FIELDS:
        value = envelope.get(name)
        if value is not None and not isinstance(value, str):
            return f"{name} is a {type(value).__name__}, not a string"
    for name in JSON_FIELDS:
        value = envelope.get(name)
        if value is not None and not isinstance(value, dict):
            return f"{name} is a {type(value).__name__}, not a JSON object"
    labels = envelope.get("labels")
    if labels is not None and not (
        isinstance(labels, list) and all(isinstance(label, str) for label in labels)
    ):
        return "labels is not a list of strings"
    timestamp = envelope.get("timestamp")
    if not isinstance(timestamp, str) or not _is_utc_timestamp(timestamp):
        return _timestamp_problem("timestamp", timestamp)
    received_at = envelope.get("received_at")
    if not isinstance(received_at, str) or not _is_received_at(received_at):
        return _timestamp_problem("received_at", received_at)
    return None


def written_by_engine(headers: Sequence[tuple[str, bytes]] | None) -> bool:
    """Return whether a record's headers mark it as written by the engine."""
    return any(name == ORIGIN_HEADER and value == ENGINE_ORIGIN for name, value in headers or ())


def origin_problem(envelope: dict[str, Any], from_engine: bool) -> str | None:
    """Return why an event cannot stand in a record of its origin, or None.

    The delivery reports count the engine's Notification events. The API rejects those
    names, but a producer that writes to the topic directly could still add sends that
    never happened. And the engine passes over the records it marks as its own, so an
    ordinary event in such a record would land without the engine seeing it.
    """
    event = envelope.get("event")
    if from_engine:
        if event in ENGINE_EVENT_NAMES:
            return None
        return (
            f"a record with the header {ORIGIN_HEADER}: {ENGINE_ORIGIN.decode()} holds only "
            f"the engine's Notification events, not {envelope.get('type')} event {event!r}"
        )
    if event not in ENGINE_EVENT_NAMES:
        return None
    return (
        f"event {event!r} is written by Herald's engine only, and this record lacks its "
        f"header {ORIGIN_HEADER}: {ENGINE_ORIGIN.decode()}"
    )


def _timestamp_problem(name: str, value: Any) -> str:
    return f"{name} {str(value)[:40]!r} is not a UTC timestamp such as 2024-03-13T10:21:14Z"


def _is_utc_timestamp(value: str) -> bool:
    # The form `format_timestamp` writes, 2024-03-13T10:21:14Z with 0 to 6 digits of fraction.
    # Checking the separators first spares the parse of most malformed values.
    size = len(value)
    if size != 20 and not 22 <= size <= 27:
        return False
    if (
        value[4] != "-"
        or value[7] != "-"
        or value[10] != "T"
        or value[13] != ":"
        or value[16] != ":"
        or value[size - 1] != "Z"
        or (size > 20 and value[19] != ".")
        # `fromisoformat` stops reading at a NUL, so "…14.1Z\x00abcZ" would otherwise pass.
        or "\x00" in value
    ):
        return False
    try:
        datetime.fromisoformat(value)  # also rejects days such as 02-30
    except ValueError:
        return False
    return True


# The events of one API request share their `received_at`, so most lookups hit. Event
# times differ from event to event, and a cache in front of them only costs time.
_is_received_at = lru_cache(maxsize=1024)(_is_utc_timestamp)
