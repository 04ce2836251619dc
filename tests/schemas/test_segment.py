from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.envelope import ENVELOPE_FIELDS, RESERVED_EVENT_NAMES, EventLimits, InvalidEvent
from schemas.segment import SEGMENT_TYPES, envelope_from_segment

RECEIVED_AT = datetime(2024, 3, 13, 10, 21, 14, 250000, tzinfo=UTC)
RECEIVED_TEXT = "2024-03-13T10:21:14.250000Z"
LIMITS = EventLimits()

# The fields each type needs besides an identity, as a Segment library sends them.
REQUIRED_FIELDS: dict[str, dict[str, Any]] = {
    "track": {"event": "Product Viewed"},
    "identify": {},
    "page": {},
    "screen": {},
    "group": {"groupId": "g-1"},
    "alias": {"previousId": "anon-7"},
}

Message = Callable[..., dict[str, Any]]


@pytest.fixture
def message() -> Message:
    """Return a factory of valid Segment messages; `omit` drops fields, keywords set fields."""

    def make(kind: str = "track", *, omit: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
        built = {
            "type": kind,
            "userId": "u-1",
            "messageId": "m-1",
            "timestamp": "2024-03-13T09:00:00Z",
            **REQUIRED_FIELDS[kind],
        }
        for name in omit:
            built.pop(name)
        return built | fields

    return make


def _convert(message: Any, **options: Any) -> dict[str, Any]:
    return envelope_from_segment(message, RECEIVED_AT, LIMITS, **options)


def _rejection(message: Any, **options: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        _convert(message, **options)
    return caught.value


def test_track(message: Message) -> None:
    envelope = _convert(
        message(
            properties={"sku": "A1", "price": 9.5},
            context={"timezone": "Europe/Berlin"},
        )
    )

    assert envelope == {
        "message_id": "m-1",
        "type": "track",
        "event": "Product Viewed",
        "name": None,
        "user_id": "u-1",
        "anonymous_id": None,
        "group_id": None,
        "previous_id": None,
        "timestamp": "2024-03-13T09:00:00.000000Z",
        "received_at": RECEIVED_TEXT,
        "properties": {"sku": "A1", "price": 9.5},
        "traits": {},
        "context": {"timezone": "Europe/Berlin"},
        "campaign_id": None,
        "variant": None,
        "channel": None,
        "labels": None,
    }


@pytest.mark.parametrize("kind", SEGMENT_TYPES)
def test_envelope_fields(kind: str, message: Message) -> None:
    envelope = _convert(message(kind))

    assert tuple(envelope) == ENVELOPE_FIELDS
    assert envelope["type"] == kind


def test_track_event_stripped(message: Message) -> None:
    assert _convert(message(event="  Product Viewed "))["event"] == "Product Viewed"


@pytest.mark.parametrize("event", [None, "", "   "])
def test_track_event_missing(event: Any, message: Message) -> None:
    error = _rejection(message(event=event))

    assert error.field == "event"
    assert error.reason == "missing or empty"


def test_track_event_absent(message: Message) -> None:
    error = _rejection(message(omit=("event",)))

    assert str(error) == "event: missing or empty"


def test_track_event_wrong_type(message: Message) -> None:
    error = _rejection(message(event=["Product Viewed"]))

    assert error.field == "event"
    assert error.reason == "expected a string, got list"


def test_track_event_too_long(message: Message) -> None:
    assert _convert(message(event="e" * 255))["event"] == "e" * 255

    error = _rejection(message(event="e" * 256))
    assert error.field == "event"
    assert error.reason == "is 256 characters, more than 255 allowed"


@pytest.mark.parametrize("name", sorted(RESERVED_EVENT_NAMES))
def test_track_reserved_name(name: str, message: Message) -> None:
    error = _rejection(message(event=name))

    assert error.field == "event"
    assert error.reason == (
        f"'{name}' is reserved, as '{name}', for the notification events Herald records itself"
    )


def test_track_reserved_name_padded(message: Message) -> None:
    error = _rejection(message(event=" Notification Clicked "))

    assert error.reason == (
        "'Notification Clicked' is reserved, as 'Notification Clicked', for the notification "
        "events Herald records itself"
    )


@pytest.mark.parametrize(
    "name",
    [
        "notification sent",
        "NOTIFICATION SENT",
        "Notification  Sent",
        "Notification\u00a0Sent",
        "Notification\u200bSent",
        "\uff2eotification Sent",
        "NotificationSent",
    ],
)
def test_track_reserved_name_variant(name: str, message: Message) -> None:
    error = _rejection(message(event=name))

    assert error.field == "event"
    assert error.reason == (
        f"'{name}' is reserved, as 'Notification Sent', for the notification events Herald "
        "records itself"
    )


@pytest.mark.parametrize("name", ["Charged", "App Launched", "Notification Opened"])
def test_track_other_names_accepted(name: str, message: Message) -> None:
    assert _convert(message(event=name))["event"] == name


def test_identify(message: Message) -> None:
    envelope = _convert(
        message("identify", traits={"Email": "ada@example.com", "MSG-email": False})
    )

    assert envelope["type"] == "identify"
    assert envelope["traits"] == {"Email": "ada@example.com", "MSG-email": False}
    assert envelope["event"] is None
    assert envelope["name"] is None


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_screen_name(kind: str, message: Message) -> None:
    envelope = _convert(message(kind, name=" Checkout ", properties={"path": "/checkout"}))

    assert envelope["name"] == "Checkout"
    assert envelope["properties"] == {"path": "/checkout"}
    assert envelope["event"] is None


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_screen_name_optional(kind: str, message: Message) -> None:
    assert _convert(message(kind))["name"] is None
    assert _convert(message(kind, name="  "))["name"] is None


def test_page_name_wrong_type(message: Message) -> None:
    error = _rejection(message("page", name=7))

    assert error.field == "name"
    assert error.reason == "expected a string, got int"


def test_group(message: Message) -> None:
    envelope = _convert(message("group", traits={"plan": "team"}))

    assert envelope["group_id"] == "g-1"
    assert envelope["traits"] == {"plan": "team"}


def test_group_snake_case(message: Message) -> None:
    envelope = _convert(message("group", omit=("groupId",), group_id="g-2"))

    assert envelope["group_id"] == "g-2"


@pytest.mark.parametrize("group_id", [None, "", " "])
def test_group_id_missing(group_id: Any, message: Message) -> None:
    error = _rejection(message("group", groupId=group_id))

    assert error.field == "groupId"
    assert error.reason == "missing or empty"


def test_alias(message: Message) -> None:
    envelope = _convert(message("alias"))

    assert envelope["previous_id"] == "anon-7"
    assert envelope["user_id"] == "u-1"


def test_alias_snake_case(message: Message) -> None:
    envelope = _convert(message("alias", omit=("previousId",), previous_id="anon-8"))

    assert envelope["previous_id"] == "anon-8"


def test_alias_previous_id_missing(message: Message) -> None:
    error = _rejection(message("alias", omit=("previousId",)))

    assert error.field == "previousId"
    assert error.reason == "missing or empty"


def test_alias_needs_user_id(message: Message) -> None:
    error = _rejection(message("alias", omit=("userId",), anonymousId="anon-9"))

    assert error.field == "userId"
    assert error.reason == "missing: an alias call needs the new userId"


def test_ids_camel_case(message: Message) -> None:
    envelope = _convert(message(userId="u-2", anonymousId="a-2", messageId="m-2"))

    assert (envelope["user_id"], envelope["anonymous_id"]) == ("u-2", "a-2")
    assert envelope["message_id"] == "m-2"


def test_ids_snake_case(message: Message) -> None:
    envelope = _convert(
        message(omit=("userId", "messageId"), user_id="u-3", anonymous_id="a-3", message_id="m-3")
    )

    assert (envelope["user_id"], envelope["anonymous_id"]) == ("u-3", "a-3")
    assert envelope["message_id"] == "m-3"


def test_ids_camel_case_wins(message: Message) -> None:
    envelope = _convert(message(user_id="u-snake", message_id="m-snake"))

    assert envelope["user_id"] == "u-1"
    assert envelope["message_id"] == "m-1"


def test_ids_null_camel_falls_back(message: Message) -> None:
    envelope = _convert(message(userId=None, user_id="u-snake"))

    assert envelope["user_id"] == "u-snake"


def test_anonymous_only(message: Message) -> None:
    envelope = _convert(message(omit=("userId",), anonymousId="a-1"))

    assert envelope["user_id"] is None
    assert envelope["anonymous_id"] == "a-1"


def test_identity_missing(message: Message) -> None:
    error = _rejection(message(omit=("userId",)))

    assert error.field == "user_id"
    assert error.reason == "missing: every event needs a user_id or an anonymous_id"


def test_identity_int(message: Message) -> None:
    assert _convert(message(userId=1234))["user_id"] == "1234"


@pytest.mark.parametrize(
    ("user_id", "code", "position"),
    [("pv-nul\x00x", "0000", 6), ("a\nb", "000A", 1), ("ne\x85l", "0085", 2)],
)
def test_identity_control_character(
    user_id: str, code: str, position: int, message: Message
) -> None:
    error = _rejection(message(userId=user_id))

    assert error.field == "user_id"
    assert error.reason == (
        f"contains the control character U+{code} at position {position}; ids must be "
        "printable text"
    )


@pytest.mark.parametrize(("kind", "field"), [("alias", "previousId"), ("group", "groupId")])
def test_other_id_control_character(kind: str, field: str, message: Message) -> None:
    error = _rejection(message(kind, **{field: "p\nq"}))

    assert error.field == field
    assert error.reason == (
        "contains the control character U+000A at position 1; ids must be printable text"
    )


def test_not_object() -> None:
    error = _rejection([{"type": "track"}])

    assert error.field == "message"
    assert error.reason == "expected a JSON object, got list"


def test_type_missing(message: Message) -> None:
    error = _rejection(message(omit=("type",)))

    assert error.field == "type"
    assert error.reason == "missing; expected one of track, identify, page, screen, group, alias"


def test_type_unknown(message: Message) -> None:
    error = _rejection(message(type="batch"))

    assert error.field == "type"
    assert error.reason == "'batch' is not one of track, identify, page, screen, group, alias"


def test_type_unknown_quotes_32_chars(message: Message) -> None:
    error = _rejection(message(type="t" * 50))

    assert error.reason == f"'{'t' * 32}' is not one of track, identify, page, screen, group, alias"


def test_default_type(message: Message) -> None:
    envelope = _convert(message(omit=("type",)), default_type="track")

    assert envelope["type"] == "track"
    assert envelope["event"] == "Product Viewed"


def test_default_type_matches(message: Message) -> None:
    assert _convert(message("identify"), default_type="identify")["type"] == "identify"


def test_default_type_mismatch(message: Message) -> None:
    error = _rejection(message("identify"), default_type="track")

    assert error.field == "type"
    assert error.reason == "'identify' sent to the track endpoint"


def test_batch_context_merged(message: Message) -> None:
    batch_context = {"library": {"name": "analytics-python"}, "ip": "203.0.113.9", "locale": "de"}

    envelope = _convert(
        message(context={"locale": "fr-FR", "timezone": "Europe/Paris"}),
        batch_context=batch_context,
    )

    assert envelope["context"] == {
        "library": {"name": "analytics-python"},
        "ip": "203.0.113.9",
        "locale": "fr-FR",
        "timezone": "Europe/Paris",
    }
    assert batch_context["locale"] == "de"


def test_batch_context_alone(message: Message) -> None:
    envelope = _convert(message(), batch_context={"ip": "203.0.113.9"})

    assert envelope["context"] == {"ip": "203.0.113.9"}


def test_batch_context_limits(message: Message) -> None:
    too_deep = {"device": {"a": {"b": {"c": {"d": {"e": 1}}}}}}

    error = _rejection(message(), batch_context=too_deep)

    assert error.field.startswith("context.device")
    assert error.reason == "is nested deeper than the 5 levels allowed"


def test_context_not_object(message: Message) -> None:
    error = _rejection(message(context="web"), batch_context={"ip": "203.0.113.9"})

    assert error.field == "context"
    assert error.reason == "expected a JSON object, got str"


@pytest.mark.parametrize("field", ["properties", "traits", "context"])
def test_json_field_limits(field: str, message: Message) -> None:
    error = _rejection(message(**{field: {"note": "n" * 8193}}))

    assert error.field == f"{field}.note"
    assert error.reason == "is 8193 characters, more than 8192 allowed"


def test_json_fields_null(message: Message) -> None:
    envelope = _convert(message(properties=None, traits=None, context=None))

    assert envelope["properties"] == {}
    assert envelope["traits"] == {}
    assert envelope["context"] == {}


def test_timestamp_missing(message: Message) -> None:
    envelope = _convert(message(omit=("timestamp",)))

    assert envelope["timestamp"] == RECEIVED_TEXT
    assert envelope["received_at"] == RECEIVED_TEXT


def test_timestamp_null(message: Message) -> None:
    assert _convert(message(timestamp=None))["timestamp"] == RECEIVED_TEXT


def test_timestamp_offset_normalised(message: Message) -> None:
    envelope = _convert(message(timestamp="2024-03-13T11:00:00+02:00"))

    assert envelope["timestamp"] == "2024-03-13T09:00:00.000000Z"


def test_timestamp_epoch_ms(message: Message) -> None:
    envelope = _convert(message(timestamp=1710320400000))

    assert envelope["timestamp"] == "2024-03-13T09:00:00.000000Z"


def test_timestamp_naive(message: Message) -> None:
    error = _rejection(message(timestamp="2024-03-13T09:00:00"))

    assert error.field == "timestamp"
    assert error.reason == (
        "'2024-03-13T09:00:00' has no UTC offset; add 'Z' or an offset such as '+02:00'"
    )


def test_timestamp_future(message: Message) -> None:
    error = _rejection(message(timestamp="2024-03-15T10:21:14.25Z"))

    assert error.field == "timestamp"
    assert error.reason == (
        "2024-03-15T10:21:14.250000Z is more than 86400 s in the future "
        "(received at 2024-03-13T10:21:14.250000Z); check the sender's clock"
    )


def test_message_id_kept(message: Message) -> None:
    message_id = "a6bd2f1c-7c2e-4f37-bb0a-62b4d6c0a8f1"

    assert _convert(message(messageId=message_id))["message_id"] == message_id


def test_message_id_int(message: Message) -> None:
    assert _convert(message(messageId=987))["message_id"] == "987"


def test_message_id_generated(message: Message) -> None:
    first = _convert(message(omit=("messageId",)))["message_id"]
    second = _convert(message(omit=("messageId",)))["message_id"]

    assert uuid.UUID(first).version == 4
    assert uuid.UUID(second).version == 4
    assert first != second


def test_message_id_empty_generated(message: Message) -> None:
    message_id = _convert(message(messageId=""))["message_id"]

    assert uuid.UUID(message_id).version == 4


@pytest.mark.parametrize(("value", "type_name"), [(True, "bool"), (1.5, "float"), ({}, "dict")])
def test_message_id_wrong_type(value: Any, type_name: str, message: Message) -> None:
    error = _rejection(message(messageId=value))

    assert error.field == "messageId"
    assert error.reason == f"expected a string, got {type_name}"


def test_message_id_too_long(message: Message) -> None:
    assert _convert(message(messageId="m" * 255))["message_id"] == "m" * 255

    error = _rejection(message(messageId="m" * 256))
    assert error.field == "messageId"
    assert error.reason == "is 256 characters, more than 255 allowed"


def test_notification_fields_ignored(message: Message) -> None:
    envelope = _convert(message(campaign_id="c-1", variant="B", channel="email", labels=["Sale"]))

    assert envelope["campaign_id"] is None
    assert envelope["variant"] is None
    assert envelope["channel"] is None
    assert envelope["labels"] is None


def test_limits_from_argument(message: Message) -> None:
    limits = EventLimits(max_properties=2)

    with pytest.raises(InvalidEvent) as caught:
        envelope_from_segment(message(properties={"a": 1, "b": 2, "c": 3}), RECEIVED_AT, limits)

    assert caught.value.field == "properties"
    assert caught.value.reason == "has 3 keys, more than the 2 allowed"


def test_blank_message_id_replaced(message: Message) -> None:
    envelope = _convert(message(messageId="   "))

    assert envelope["message_id"].strip()
    assert envelope["message_id"] != "   "
