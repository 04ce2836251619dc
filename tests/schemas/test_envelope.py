from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from schemas.envelope import (
    EventLimits,
    InvalidEvent,
    check_identity,
    check_json_object,
    check_size,
    format_timestamp,
    parse_timestamp,
)

NOW = datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)
LIMITS = EventLimits()


def _parse(value: Any) -> datetime:
    return parse_timestamp(value, "timestamp", NOW, LIMITS)


def _nested(depth: int, leaf: Any) -> Any:
    """Return `depth` objects nested in each other as {"k": {"k": … leaf}}."""
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-13T10:21:14Z", datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)),
        ("2024-03-13T10:21:14.123456Z", datetime(2024, 3, 13, 10, 21, 14, 123456, tzinfo=UTC)),
        ("2024-03-13T10:21:14z", datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)),
        ("2024-03-13T12:21:14+02:00", datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)),
        ("2024-03-13T00:30:00-05:30", datetime(2024, 3, 13, 6, 0, tzinfo=UTC)),
        ("  2024-03-13T10:21:14Z\n", datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)),
    ],
)
def test_parse_iso(text: str, expected: datetime) -> None:
    parsed = _parse(text)

    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_parse_offset_keeps_instant() -> None:
    parsed = _parse("2024-03-13T01:00:00+02:00")

    assert parsed.tzinfo is UTC
    assert (parsed.day, parsed.hour) == (12, 23)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1710325274, datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)),
        (1710325274.5, datetime(2024, 3, 13, 10, 21, 14, 500000, tzinfo=UTC)),
        (1710325274123, datetime(2024, 3, 13, 10, 21, 14, 123000, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_epoch(value: Any, expected: datetime) -> None:
    parsed = _parse(value)

    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1710325274", datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)),
        (" 1710325274.25 ", datetime(2024, 3, 13, 10, 21, 14, 250000, tzinfo=UTC)),
        ("1710325274123", datetime(2024, 3, 13, 10, 21, 14, 123000, tzinfo=UTC)),
    ],
)
def test_parse_epoch_strings(text: str, expected: datetime) -> None:
    assert parse_timestamp(text, "ts", NOW, LIMITS, epoch_strings=True) == expected


def test_parse_numeric_string_not_epoch() -> None:
    # Without `epoch_strings`, "20240313" is an ISO-8601 basic date, not seconds in 1970.
    with pytest.raises(InvalidEvent) as caught:
        _parse("20240313")

    assert caught.value.reason == (
        "'20240313' has no UTC offset; add 'Z' or an offset such as '+02:00'"
    )


def test_parse_before_1970() -> None:
    with pytest.raises(InvalidEvent) as caught:
        _parse(-86400)

    assert caught.value.field == "timestamp"
    assert caught.value.reason == (
        "1969-12-31T00:00:00.000000Z is before 1970-01-01; check the sender's clock"
    )


def test_parse_epoch_ms_threshold() -> None:
    # 99_999_999_999 s is in the year 5138, so it is far in the future rather than ms.
    with pytest.raises(InvalidEvent):
        _parse(99_999_999_999)

    assert _parse(100_000_000_000) == datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)


def test_parse_naive_iso() -> None:
    with pytest.raises(InvalidEvent) as caught:
        _parse("2024-03-13T10:21:14")

    assert caught.value.field == "timestamp"
    assert caught.value.reason == (
        "'2024-03-13T10:21:14' has no UTC offset; add 'Z' or an offset such as '+02:00'"
    )
    assert str(caught.value) == (
        "timestamp: '2024-03-13T10:21:14' has no UTC offset; add 'Z' or an offset such as '+02:00'"
    )


def test_parse_date_only() -> None:
    with pytest.raises(InvalidEvent) as caught:
        _parse("2024-03-13")

    assert caught.value.reason == (
        "'2024-03-13' has no UTC offset; add 'Z' or an offset such as '+02:00'"
    )


