"""The event envelope: one shape for every event Herald stores, whatever API it came in by.

An envelope travels through Kafka as a plain JSON object (see `schemas.wire`) with the keys
of `ENVELOPE_FIELDS`. `Event` documents the same shape for the API and for readers; the hot
path works on dicts so that no per-event model is built after validation.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from herald.config import IngestSettings

__all__ = [
    "ENGINE_EVENT_NAMES",
    "ENVELOPE_FIELDS",
    "RESERVED_EVENT_NAMES",
    "Event",
    "EventLimits",
    "EventType",
    "InvalidEvent",
    "check_identity",
    "check_json_object",
    "check_printable",
    "check_size",
    "format_timestamp",
    "parse_timestamp",
    "reserved_event_name",
]

EventType = Literal["track", "identify", "page", "screen", "group", "alias"]

ENVELOPE_FIELDS: tuple[str, ...] = (
    "message_id",
    "type",
    "event",
    "name",
    "user_id",
    "anonymous_id",
    "group_id",
    "previous_id",
    "timestamp",
    "received_at",
    "properties",
    "traits",
    "context",
    "campaign_id",
    "variant",
    "channel",
    "labels",
)

# The engine writes these for every message it decides, and only it may: the delivery
# reports count them.
ENGINE_EVENT_NAMES = frozenset({"Notification Sent", "Notification Not Sent"})
# Herald records these itself when it sends a message or hears back from a channel. A client
# that sent them would inflate every campaign report.
RESERVED_EVENT_NAMES = ENGINE_EVENT_NAMES | frozenset(
    {
        "Notification Delivered",
        "Notification Viewed",
        "Notification Clicked",
        "Notification Bounced",
    }
)


def _name_key(name: str) -> str:
    # Compatibility forms (a fullwidth N), case, spaces and invisible format characters
    # such as a zero-width space do not make another name.
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(c for c in folded if not c.isspace() and unicodedata.category(c) != "Cf")


_RESERVED_KEYS = {_name_key(name): name for name in RESERVED_EVENT_NAMES}


# Event names repeat from event to event, so most checks are a lookup here.
@lru_cache(maxsize=4096)
def reserved_event_name(name: str) -> str | None:
    """Return the reserved name that `name` spells in any case or spacing, or None."""
    return _RESERVED_KEYS.get(_name_key(name))


# Ids end up in CSV exports, URLs and SQL results, where these characters cut or garble
# them.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")
# Epoch values at or above this are read as milliseconds: as seconds it is the year 5138.
_EPOCH_MS_THRESHOLD = 100_000_000_000
_MAX_ID_CHARS = 255
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


class Event(BaseModel):
    """One stored event. Timestamps are UTC; JSON objects are kept as given."""

    message_id: str = Field(description="Client id of the event; the deduplication key.")
    type: EventType
    event: str | None = Field(default=None, description="Event name of a track call.")
    name: str | None = Field(default=None, description="Page or screen name.")
    user_id: str | None = None
    anonymous_id: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    timestamp: datetime = Field(description="When the event happened, in UTC.")
    received_at: datetime = Field(description="When Herald's API accepted the event, in UTC.")
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    campaign_id: str | None = None
    variant: str | None = None
    channel: str | None = None
    labels: list[str] | None = None


class InvalidEvent(ValueError):
    """An event that fails validation; `field` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EventLimits:
    """The bounds every incoming event is checked against."""

    max_event_bytes: int = 32 * 1024
    max_future_skew_s: float = 24 * 3600
    max_properties: int = 255
    max_key_chars: int = 120
    max_string_chars: int = 8192
    max_nesting_depth: int = 5

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> EventLimits:
        return cls(
            max_event_bytes=settings.max_event_bytes,
            max_future_skew_s=settings.max_future_skew_s,
            max_properties=settings.max_properties,
            max_key_chars=settings.max_key_chars,
            max_string_chars=settings.max_string_chars,
            max_nesting_depth=settings.max_nesting_depth,
        )


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as ISO-8601 in UTC with microseconds and a `Z` suffix."""
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    # isoformat pads the year to four digits, where strftime on Linux does not, and costs
    # half as much. The last six characters it writes are the offset `+00:00`.
    return utc.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_timestamp(
    value: Any, field: str, now: datetime, limits: EventLimits, *, epoch_strings: bool = False
) -> datetime:
    """Read an ISO-8601 string with an offset, or a JSON number of epoch seconds or
    milliseconds, as UTC. A numeric string is read as epoch time only with
    `epoch_strings`, for fields defined as epoch time; elsewhere `"20240313"` would
    silently become a day in 1970.

    Raises:
        InvalidEvent: the value is of another type, unparseable, without a UTC offset,
            before 1970, or later than `now` plus the allowed clock skew.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidEvent(
            field, f"expected an ISO-8601 string or epoch number, got {type(value).__name__}"
        )
    if not isinstance(value, str):
        moment = _parse_epoch(value, field)
    elif epoch_strings and _is_decimal(value):
        moment = _parse_epoch(float(value), field)
    else:
        moment = _parse_text(value, field)
    if moment < _EARLIEST:
        raise InvalidEvent(
            field, f"{format_timestamp(moment)} is before 1970-01-01; check the sender's clock"
        )
    latest = now + timedelta(seconds=limits.max_future_skew_s)
    if moment > latest:
        raise InvalidEvent(
            field,
            f"{format_timestamp(moment)} is more than {limits.max_future_skew_s:g} s in the "
            f"future (received at {format_timestamp(now)}); check the sender's clock",
        )
    return moment


