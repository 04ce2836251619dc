"""Segment-spec messages (track, identify, page, screen, group, alias) as Herald envelopes.

Field names follow the Segment HTTP API (`userId`, `anonymousId`, `messageId`…); the
snake_case spellings are accepted too, so that server-side senders can use either.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from schemas.envelope import (
    EventLimits,
    InvalidEvent,
    check_identity,
    check_json_object,
    check_printable,
    format_timestamp,
    parse_timestamp,
    reserved_event_name,
)

__all__ = ["SEGMENT_TYPES", "envelope_from_segment"]

SEGMENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")
_MAX_NAME_CHARS = 255


def envelope_from_segment(
    message: Any,
    received_at: datetime,
    limits: EventLimits,
    *,
    default_type: str | None = None,
    batch_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate one Segment message and return its envelope.

    Args:
        message: the decoded JSON of one message.
        received_at: when the API took the request.
        limits: bounds to check.
        default_type: the type implied by the endpoint (`/v1/track` implies track).
        batch_context: a batch's top-level context; the message's own keys win.

    Raises:
        InvalidEvent: with the offending field and the reason.
    """
    if not isinstance(message, dict):
        raise InvalidEvent("message", f"expected a JSON object, got {type(message).__name__}")
    kind = _message_type(message, default_type)
    user_id, anonymous_id = check_identity(
        _pick(message, "userId", "user_id"), _pick(message, "anonymousId", "anonymous_id")
    )
    raw_time = message.get("timestamp")
    moment = (
        received_at
        if raw_time is None
        else parse_timestamp(raw_time, "timestamp", received_at, limits)
    )
    context = check_json_object(message.get("context"), "context", limits)
    if batch_context:
        # The batch's context reaches every message, so it meets the same limits.
        context = check_json_object({**batch_context, **context}, "context", limits)
    envelope: dict[str, Any] = {
        "message_id": _message_id(_pick(message, "messageId", "message_id")),
        "type": kind,
        "event": None,
        "name": None,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "group_id": None,
        "previous_id": None,
        "timestamp": format_timestamp(moment),
        "received_at": format_timestamp(received_at),
        "properties": check_json_object(message.get("properties"), "properties", limits),
        "traits": check_json_object(message.get("traits"), "traits", limits),
        "context": context,
        "campaign_id": None,
        "variant": None,
        "channel": None,
        "labels": None,
    }
    _fill_type_fields(envelope, kind, message)
    return envelope


def _message_type(message: dict[str, Any], default_type: str | None) -> str:
    kind = message.get("type", default_type)
    if kind is None:
        raise InvalidEvent("type", f"missing; expected one of {', '.join(SEGMENT_TYPES)}")
    if kind not in SEGMENT_TYPES:
        raise InvalidEvent("type", f"'{str(kind)[:32]}' is not one of {', '.join(SEGMENT_TYPES)}")
    if default_type is not None and kind != default_type:
        raise InvalidEvent("type", f"'{kind}' sent to the {default_type} endpoint")
    return kind


def _fill_type_fields(envelope: dict[str, Any], kind: str, message: dict[str, Any]) -> None:
    if kind == "track":
        envelope["event"] = _event_name(message.get("event"))
    elif kind in ("page", "screen"):
        envelope["name"] = _optional_name(message.get("name"), "name")
    elif kind == "group":
        envelope["group_id"] = _required_id(_pick(message, "groupId", "group_id"), "groupId")
    elif kind == "alias":
        envelope["previous_id"] = _required_id(
            _pick(message, "previousId", "previous_id"), "previousId"
        )
        if envelope["user_id"] is None:
            raise InvalidEvent("userId", "missing: an alias call needs the new userId")


def _event_name(value: Any) -> str:
    name = _required_name(value, "event")
    reserved = reserved_event_name(name)
    if reserved is not None:
        raise InvalidEvent(
            "event",
            f"'{name}' is reserved, as '{reserved}', for the notification events Herald "
            "records itself",
        )
    return name


def _required_id(value: Any, field: str) -> str:
    name = _required_name(value, field)
    check_printable(name, field)
    return name


def _required_name(value: Any, field: str) -> str:
    name = _optional_name(value, field)
    if name is None:
        raise InvalidEvent(field, "missing or empty")
    return name


def _optional_name(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(field, f"expected a string, got {type(value).__name__}")
    name = value.strip()
    if len(name) > _MAX_NAME_CHARS:
        raise InvalidEvent(field, f"is {len(name)} characters, more than {_MAX_NAME_CHARS} allowed")
    return name or None


def _message_id(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        # Without a client id a retried request cannot be recognised; Segment's libraries
        # always send one, so this only affects hand-written senders.
        return str(uuid.uuid4())
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent("messageId", f"expected a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > _MAX_NAME_CHARS:
        raise InvalidEvent(
            "messageId", f"is {len(text)} characters, more than {_MAX_NAME_CHARS} allowed"
        )
    return text


def _pick(message: dict[str, Any], camel: str, snake: str) -> Any:
    value = message.get(camel)
    return message.get(snake) if value is None else value