@pytest.mark.parametrize(
    "text", ["yesterday", "", "13/03/2024 10:21", "0x10", "2024-13-45T00:00:00Z"]
)
def test_parse_unparseable(text: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        _parse(text)

    assert caught.value.field == "timestamp"
    assert caught.value.reason == (
        f"'{text}' is not an ISO-8601 timestamp such as 2024-03-13T10:21:14Z"
    )


def test_parse_unparseable_quotes_64_chars() -> None:
    text = "x" * 100

    with pytest.raises(InvalidEvent) as caught:
        _parse(text)

    assert caught.value.reason == (
        f"'{'x' * 64}' is not an ISO-8601 timestamp such as 2024-03-13T10:21:14Z"
    )


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(True, "bool"), (False, "bool"), (None, "NoneType"), ([1710325274], "list"), ({}, "dict")],
)
def test_parse_wrong_type(value: Any, type_name: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        _parse(value)

    assert caught.value.field == "timestamp"
    assert caught.value.reason == (f"expected an ISO-8601 string or epoch number, got {type_name}")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
    ],
)
def test_parse_not_finite(value: Any, shown: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        _parse(value)

    assert caught.value.reason == f"{shown} is not a finite epoch time"


@pytest.mark.parametrize(("value", "shown"), [(10**20, "100000000000000000000"), (1e20, "1e+20")])
def test_parse_epoch_out_of_range(value: Any, shown: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        _parse(value)

    assert caught.value.reason == f"{shown} is out of the range of epoch times"


def test_parse_epoch_huge_int() -> None:
    with pytest.raises(InvalidEvent) as caught:
        _parse(10**400)

    assert caught.value.field == "timestamp"


def test_parse_far_future() -> None:
    with pytest.raises(InvalidEvent) as caught:
        _parse("2034-03-13T10:21:14Z")

    assert caught.value.field == "timestamp"
    assert caught.value.reason == (
        "2034-03-13T10:21:14.000000Z is more than 86400 s in the future "
        "(received at 2024-03-13T10:21:14.000000Z); check the sender's clock"
    )


def test_parse_far_future_epoch_ms() -> None:
    ten_years_ms = (NOW + timedelta(days=3650)).timestamp() * 1000

    with pytest.raises(InvalidEvent) as caught:
        _parse(ten_years_ms)

    assert caught.value.reason.endswith("check the sender's clock")


def test_parse_skew_limit() -> None:
    just_under = NOW + timedelta(seconds=LIMITS.max_future_skew_s) - timedelta(milliseconds=1)
    at_limit = NOW + timedelta(seconds=LIMITS.max_future_skew_s)
    just_over = at_limit + timedelta(microseconds=1)

    assert _parse(format_timestamp(just_under)) == just_under
    assert _parse(format_timestamp(at_limit)) == at_limit
    with pytest.raises(InvalidEvent) as caught:
        _parse(format_timestamp(just_over))
    assert caught.value.reason == (
        "2024-03-14T10:21:14.000001Z is more than 86400 s in the future "
        "(received at 2024-03-13T10:21:14.000000Z); check the sender's clock"
    )


def test_parse_skew_from_limits() -> None:
    strict = EventLimits(max_future_skew_s=0)

    assert parse_timestamp("2024-03-13T10:21:14Z", "ts", NOW, strict) == NOW
    with pytest.raises(InvalidEvent) as caught:
        parse_timestamp("2024-03-13T10:21:15Z", "ts", NOW, strict)
    assert caught.value.field == "ts"
    assert caught.value.reason.startswith("2024-03-13T10:21:15.000000Z is more than 0 s")


def test_parse_past_accepted() -> None:
    assert _parse("1999-12-31T23:59:59Z") == datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_identity_both() -> None:
    assert check_identity("u-1", "a-1") == ("u-1", "a-1")


def test_identity_either() -> None:
    assert check_identity("u-1", None) == ("u-1", None)
    assert check_identity(None, "a-1") == (None, "a-1")


def test_identity_stripped() -> None:
    assert check_identity("  u-1 ", "\ta-1\n") == ("u-1", "a-1")


def test_identity_int_converted() -> None:
    assert check_identity(42, 0) == ("42", "0")


@pytest.mark.parametrize(
    ("user_id", "anonymous_id"), [(None, None), ("", ""), ("  ", None), (None, "\t"), ("", None)]
)
def test_identity_missing(user_id: Any, anonymous_id: Any) -> None:
    with pytest.raises(InvalidEvent) as caught:
        check_identity(user_id, anonymous_id)

    assert caught.value.field == "user_id"
    assert caught.value.reason == "missing: every event needs a user_id or an anonymous_id"


def test_identity_empty_user_kept_anonymous() -> None:
    assert check_identity("", "a-1") == (None, "a-1")


@pytest.mark.parametrize(
    ("user_id", "anonymous_id", "field", "type_name"),
    [
        (1.5, None, "user_id", "float"),
        (True, None, "user_id", "bool"),
        ("u-1", ["a"], "anonymous_id", "list"),
        ({"id": 1}, "a-1", "user_id", "dict"),
    ],
)
def test_identity_wrong_type(user_id: Any, anonymous_id: Any, field: str, type_name: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        check_identity(user_id, anonymous_id)

    assert caught.value.field == field
    assert caught.value.reason == f"expected a string, got {type_name}"


def test_identity_length_limit() -> None:
    assert check_identity("u" * 255, None) == ("u" * 255, None)

    with pytest.raises(InvalidEvent) as caught:
        check_identity("u" * 256, None)
    assert caught.value.field == "user_id"
    assert caught.value.reason == "is 256 characters, more than 255 allowed"

    with pytest.raises(InvalidEvent) as caught:
        check_identity("u-1", "a" * 300)
    assert caught.value.field == "anonymous_id"
    assert caught.value.reason == "is 300 characters, more than 255 allowed"


def test_json_object_none_is_empty() -> None:
    assert check_json_object(None, "properties", LIMITS) == {}


def test_json_object_returned_as_given() -> None:
    value = {"plan": "pro", "items": [{"sku": "A1", "qty": 2}], "amount": 9.5, "ok": True}

    assert check_json_object(value, "properties", LIMITS) is value


@pytest.mark.parametrize(
    ("value", "type_name"), [([], "list"), ("text", "str"), (3, "int"), (False, "bool")]
)
def test_json_object_not_object(value: Any, type_name: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        check_json_object(value, "traits", LIMITS)

    assert caught.value.field == "traits"
    assert caught.value.reason == f"expected a JSON object, got {type_name}"


def test_json_object_key_count() -> None:
    at_limit = {f"k{i}": i for i in range(255)}
    over = {f"k{i}": i for i in range(256)}

    assert check_json_object(at_limit, "properties", LIMITS) is at_limit
    with pytest.raises(InvalidEvent) as caught:
        check_json_object(over, "properties", LIMITS)
    assert caught.value.field == "properties"
    assert caught.value.reason == "has 256 keys, more than the 255 allowed"


def test_json_object_key_too_long() -> None:
    key = "k" * 121

    assert check_json_object({"k" * 120: 1}, "properties", LIMITS)
    with pytest.raises(InvalidEvent) as caught:
        check_json_object({key: 1}, "properties", LIMITS)
    assert caught.value.field == f"properties.{'k' * 32}"
    assert caught.value.reason == "key must be 1 to 120 characters, got 121"


def test_json_object_nested_key_too_long() -> None:
    with pytest.raises(InvalidEvent) as caught:
        check_json_object({"cart": {"x" * 130: 1}}, "properties", LIMITS)

    assert caught.value.field == f"properties.cart.{'x' * 32}"
    assert caught.value.reason == "key must be 1 to 120 characters, got 130"


def test_json_object_empty_key() -> None:
    with pytest.raises(InvalidEvent) as caught:
        check_json_object({"": 1}, "context", LIMITS)

    assert caught.value.field == "context."
    assert caught.value.reason == "key must be 1 to 120 characters, got 0"


def test_json_object_depth_limit() -> None:
    # The object itself is level 1, so five levels of objects are allowed.
    at_limit = _nested(4, {"leaf": "x"})

    assert check_json_object(at_limit, "properties", LIMITS) is at_limit
    with pytest.raises(InvalidEvent) as caught:
        check_json_object(_nested(5, {"leaf": "x"}), "properties", LIMITS)
    assert caught.value.field == "properties.k.k.k.k.k"
    assert caught.value.reason == "is nested deeper than the 5 levels allowed"


def test_json_object_depth_scalars() -> None:
    # Scalars below the last allowed level are not another level.
    value = _nested(4, 1)

    assert check_json_object(value, "properties", LIMITS) is value


def test_json_object_depth_lists() -> None:
    at_limit = {"a": [[[{"b": 1}]]]}
    too_deep = {"a": [[[[[]]]]]}

    assert check_json_object(at_limit, "properties", LIMITS) is at_limit
    with pytest.raises(InvalidEvent) as caught:
        check_json_object(too_deep, "properties", LIMITS)
    assert caught.value.field == "properties.a[0][0][0][0]"
    assert caught.value.reason == "is nested deeper than the 5 levels allowed"


def test_json_object_depth_from_limits() -> None:
    shallow = EventLimits(max_nesting_depth=1)

    assert check_json_object({"a": 1, "b": "x"}, "traits", shallow)
    with pytest.raises(InvalidEvent) as caught:
        check_json_object({"a": []}, "traits", shallow)
    assert caught.value.field == "traits.a"
    assert caught.value.reason == "is nested deeper than the 1 levels allowed"


def test_json_object_string_length() -> None:
    assert check_json_object({"note": "n" * 8192}, "properties", LIMITS)

    with pytest.raises(InvalidEvent) as caught:
        check_json_object({"note": "n" * 8193}, "properties", LIMITS)
    assert caught.value.field == "properties.note"
    assert caught.value.reason == "is 8193 characters, more than 8192 allowed"


def test_json_object_string_in_list() -> None:
    with pytest.raises(InvalidEvent) as caught:
        check_json_object({"tags": ["ok", "t" * 9000]}, "properties", LIMITS)

    assert caught.value.field == "properties.tags[1]"
    assert caught.value.reason == "is 9000 characters, more than 8192 allowed"


def test_size_returns_json() -> None:
    envelope = {"message_id": "m-1", "properties": {"city": "Zürich"}}

    encoded = check_size(envelope, LIMITS)

    assert encoded == orjson.dumps(envelope)
    assert orjson.loads(encoded) == envelope


def test_size_limit() -> None:
    envelope = {"message_id": "m-1", "pad": ""}
    overhead = len(orjson.dumps(envelope))
    limits = EventLimits(max_event_bytes=100)

    exact = {"message_id": "m-1", "pad": "p" * (100 - overhead)}
    assert len(check_size(exact, limits)) == 100

    over = {"message_id": "m-1", "pad": "p" * (101 - overhead)}
    with pytest.raises(InvalidEvent) as caught:
        check_size(over, limits)
    assert caught.value.field == "event"
    assert caught.value.reason == "is 101 bytes, more than the 100 bytes allowed"


def test_size_counts_utf8_bytes() -> None:
    limits = EventLimits(max_event_bytes=20)
    # 8 characters of 2 bytes each plus `{"p":""}` (8 bytes) is 24 bytes.
    with pytest.raises(InvalidEvent) as caught:
        check_size({"p": "é" * 8}, limits)

    assert caught.value.reason == "is 24 bytes, more than the 20 bytes allowed"


def test_format_utc() -> None:
    moment = datetime(2024, 3, 13, 10, 21, 14, 5, tzinfo=UTC)

    assert format_timestamp(moment) == "2024-03-13T10:21:14.000005Z"


def test_format_converts_offset() -> None:
    moment = datetime(2024, 3, 14, 1, 0, tzinfo=timezone(timedelta(hours=2)))

    assert format_timestamp(moment) == "2024-03-13T23:00:00.000000Z"


def test_format_round_trip() -> None:
    moment = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)

    assert _parse(format_timestamp(moment)) == moment


def test_invalid_event_text() -> None:
    error = InvalidEvent("properties.plan", "is 9000 characters")

    assert isinstance(error, ValueError)
    assert str(error) == "properties.plan: is 9000 characters"
    assert error.field == "properties.plan"
    assert error.reason == "is 9000 characters"
