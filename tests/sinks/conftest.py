"""Factories of envelopes as Herald's ingest builds them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.envelope import EventLimits
from schemas.segment import envelope_from_segment

Event = Callable[..., dict[str, Any]]


@pytest.fixture
def event() -> Event:
    """Return a factory of track envelopes built by `envelope_from_segment`.

    The message id is new on each call unless given, and `received_at` is now unless given.
    Keywords other than the ones named are Segment message fields (`properties`, `context`…).
    """

    def make(
        user_id: str = "u-1",
        *,
        message_id: str | None = None,
        name: str = "Product Viewed",
        timestamp: str = "2024-03-13T10:21:14Z",
        received_at: datetime | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        message = {
            "type": "track",
            "userId": user_id,
            "messageId": message_id or uuid.uuid4().hex,
            "event": name,
            "timestamp": timestamp,
            **fields,
        }
        return envelope_from_segment(message, received_at or datetime.now(UTC), EventLimits())

    return make