def _parse_text(value: str, field: str) -> datetime:
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidEvent(
            field, f"'{value[:64]}' is not an ISO-8601 timestamp such as 2024-03-13T10:21:14Z"
        ) from None
    if moment.tzinfo is None:
        raise InvalidEvent(
            field, f"'{value[:64]}' has no UTC offset; add 'Z' or an offset such as '+02:00'"
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidEvent(field, f"'{value[:64]}' is out of the range of timestamps") from None


def _is_decimal(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_epoch(value: float, field: str) -> datetime:
    try:
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise InvalidEvent(field, f"{str(value)[:32]} is not a finite epoch time")
    seconds = value / 1000 if abs(value) >= _EPOCH_MS_THRESHOLD else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidEvent(field, f"{value} is out of the range of epoch times") from None


def check_identity(user_id: Any, anonymous_id: Any) -> tuple[str | None, str | None]:
    """Return the identity as strings; at least one of the two ids is required."""
    user = _optional_id(user_id, "user_id")
    anonymous = _optional_id(anonymous_id, "anonymous_id")
    if user is None and anonymous is None:
        raise InvalidEvent("user_id", "missing: every event needs a user_id or an anonymous_id")
    return user, anonymous


def _optional_id(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent(field, f"expected a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        return None
    if len(text) > _MAX_ID_CHARS:
        raise InvalidEvent(field, f"is {len(text)} characters, more than {_MAX_ID_CHARS} allowed")
    check_printable(text, field)
    return text


def check_printable(text: str, field: str) -> None:
    """Reject an id that contains a control character (C0, DEL or C1)."""
    control = _CONTROL_CHARACTER.search(text)
    if control is not None:
        raise InvalidEvent(
            field,
            f"contains the control character U+{ord(control.group()):04X} at position "
            f"{control.start()}; ids must be printable text",
        )


def check_json_object(value: Any, field: str, limits: EventLimits) -> dict[str, Any]:
    """Check that `value` is a JSON object within the key, length and nesting limits."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(field, f"expected a JSON object, got {type(value).__name__}")
    if len(value) > limits.max_properties:
        raise InvalidEvent(
            field, f"has {len(value)} keys, more than the {limits.max_properties} allowed"
        )
    _check_nested(value, field, limits, depth=1)
    return value


def _check_nested(value: Any, path: str, limits: EventLimits, depth: int) -> None:
    if isinstance(value, str):
        if len(value) > limits.max_string_chars:
            raise InvalidEvent(
                path, f"is {len(value)} characters, more than {limits.max_string_chars} allowed"
            )
        return
    if not isinstance(value, (dict, list)):
        return
    if depth > limits.max_nesting_depth:
        raise InvalidEvent(
            path, f"is nested deeper than the {limits.max_nesting_depth} levels allowed"
        )
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_nested(item, f"{path}[{index}]", limits, depth + 1)
        return
    for key, item in value.items():
        if not key or len(key) > limits.max_key_chars:
            raise InvalidEvent(
                f"{path}.{key[:32]}",
                f"key must be 1 to {limits.max_key_chars} characters, got {len(key)}",
            )
        _check_nested(item, f"{path}.{key}", limits, depth + 1)


def check_size(envelope: dict[str, Any], limits: EventLimits) -> bytes:
    """Serialise the envelope and check it against the per-event size limit."""
    encoded = orjson.dumps(envelope)
    if len(encoded) > limits.max_event_bytes:
        raise InvalidEvent(
            "event",
            f"is {len(encoded)} bytes, more than the {limits.max_event_bytes} bytes allowed",
        )
    return encoded
