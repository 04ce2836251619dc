from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas.clevertap import IDENTITY_KEYS, envelope_from_clevertap, upload_digest
from schemas.envelope import ENVELOPE_FIELDS, EventLimits, InvalidEvent

RECEIVED_AT = datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)
LIMITS = EventLimits()
DIGEST = "0123456789abcdef01234567"
TS = 1710320400  # 2024-03-13T09:00:00Z

# The fields each record type needs besides its identity and time.
REQUIRED_FIELDS: dict[str, dict[str, Any]] = {
    "event": {"evtName": "Charged", "evtData": {"Amount": 300, "Currency": "EUR"}},
    "profile": {"profileData": {"Name": "Ada", "MSG-email": False}},
    "token": {"tokenData": {"id": "fcm-token-1", "type": "fcm"}},
}

Record = Callable[..., dict[str, Any]]


@pytest.fixture
def record() -> Record:
    """Return a factory of valid upload records; `omit` drops fields, keywords set fields."""

    def make(kind: str = "event", *, omit: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
        built = {"identity": "u-1", "ts": TS, "type": kind, **REQUIRED_FIELDS[kind]}
        for name in omit:
            built.pop(name)
        return built | fields

    return make


def _convert(record: Any, index: int = 0, digest: str = DIGEST) -> dict[str, Any]:
    return envelope_from_clevertap(record, index, digest, RECEIVED_AT, LIMITS)


def _rejection(record: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        _convert(record)
    return caught.value


def test_event_record(record: Record) -> None:
    envelope = _convert(record(), index=3)

    assert envelope == {
        "message_id": f"ct-{DIGEST}-3",
        "type": "track",
        "event": "Charged",
        "name": None,
        "user_id": "u-1",
        "anonymous_id": None,
        "group_id": None,
        "previous_id": None,
        "timestamp": "2024-03-13T09:00:00.000000Z",
        "received_at": "2024-03-13T10:21:14.000000Z",
        "properties": {"Amount": 300, "Currency": "EUR"},
        "traits": {},
        "context": {"library": {"name": "clevertap-upload"}, "identity_key": "identity"},
        "campaign_id": None,
        "variant": None,
        "channel": None,
        "labels": None,
    }


def test_profile_record(record: Record) -> None:
    envelope = _convert(record("profile"))

    assert tuple(envelope) == ENVELOPE_FIELDS
    assert envelope["type"] == "identify"
    assert envelope["event"] is None
    assert envelope["traits"] == {"Name": "Ada", "MSG-email": False}
    assert envelope["properties"] == {}


def test_profile_without_data(record: Record) -> None:
    assert _convert(record("profile", omit=("profileData",)))["traits"] == {}


def test_token_record(record: Record) -> None:
    envelope = _convert(record("token"))

    assert envelope["type"] == "identify"
    assert envelope["traits"] == {"push_token": "fcm-token-1", "push_token_type": "fcm"}


def test_token_without_type(record: Record) -> None:
    envelope = _convert(record("token", tokenData={"id": "apns-1"}))

    assert envelope["traits"] == {"push_token": "apns-1", "push_token_type": None}


@pytest.mark.parametrize("token", [None, {}, {"id": ""}, {"type": "fcm"}])
def test_token_id_missing(token: Any, record: Record) -> None:
    error = _rejection(record("token", tokenData=token))

    assert error.field == "tokenData.id"
    assert error.reason == "missing: the push token"


def test_token_data_not_object(record: Record) -> None:
    error = _rejection(record("token", tokenData="fcm-token-1"))

    assert error.field == "tokenData"
    assert error.reason == "expected a JSON object, got str"


@pytest.mark.parametrize(
    ("key", "user_id", "anonymous_id"),
    [
        ("identity", "who-1", None),
        ("objectId", None, "who-1"),
        ("FBID", "who-1", None),
        ("GPID", "who-1", None),
    ],
)
def test_identity_keys(key: str, user_id: Any, anonymous_id: Any, record: Record) -> None:
    envelope = _convert(record(omit=("identity",), **{key: "who-1"}))

    assert envelope["user_id"] == user_id
    assert envelope["anonymous_id"] == anonymous_id
    assert envelope["context"]["identity_key"] == key


def test_identity_int(record: Record) -> None:
    assert _convert(record(identity=98765))["user_id"] == "98765"


def test_identity_missing(record: Record) -> None:
    error = _rejection(record(omit=("identity",)))

    assert error.field == "identity"
    assert error.reason == "missing: give one of identity, objectId, FBID, GPID"


def test_identity_empty_ignored(record: Record) -> None:
    envelope = _convert(record(identity="", objectId="device-1"))

    assert envelope["anonymous_id"] == "device-1"
    assert envelope["context"]["identity_key"] == "objectId"


@pytest.mark.parametrize(
    ("keys", "field", "named"),
    [
        (("identity", "objectId"), "objectId", "identity, objectId"),
        (("identity", "GPID"), "GPID", "identity, GPID"),
        (("FBID", "GPID"), "GPID", "FBID, GPID"),
        (IDENTITY_KEYS, "objectId", "identity, objectId, FBID, GPID"),
    ],
)
def test_identity_two_keys(keys: tuple[str, ...], field: str, named: str, record: Record) -> None:
    error = _rejection(record(omit=("identity",), **{key: f"{key}-1" for key in keys}))

    assert error.field == field
    assert error.reason == f"a record takes one identity key, got {named}"


def test_identity_too_long(record: Record) -> None:
    error = _rejection(record(identity="u" * 256))

    assert error.field == "identity"
    assert error.reason == "is 256 characters, more than 255 allowed"


def test_not_object() -> None:
    error = _rejection(["identity", "u-1"])

    assert error.field == "record"
    assert error.reason == "expected a JSON object, got list"


@pytest.mark.parametrize("kind", ["Event", "track", "", 1])
def test_type_invalid(kind: Any, record: Record) -> None:
    error = _rejection(record(type=kind))

    assert error.field == "type"
    assert error.reason == f"'{kind}' is not one of event, profile, token"


def test_type_missing(record: Record) -> None:
    error = _rejection(record(omit=("type",)))

    assert error.field == "type"
    assert error.reason == "missing; expected one of event, profile, token"


def test_ts_missing(record: Record) -> None:
    error = _rejection(record(omit=("ts",)))

    assert error.field == "ts"
    assert error.reason == "missing: the time of the record in epoch seconds"


def test_ts_null(record: Record) -> None:
    error = _rejection(record(ts=None))

    assert error.field == "ts"
    assert error.reason == "expected an ISO-8601 string or epoch number, got NoneType"


@pytest.mark.parametrize("ts", [TS * 1000, str(TS), f"{TS * 1000}", "2024-03-13T10:00:00+01:00"])
def test_ts_forms(ts: Any, record: Record) -> None:
    assert _convert(record(ts=ts))["timestamp"] == "2024-03-13T09:00:00.000000Z"


def test_ts_future(record: Record) -> None:
    error = _rejection(record(ts=TS + 3 * 86400))

    assert error.field == "ts"
    assert error.reason == (
        "2024-03-16T09:00:00.000000Z is more than 86400 s in the future "
        "(received at 2024-03-13T10:21:14.000000Z); check the sender's clock"
    )


def test_ts_unparseable(record: Record) -> None:
    error = _rejection(record(ts="yesterday"))

    assert error.field == "ts"
    assert error.reason == "'yesterday' is not an ISO-8601 timestamp such as 2024-03-13T10:21:14Z"


@pytest.mark.parametrize("name", [None, "", "   ", 42])
def test_event_name_missing(name: Any, record: Record) -> None:
    error = _rejection(record(evtName=name))

    assert error.field == "evtName"
    assert error.reason == "missing or empty: an event record needs its name"


def test_event_name_absent(record: Record) -> None:
    error = _rejection(record(omit=("evtName",)))

    assert str(error) == "evtName: missing or empty: an event record needs its name"


def test_event_name_stripped(record: Record) -> None:
    assert _convert(record(evtName=" App Launched "))["event"] == "App Launched"


def test_event_name_too_long(record: Record) -> None:
    assert _convert(record(evtName="e" * 512))["event"] == "e" * 512

    error = _rejection(record(evtName="e" * 513))
    assert error.field == "evtName"
    assert error.reason == "is 513 characters, more than 512 allowed"


@pytest.mark.parametrize(
    ("name", "reserved"),
    [
        ("Notification Sent", "Notification Sent"),
        ("Notification Viewed", "Notification Viewed"),
        (" Notification Clicked ", "Notification Clicked"),
        ("notification  clicked", "Notification Clicked"),
    ],
)
def test_event_name_reserved(name: str, reserved: str, record: Record) -> None:
    error = _rejection(record(evtName=name))

    assert error.field == "evtName"
    assert error.reason == (
        f"'{name.strip()}' is reserved, as '{reserved}', for the notification events Herald "
        "records itself"
    )


def test_event_data_checked(record: Record) -> None:
    error = _rejection(record(evtData={"k" * 121: 1}))

    assert error.field == f"evtData.{'k' * 32}"
    assert error.reason == "key must be 1 to 120 characters, got 121"


def test_event_data_not_object(record: Record) -> None:
    error = _rejection(record(evtData=[1, 2]))

    assert error.field == "evtData"
    assert error.reason == "expected a JSON object, got list"


def test_profile_data_checked(record: Record) -> None:
    error = _rejection(record("profile", profileData={"Bio": "b" * 8193}))

    assert error.field == "profileData.Bio"
    assert error.reason == "is 8193 characters, more than 8192 allowed"


def test_digest_of_body() -> None:
    body = b'{"d": [{"identity": "u-1", "ts": 1710320400, "type": "profile"}]}'

    digest = upload_digest(body)

    assert digest == hashlib.sha256(body).hexdigest()[:24]
    assert len(digest) == 24
    assert upload_digest(body + b" ") != digest


def test_message_ids_repeatable(record: Record) -> None:
    records = [record(), record("profile"), record("token")]
    body = orjson.dumps({"d": records})

    first = [_convert(r, i, upload_digest(body))["message_id"] for i, r in enumerate(records)]
    retried = [_convert(r, i, upload_digest(body))["message_id"] for i, r in enumerate(records)]

    assert first == retried
    assert first == [f"ct-{upload_digest(body)}-{i}" for i in range(3)]


def test_message_id_by_index(record: Record) -> None:
    same = record()

    assert _convert(same, 0)["message_id"] != _convert(same, 1)["message_id"]


def test_message_id_by_body(record: Record) -> None:
    first = upload_digest(orjson.dumps({"d": [record()]}))
    second = upload_digest(orjson.dumps({"d": [record(ts=TS + 1)]}))

    assert _convert(record(), 0, first)["message_id"] != _convert(record(), 0, second)["message_id"]
