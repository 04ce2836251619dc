"""Validate a request's events, store the valid ones and dead-letter the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import HTTPException, status

from api.json_values import find_invalid_json_value, format_field
from schemas.envelope import EventLimits, InvalidEvent, check_size
from schemas.wire import encode_rejection
from streams.producer import EventProducer, KafkaUnavailable

__all__ = ["IngestOutcome", "Rejection", "ingest"]

logger = logging.getLogger(__name__)

Convert = Callable[[int, Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    field: str | None
    reason: str
    message_id: str | None


@dataclass(slots=True)
class IngestOutcome:
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)


async def ingest(
    producer: EventProducer,
    items: Sequence[Any],
    convert: Convert,
    *,
    source: str,
    received_at: datetime,
    limits: EventLimits,
    dry_run: bool = False,
    check_json_values: bool = False,
) -> IngestOutcome:
    """Validate every item, then write the valid envelopes and the rejections to Kafka.

    Returns only after Kafka acknowledged both writes. With `dry_run` nothing is written.
    With `check_json_values`, for a body that only Python's JSON reader could decode, an
    item that contains NaN, Infinity or an unpaired surrogate is rejected.

    Raises:
        HTTPException: 503 when Kafka did not acknowledge; the client should retry, and the
            message ids make a retry safe.
    """
    outcome = IngestOutcome()
    valid: list[tuple[dict[str, Any], bytes]] = []
    dead_letters: list[bytes] = []
    for index, item in enumerate(items):
        try:
            if check_json_values:
                _reject_invalid_json_value(item)
            envelope = convert(index, item)
            valid.append((envelope, check_size(envelope, limits)))
        except InvalidEvent as error:
            outcome.rejected.append(Rejection(index, error.field, error.reason, _message_id(item)))
            dead_letters.append(
                encode_rejection(
                    source=source,
                    reason=error.reason,
                    field=error.field,
                    index=index,
                    payload=item,
                    received_at=received_at,
                )
            )
    outcome.accepted = len(valid)
    if not dry_run:
        await _write(producer, valid, dead_letters)
    if outcome.rejected:
        logger.info(
            "rejected %d of %d events", len(outcome.rejected), len(items), extra={"source": source}
        )
    return outcome


async def _write(
    producer: EventProducer, valid: list[tuple[dict[str, Any], bytes]], dead_letters: list[bytes]
) -> None:
    try:
        if valid:
            await producer.send_events(valid)
        if dead_letters:
            await producer.send_rejections(dead_letters)
    except KafkaUnavailable as error:
        logger.error("events not stored: %s", error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="events were not stored because Kafka is unavailable; retry the request",
            headers={"Retry-After": "5"},
        ) from None


def _reject_invalid_json_value(item: Any) -> None:
    # An item that is not an object is left to `convert`, which rejects it as such.
    if not isinstance(item, dict):
        return
    invalid = find_invalid_json_value(item)
    if invalid is not None:
        raise InvalidEvent(format_field(invalid.path), invalid.reason)


def _message_id(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    value = item.get("messageId", item.get("message_id"))
    # An id with an unpaired surrogate cannot be written into the JSON response.
    if not isinstance(value, str) or find_invalid_json_value(value) is not None:
        return None
    return value
