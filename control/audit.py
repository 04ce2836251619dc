"""The audit log: one entry per change, with who made it, when, and what changed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control.models import AuditEntry, User

__all__ = ["diff_fields", "list_audit", "record_audit"]


def record_audit(
    session: Session,
    actor: User,
    resource: str,
    resource_id: str,
    action: str,
    at: datetime,
    *,
    changes: dict[str, Any] | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    comment: str | None = None,
) -> None:
    """Add an audit entry to `session`; it is saved with the change it describes."""
    session.add(
        AuditEntry(
            account_id=actor.account_id,
            resource=resource,
            resource_id=resource_id,
            action=action,
            actor_id=actor.id,
            at=at,
            from_state=from_state,
            to_state=to_state,
            changes=changes or {},
            comment=comment,
        )
    )


def diff_fields(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Return `{field: {"from": old, "to": new}}` for the fields whose values differ."""
    return {
        key: {"from": before.get(key), "to": after.get(key)}
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    }


def list_audit(
    session: Session, account_id: str, resource_id: str | None = None, limit: int = 200
) -> Sequence[AuditEntry]:
    """Return the newest `limit` entries of an account, oldest first."""
    query = select(AuditEntry).where(AuditEntry.account_id == account_id)
    if resource_id is not None:
        query = query.where(AuditEntry.resource_id == resource_id)
    newest = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)).all()
    return list(reversed(newest))
