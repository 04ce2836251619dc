"""The shape check that every consumer of the events topic applies to a decoded envelope."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.wire import decode_events, envelope_problem


def _envelope(**fields: Any) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "message_id": "m-1",
        "type": "track",
        "event": "Viewed",
        "user_id": "u-1",
        "timestamp": "2024-03-13T10:21:14Z",
        "received_at": "2024-03-13T10:21:15.5Z",
        "properties": {},
    }
    envelope.update(fields)
    return envelope


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-03-13T10:21:14Z",
        "2024-03-13T10:21:14.1Z",
        "2024-03-13T10:21:14.123456Z",
        "2024-02-29T23:59:59.999999Z",
    ],
)
def test_accepts_utc_forms(timestamp: str) -> None:
    assert envelope_problem(_envelope(timestamp=timestamp)) is None


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-03-13T10:21:14",  # no zone
        "2024-03-13T10:21:14+00:00",
        "2024-03-13 10:21:14Z",
        "2024-03-13T10:21:14.Z",
        "2024-03-13T10:21:14.1234567Z",  # seven digits of fraction
        "2024-03-13T10:21:14,5Z",
        "2024-03-13T10:21:14.12a4Z",
        "2024-03-13T10:2a:14Z",
        "20240313T102114Z",
        "2024-02-30T10:21:14Z",  # no such day
        "2023-02-29T10:21:14Z",
        "2024-03-13T24:00:00Z",
        "\uff12024-03-13T10:21:14Z",  # a full-width digit
        "2024-03-13T10:21:14.1Z\x00abcZ",
        "2024-02-29T23:59:59.Z\x00Z",
        "",
    ],
)
def test_rejects_other_timestamp_forms(timestamp: str) -> None:
    problem = envelope_problem(_envelope(timestamp=timestamp))

    assert problem is not None
    assert problem.startswith("timestamp ")
    assert "is not a UTC timestamp" in problem


def test_checks_received_at() -> None:
    problem = envelope_problem(_envelope(received_at="2024-03-13T10:21:14+02:00"))

    assert problem is not None
    assert problem.startswith("received_at ")


def test_record_without_value() -> None:
    # Kafka delivers a tombstone's value as None; the consumers catch only ValueError.
    with pytest.raises(ValueError, match="record has no value"):
        decode_events(None)
