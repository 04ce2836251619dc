"""Saved segments that campaigns target by id."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, status
from fastapi.responses import PlainTextResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from api.auth import ClockDep, CurrentUser, EditorUser, SessionDep
from api.deps import SettingsDep
from api.json_values import StrictJSONRoute
from control import segments as store
from control.models import Segment
from domain.errors import NotFound
from herald.config import HeraldSettings
from queries.catalog import connect
from queries.segments import count_members, is_member, segment_members
from schemas.campaign import MAX_SEGMENT_DEFINITION_BYTES
from schemas.campaign_message import check_json_size
from schemas.segment_rules import check_segment_definition, parse_segment_rule
from schemas.text import StoredText

router = APIRouter(prefix="/segments", tags=["segments"], route_class=StrictJSONRoute)

SegmentName = Annotated[StoredText, Field(min_length=1, max_length=200)]


def _bounded(definition: dict[str, Any] | None) -> dict[str, Any] | None:
    if definition is not None:
        check_json_size(definition, MAX_SEGMENT_DEFINITION_BYTES, "the segment definition")
        check_segment_definition(definition)
    return definition


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SegmentName
    definition: dict[str, Any] = Field(min_length=1)

    _definition = field_validator("definition")(_bounded)


class SegmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SegmentName | None = None
    definition: dict[str, Any] | None = Field(default=None, min_length=1)

    _definition = field_validator("definition")(_bounded)


class SegmentPublic(BaseModel):
    id: str
    name: str
    definition: dict[str, Any]
    created_at: AwareDatetime
    updated_at: AwareDatetime


def _public(segment: Segment) -> SegmentPublic:
    return SegmentPublic.model_validate(segment, from_attributes=True)


@router.get("", response_model=list[SegmentPublic])
def read_segments(user: CurrentUser, session: SessionDep) -> list[SegmentPublic]:
    return [_public(s) for s in store.list_segments(session, user.account_id)]


@router.post("", response_model=SegmentPublic, status_code=status.HTTP_201_CREATED)
def create_segment(
    body: SegmentCreate, user: EditorUser, session: SessionDep, clock: ClockDep
) -> SegmentPublic:
    return _public(store.create_segment(session, user, body.name, body.definition, clock.now()))


@router.get("/{segment_id}", response_model=SegmentPublic)
def read_segment(segment_id: StoredText, user: CurrentUser, session: SessionDep) -> SegmentPublic:
    return _public(store.get_segment(session, user.account_id, segment_id))


@router.patch("/{segment_id}", response_model=SegmentPublic)
def update_segment(
    segment_id: StoredText,
    body: SegmentUpdate,
    user: EditorUser,
    session: SessionDep,
    clock: ClockDep,
) -> SegmentPublic:
    segment = store.update_segment(
        session, user, segment_id, body.name, body.definition, clock.now()
    )
    return _public(segment)


@router.delete("/{segment_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_segment(
    segment_id: StoredText, user: EditorUser, session: SessionDep, clock: ClockDep
) -> None:
    """Delete a segment, or return 409 naming the campaigns that still target it."""
    store.delete_segment(session, user, segment_id, clock.now())


class SegmentDefinition(BaseModel):
    """A segment rule to size without saving it."""

    model_config = ConfigDict(extra="forbid")

    definition: dict[str, Any] = Field(min_length=1)

    _definition = field_validator("definition")(_bounded)


class SegmentSize(BaseModel):
    """How many users match a segment in the landed data at `as_of`."""

    size: int
    as_of: AwareDatetime


class SegmentMembership(BaseModel):
    user_id: str
    member: bool
    as_of: AwareDatetime


def _audience(
    definition: dict[str, Any], settings: HeraldSettings
) -> tuple[duckdb.DuckDBPyConnection, Any]:
    return connect(settings.landing.data_dir), parse_segment_rule(definition)


def _checked_segment(session: Session, account_id: str, segment_id: str) -> Segment:
    # A segment saved before the checks of campaign references existed is checked when read.
    segment = store.get_segment(session, account_id, segment_id)
    store.check_campaign_references(session, account_id, segment.definition, ("definition",))
    return segment


@router.post("/estimate", response_model=SegmentSize)
def estimate_segment(
    body: SegmentDefinition,
    user: CurrentUser,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> SegmentSize:
    """Count the users a definition selects now, without saving it."""
    store.check_campaign_references(session, user.account_id, body.definition, ("definition",))
    now = clock.now()
    connection, rule = _audience(body.definition, settings)
    with connection:
        size = count_members(
            connection, rule, now=now, tz=user.account.timezone, account_id=user.account_id
        )
    return SegmentSize(size=size, as_of=now)


@router.get("/{segment_id}/size", response_model=SegmentSize)
def read_segment_size(
    segment_id: StoredText,
    user: CurrentUser,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> SegmentSize:
    """Count the users the saved segment selects now."""
    segment = _checked_segment(session, user.account_id, segment_id)
    now = clock.now()
    connection, rule = _audience(segment.definition, settings)
    with connection:
        size = count_members(
            connection, rule, now=now, tz=user.account.timezone, account_id=user.account_id
        )
    return SegmentSize(size=size, as_of=now)


@router.get("/{segment_id}/members", response_class=PlainTextResponse)
def read_segment_members(
    segment_id: StoredText,
    user: CurrentUser,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> PlainTextResponse:
    """Export the saved segment's members now as CSV with one `user_id` column."""
    segment = _checked_segment(session, user.account_id, segment_id)
    connection, rule = _audience(segment.definition, settings)
    with connection:
        members = segment_members(
            connection, rule, now=clock.now(), tz=user.account.timezone, account_id=user.account_id
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["user_id"])
    writer.writerows([member] for member in members)
    return PlainTextResponse(
        buffer.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{segment_id}.csv"'},
    )


# User ids may contain slashes, so the last segment of the path takes the rest of it.
@router.get("/{segment_id}/members/{user_id:path}", response_model=SegmentMembership)
def read_segment_membership(
    segment_id: StoredText,
    user_id: str,
    user: CurrentUser,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> SegmentMembership:
    """Check whether one user belongs to the saved segment now.

    NOTE: this reads the landed Parquet, so it trails the stream by the landing's flush
    interval; the worker's streaming evaluator will give the real-time result once it
    serves queries.
    """
    segment = _checked_segment(session, user.account_id, segment_id)
    if not user_id:
        raise NotFound("user", user_id)
    now = clock.now()
    connection, rule = _audience(segment.definition, settings)
    with connection:
        member = is_member(
            connection, rule, user_id, now=now, tz=user.account.timezone, account_id=user.account_id
        )
    return SegmentMembership(user_id=user_id, member=member, as_of=now)
