"""Read-only summaries of the landed events, for dashboards and analysts.

Each request opens its own in-memory DuckDB connection over the Parquet files, so the API
never keeps open a file that the worker writes, and requests run side by side.
"""

from __future__ import annotations

from datetime import date

import duckdb
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from api.auth import CurrentUser
from api.deps import SettingsDep
from queries.reports import event_counts

router = APIRouter(prefix="/reports", tags=["reports"])


class EventCount(BaseModel):
    """Track events of one name in the requested dates."""

    event: str
    events: int
    users: int


@router.get("/events", response_model=list[EventCount])
def read_event_counts(
    settings: SettingsDep,
    _: CurrentUser,
    start: date = Query(description="First UTC date, inclusive."),
    end: date = Query(description="Last UTC date, inclusive."),
    event: str | None = Query(default=None, max_length=255, description="Only this event name."),
) -> list[EventCount]:
    """Count track events and distinct users per event name between two dates."""
    if end < start:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"end {end} is before start {start}; give end on or after start",
        )
    try:
        rows = event_counts(settings.landing.data_dir, start, end, event)
    except duckdb.IOException:
        # A restarting worker removed a file between the listing and the read.
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="the landed files changed during the query; retry",
            headers={"Retry-After": "1"},
        ) from None
    return [EventCount(**row) for row in rows]
