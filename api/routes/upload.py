"""CleverTap-compatible upload: `POST /1/upload` with `{"d": [records]}`.

At most 1,000 records a call, users may be mixed. `?dryRun=1` validates without storing.
The response lists each record that was not stored with its index and reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from api.deps import CleverTapAccountId, ProducerDep, SettingsDep, read_json_body
from api.ingestion import ingest
from api.json_values import find_invalid_json_value
from schemas.clevertap import envelope_from_clevertap, upload_digest
from schemas.envelope import EventLimits
from schemas.ingest import UnprocessedRecord, UploadResponse

router = APIRouter(tags=["ingest"])


@router.post("/1/upload", response_model=UploadResponse)
async def create_upload(
    request: Request,
    settings: SettingsDep,
    producer: ProducerDep,
    account_id: CleverTapAccountId,
    dry_run: int = Query(default=0, alias="dryRun", ge=0, le=1),
) -> UploadResponse:
    """Store CleverTap event, profile and token records."""
    body = await read_json_body(request, settings.ingest.max_batch_bytes)
    records = _records(body.document, settings.ingest.max_clevertap_records)
    limits = EventLimits.from_settings(settings.ingest)
    received_at = datetime.now(UTC)
    digest = upload_digest(account_id.encode() + b"\0" + body.raw)
    outcome = await ingest(
        producer,
        records,
        lambda index, record: envelope_from_clevertap(record, index, digest, received_at, limits),
        source="clevertap",
        received_at=received_at,
        limits=limits,
        dry_run=bool(dry_run),
        check_json_values=body.lenient,
    )
    unprocessed = [
        UnprocessedRecord(
            index=item.index,
            field=item.field,
            error=item.reason,
            record=_echoed_record(records[item.index], body.lenient),
        )
        for item in outcome.rejected
    ]
    if not unprocessed:
        state = "success"
    elif outcome.accepted:
        state = "partial"
    else:
        state = "fail"
    return UploadResponse(
        status=state, processed=outcome.accepted, unprocessed=unprocessed, dry_run=bool(dry_run)
    )


def _echoed_record(record: Any, lenient: bool) -> Any:
    # A record with NaN or an unpaired surrogate cannot be written into the JSON response.
    # Its index and error still identify it.
    if lenient and find_invalid_json_value(record) is not None:
        return None
    return record


def _records(body: Any, max_records: int) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("d"), list):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="d: expected a JSON object with a 'd' array of records",
        )
    records = body["d"]
    if len(records) > max_records:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"d: {len(records)} records, more than the {max_records} allowed",
        )
    return records
