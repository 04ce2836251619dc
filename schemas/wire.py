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
from typing import Any

import orjson

from schemas.envelope import format_timestamp

__all__ = ["decode_events", "encode_events", "encode_rejection", "partition_key"]

_MAX_PAYLOAD_TEXT = 16 * 1024


def partition_key(envelope: dict[str, Any]) -> str:
    """Return the key whose hash picks an event's partition: the user id, else the anonymous id."""
    return envelope.get("user_id") or envelope["anonymous_id"]


def encode_events(encoded: Sequence[bytes]) -> bytes:
    """Join already serialised envelopes into one record value (a JSON array)."""
    return b"[" + b",".join(encoded) + b"]"


def decode_events(value: bytes) -> list[dict[str, Any]]:
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
