"""CleverTap upload records (`{"d": [...]}`) as Herald envelopes.

A record names its user by exactly one identity key, carries `ts` in epoch seconds and is
of type `event` (a track call), `profile` (an identify call) or `token` (an identify call
that stores a push token). CleverTap uploads carry no message id, so one is derived from
the upload's content and the record's position: retrying the same upload yields the same
ids, and Herald's deduplication counts it once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from schemas.envelope import (
    EventLimits,
    InvalidEvent,
    check_identity,
    check_json_object,
    format_timestamp,
    parse_timestamp,
    reserved_event_name,
)

__all__ = ["IDENTITY_KEYS", "RECORD_TYPES", "envelope_from_clevertap", "upload_digest"]

IDENTITY_KEYS = ("identity", "objectId", "FBID", "GPID")
RECORD_TYPES = ("event", "profile", "token")
_MAX_EVENT_NAME_CHARS = 512


def upload_digest(body: bytes) -> str:
    """Hash an upload's raw body; the base of its records' message ids."""
    return hashlib.sha256(body).hexdigest()[:24]


def envelope_from_clevertap(
    record: Any, index: int, digest: str, received_at: datetime, limits: EventLimits
) -> dict[str, Any]:
    """Validate one upload record and return its envelope.

    Raises:
        InvalidEvent: with the offending field and the reason.
    """
    if not isinstance(record, dict):
        raise InvalidEvent("record", f"expected a JSON object, got {type(record).__name__}")
    identity_key, identity = _identity(record)
    try:
        user_id, anonymous_id = (
            check_identity(None, identity)
            if identity_key == "objectId"
            else check_identity(identity, None)
        )
    except InvalidEvent as error:
        raise InvalidEvent(identity_key, error.reason) from None
    kind = record.get("type")
    if kind is None:
        raise InvalidEvent("type", f"missing; expected one of {', '.join(RECORD_TYPES)}")
    if kind not in RECORD_TYPES:
        raise InvalidEvent("type", f"'{str(kind)[:32]}' is not one of {', '.join(RECORD_TYPES)}")
    if "ts" not in record:
        raise InvalidEvent("ts", "missing: the time of the record in epoch seconds")
    moment = parse_timestamp(record["ts"], "ts", received_at, limits, epoch_strings=True)
    envelope: dict[str, Any] = {
        "message_id": f"ct-{digest}-{index}",
        "type": "track" if kind == "event" else "identify",
        "event": None,
        "name": None,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "group_id": None,
        "previous_id": None,
        "timestamp": format_timestamp(moment),
        "received_at": format_timestamp(received_at),
        "properties": {},
        "traits": {},
        "context": {"library": {"name": "clevertap-upload"}, "identity_key": identity_key},
        "campaign_id": None,
        "variant": None,
        "channel": None,
        "labels": None,
    }
    _fill_record_fields(envelope, kind, record, limits)
    return envelope


def _identity(record: dict[str, Any]) -> tuple[str, Any]:
    present = [key for key in IDENTITY_KEYS if record.get(key) not in (None, "")]
    if not present:
        raise InvalidEvent("identity", f"missing: give one of {', '.join(IDENTITY_KEYS)}")
    if len(present) > 1:
        raise InvalidEvent(present[1], f"a record takes one identity key, got {', '.join(present)}")
    return present[0], record[present[0]]


def _fill_record_fields(
    envelope: dict[str, Any], kind: str, record: dict[str, Any], limits: EventLimits
) -> None:
    if kind == "event":
        envelope["event"] = _event_name(record.get("evtName"))
        envelope["properties"] = check_json_object(record.get("evtData"), "evtData", limits)
    elif kind == "profile":
        envelope["traits"] = check_json_object(record.get("profileData"), "profileData", limits)
    else:
        token = check_json_object(record.get("tokenData"), "tokenData", limits)
        if not token.get("id"):
            raise InvalidEvent("tokenData.id", "missing: the push token")
        envelope["traits"] = {"push_token": token["id"], "push_token_type": token.get("type")}


def _event_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent("evtName", "missing or empty: an event record needs its name")
    name = value.strip()
    if len(name) > _MAX_EVENT_NAME_CHARS:
        raise InvalidEvent(
            "evtName", f"is {len(name)} characters, more than {_MAX_EVENT_NAME_CHARS} allowed"
        )
    reserved = reserved_event_name(name)
    if reserved is not None:
        raise InvalidEvent(
            "evtName",
            f"'{name}' is reserved, as '{reserved}', for the notification events Herald "
            "records itself",
        )
    return name
