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
from domain.errors import InvalidValue

__all__ = [
    "FEED_ENABLED",
    "MAX_CAMPAIGN_RECORD_BYTES",
    "check_record_size",
    "enqueue_definition",
    "enqueue_tombstone",
]

# Key in `Session.info`: False where no publisher runs, so the outbox does not grow forever.
FEED_ENABLED = "feed_enabled"
# A record the broker rejects (its `message.max.bytes` is 1 MiB by default) would stop the
# feed of every account, so a campaign stays well below that. The rest leaves room for
# the account's settings and longer label names, added when it is published again.
MAX_CAMPAIGN_RECORD_BYTES = 768 * 1024


def check_record_size(definition: dict[str, Any]) -> None:
    """Reject a campaign whose feed record would be too large for the broker.

    Raises:
        InvalidValue: the definition, its published version included, is too large.
    """
    size = len(orjson.dumps(definition))
    if definition.get("live_definition") is None:
        # Publishing adds a copy of the draft, so a draft that could not be published is
        # rejected while it is written.
        size *= 2
    if size > MAX_CAMPAIGN_RECORD_BYTES:
        raise InvalidValue(
            f"the campaign would take {size} bytes as workers receive it once published "
            f"(the draft and the published version together), more than "
            f"{MAX_CAMPAIGN_RECORD_BYTES}; shorten its messages or use fewer variants"
        )


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
