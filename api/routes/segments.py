"""Saved segments that campaigns target by id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from api.auth import ClockDep, CurrentUser, EditorUser, SessionDep
from control import segments as store
from control.models import Segment
from schemas.campaign import MAX_SEGMENT_DEFINITION_BYTES
from schemas.campaign_message import check_json_size

router = APIRouter(prefix="/segments", tags=["segments"])

SegmentName = Annotated[str, Field(min_length=1, max_length=200)]


def _bounded(definition: dict[str, Any] | None) -> dict[str, Any] | None:
    if definition is not None:
        check_json_size(definition, MAX_SEGMENT_DEFINITION_BYTES, "the segment definition")
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
def read_segment(segment_id: str, user: CurrentUser, session: SessionDep) -> SegmentPublic:
    return _public(store.get_segment(session, user.account_id, segment_id))


@router.patch("/{segment_id}", response_model=SegmentPublic)
def update_segment(
    segment_id: str, body: SegmentUpdate, user: EditorUser, session: SessionDep, clock: ClockDep
) -> SegmentPublic:
    segment = store.update_segment(
        session, user, segment_id, body.name, body.definition, clock.now()
    )
    return _public(segment)


@router.delete("/{segment_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_segment(segment_id: str, user: EditorUser, session: SessionDep, clock: ClockDep) -> None:
    """Delete a segment, or return 409 naming the campaigns that still target it."""
    store.delete_segment(session, user, segment_id, clock.now())
