"""Message labels: create several at once, list, rename and delete."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.auth import ClockDep, CurrentUser, EditorUser, SessionDep
from api.json_values import StrictJSONRoute
from control import labels as label_store
from control.views import label_public
from schemas.label import (
    LabelBatchCreate,
    LabelBatchResult,
    LabelPublic,
    LabelRejected,
    LabelRename,
)
from schemas.text import StoredText

router = APIRouter(prefix="/labels", tags=["labels"], route_class=StrictJSONRoute)


@router.get("", response_model=list[LabelPublic])
def read_labels(user: CurrentUser, session: SessionDep) -> list[LabelPublic]:
    return [label_public(label) for label in label_store.list_labels(session, user.account_id)]


@router.post("", response_model=LabelBatchResult)
def create_labels(
    body: LabelBatchCreate, user: EditorUser, session: SessionDep, clock: ClockDep
) -> LabelBatchResult:
    """Create every valid name; each rejected name comes back with the reason."""
    created, rejected = label_store.create_labels(session, user, body.names, clock.now())
    return LabelBatchResult(
        created=[label_public(label) for label in created],
        rejected=[LabelRejected(name=r.name, reason=r.reason) for r in rejected],
    )


@router.patch("/{label_id}", response_model=LabelPublic)
def update_label(
    label_id: StoredText, body: LabelRename, user: EditorUser, session: SessionDep, clock: ClockDep
) -> LabelPublic:
    return label_public(label_store.rename_label(session, user, label_id, body.name, clock.now()))


@router.delete("/{label_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_label(
    label_id: StoredText, user: EditorUser, session: SessionDep, clock: ClockDep
) -> None:
    """Delete a label, or return 409 naming the campaigns that still carry it."""
    label_store.delete_label(session, user, label_id, clock.now())
