"""The account's audit log: every change to campaigns, labels, segments, users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import CurrentUser, SessionDep
from control.audit import list_audit
from control.views import audit_public
from schemas.campaign import AuditEntryPublic
from schemas.text import StoredText

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=list[AuditEntryPublic])
def read_audit(
    user: CurrentUser,
    session: SessionDep,
    resource_id: StoredText | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntryPublic]:
    """Return the newest `limit` entries, oldest first, optionally for one resource."""
    return [audit_public(e) for e in list_audit(session, user.account_id, resource_id, limit)]
