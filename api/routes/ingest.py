"""Segment-compatible ingest: `/v1/track`, `/v1/identify`, …, `/v1/batch`.

A single-event call whose event is invalid gets 400 with the field and reason. A batch
stores its valid events and lists each invalid one with its index and reason; the invalid
ones also go to the rejected topic. Every response comes after Kafka acknowledged the write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from api.deps import ProducerDep, SettingsDep, WriteKey, read_json_body
from api.ingestion import IngestOutcome, ingest
from api.json_values import find_invalid_json_value, format_field
from schemas.envelope import EventLimits, InvalidEvent
from schemas.ingest import IngestResponse, RejectedEvent
from schemas.segment import SEGMENT_TYPES, envelope_from_segment

router = APIRouter(prefix="/v1", tags=["ingest"])


@router.post("/batch", response_model=IngestResponse)
async def create_batch(
    request: Request, settings: SettingsDep, producer: ProducerDep, _: WriteKey
) -> IngestResponse:
    """Store a batch of Segment messages of any type."""
    body = await read_json_body(request, settings.ingest.max_batch_bytes)
    messages = _batch_messages(body.document, settings.ingest.max_batch_events)
    # A context that is not an object is ignored, as Segment's API does.
    context = body.document.get("context")
    batch_context = context if isinstance(context, dict) else None
    context_error = _invalid_context(batch_context) if body.lenient else None
    limits = EventLimits.from_settings(settings.ingest)
    received_at = datetime.now(UTC)

    def convert(_index: int, message: Any) -> dict[str, Any]:
        if context_error is not None:
            # The batch's context reaches every message, so every message is invalid.
            raise InvalidEvent(context_error.field, context_error.reason)
        return envelope_from_segment(message, received_at, limits, batch_context=batch_context)

    outcome = await ingest(
        producer,
        messages,
        convert,
        source="segment",
        received_at=received_at,
        limits=limits,
        check_json_values=body.lenient,
    )
    return _response(outcome)


def _invalid_context(context: dict[str, Any] | None) -> InvalidEvent | None:
    invalid = find_invalid_json_value(context)
    if invalid is None:
        return None
    return InvalidEvent(format_field(("context", *invalid.path)), invalid.reason)


def _batch_messages(body: Any, max_events: int) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="batch: expected a JSON object with a 'batch' array of messages",
        )
    messages = body["batch"]
    if len(messages) > max_events:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"batch: {len(messages)} messages, more than the {max_events} allowed",
        )
    return messages


async def _create_single(
    kind: str, request: Request, settings: SettingsDep, producer: ProducerDep
) -> IngestResponse:
    body = await read_json_body(request, settings.ingest.max_event_bytes)
    limits = EventLimits.from_settings(settings.ingest)
    received_at = datetime.now(UTC)
    outcome = await ingest(
        producer,
        [body.document],
        lambda _index, message: envelope_from_segment(
            message, received_at, limits, default_type=kind
        ),
        source="segment",
        received_at=received_at,
        limits=limits,
        check_json_values=body.lenient,
    )
    if outcome.rejected:
        rejection = outcome.rejected[0]
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail={"field": rejection.field, "reason": rejection.reason},
        )
    return _response(outcome)


def _response(outcome: IngestOutcome) -> IngestResponse:
    return IngestResponse(
        success=not outcome.rejected,
        accepted=outcome.accepted,
        rejected=[
            RejectedEvent(
                index=item.index, field=item.field, reason=item.reason, message_id=item.message_id
            )
            for item in outcome.rejected
        ],
    )


def _single_route(kind: str) -> None:
    async def create_event(
        request: Request, settings: SettingsDep, producer: ProducerDep, _: WriteKey
    ) -> IngestResponse:
        return await _create_single(kind, request, settings, producer)

    create_event.__name__ = f"create_{kind}"
    create_event.__doc__ = f"Store one Segment `{kind}` message."
    router.add_api_route(f"/{kind}", create_event, methods=["POST"], response_model=IngestResponse)


for _kind in SEGMENT_TYPES:
    _single_route(_kind)
