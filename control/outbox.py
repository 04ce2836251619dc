"""The transactional outbox of the change feed.

A change and its feed record are committed in one transaction, so the `campaigns` topic
can lag the database but never miss a change; `control.feed` publishes the records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from control.models import FeedOutbox

__all__ = ["FEED_ENABLED", "enqueue_definition", "enqueue_tombstone"]

# Key in `Session.info`: False where no publisher runs, so the outbox does not grow forever.
FEED_ENABLED = "feed_enabled"


def enqueue_definition(
    session: Session, kind: str, key: str, definition: dict[str, Any], at: datetime
) -> None:
    """Queue the full current `definition` of a `kind` resource under `key`."""
    if not session.info.get(FEED_ENABLED, True):
        return
    value = orjson.dumps({"kind": kind, "id": key, "definition": definition}).decode()
    session.add(FeedOutbox(key=key, value=value, created_at=at))


def enqueue_tombstone(session: Session, key: str, at: datetime) -> None:
    """Queue a tombstone, which removes `key` from the compacted topic."""
    if not session.info.get(FEED_ENABLED, True):
        return
    session.add(FeedOutbox(key=key, value=None, created_at=at))
