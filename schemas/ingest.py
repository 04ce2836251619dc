"""Response bodies of the ingest endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["IngestResponse", "RejectedEvent", "UnprocessedRecord", "UploadResponse"]


class RejectedEvent(BaseModel):
    """One event of a request that was not stored, and why."""

    index: int = Field(description="Position of the event in the request, from 0.")
    field: str | None = Field(description="The field that failed validation.")
    reason: str
    message_id: str | None = None


class IngestResponse(BaseModel):
    """Response body of the Segment-compatible endpoints."""

    success: bool = Field(description="True when every event was stored.")
    accepted: int
    rejected: list[RejectedEvent] = Field(default_factory=list)


class UnprocessedRecord(BaseModel):
    """A CleverTap upload record that was not stored."""

    status: Literal["fail"] = "fail"
    code: int = 400
    index: int
    field: str | None
    error: str
    record: Any = None


class UploadResponse(BaseModel):
    """Response body of the CleverTap-compatible upload endpoint."""

    status: Literal["success", "partial", "fail"]
    processed: int
    unprocessed: list[UnprocessedRecord] = Field(default_factory=list)
    dry_run: bool = False
