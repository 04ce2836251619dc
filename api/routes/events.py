"""Read-only summaries of the landed events, for dashboards and analysts.

Each request opens its own in-memory DuckDB connection over the Parquet files, so the API
never keeps open a file that the worker writes, and requests run side by side.

The landed events are those of the whole deployment, which every account shares. Delivery
outcomes belong to campaigns, so each account gets only its own campaigns' outcomes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import duckdb
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from api.auth import CurrentUser, SessionDep
from api.deps import SettingsDep
from control import campaigns as campaign_store
from queries.reports import delivery_outcomes, event_counts

router = APIRouter(prefix="/reports", tags=["reports"])


class EventCount(BaseModel):
    """Track events of one name in the requested dates."""

    event: str
    events: int
    users: int


class DeliveryOutcome(BaseModel):
    """Decisions of one campaign with one outcome and reason in the requested dates."""

    campaign_id: str
    outcome: str = Field(description="`sent` or `not_sent`.")
    reason: str | None = Field(description="Why the messages were not sent; null when sent.")
    messages: int
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
    _check_dates(start, end)
    rows = _query(event_counts, settings.landing.data_dir, start, end, event)
    return [EventCount(**row) for row in rows]


@router.get("/deliveries", response_model=list[DeliveryOutcome])
def read_delivery_outcomes(
    settings: SettingsDep,
    session: SessionDep,
    user: CurrentUser,
    start: date = Query(description="First UTC date, inclusive."),
    end: date = Query(description="Last UTC date, inclusive."),
    campaign_id: str | None = Query(default=None, max_length=64, description="Only this one."),
) -> list[DeliveryOutcome]:
    """Count messages sent, and not sent by reason, per campaign of the caller's account
    between two dates."""
    _check_dates(start, end)
    if campaign_id is not None:
        # Another account's campaign is not found, as when it is read itself.
        own = {campaign_store.get_campaign(session, user.account_id, campaign_id).id}
    else:
        campaigns = campaign_store.list_campaigns(session, user.account_id, include_archived=True)
        own = {campaign.id for campaign in campaigns}
    rows = _query(delivery_outcomes, settings.landing.data_dir, start, end, campaign_id)
    return [DeliveryOutcome(**row) for row in rows if row["campaign_id"] in own]


def _check_dates(start: date, end: date) -> None:
    if end < start:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"end {end} is before start {start}; give end on or after start",
        )


def _query(report: Callable[..., list[dict[str, Any]]], *args: Any) -> list[dict[str, Any]]:
    try:
        return report(*args)
    except duckdb.IOException:
        # A restarting worker removed a file between the listing and the read.
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="the landed files changed during the query; retry",
            headers={"Retry-After": "1"},
        ) from None
