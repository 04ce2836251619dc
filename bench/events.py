"""Synthetic Segment track events, and the request bodies and envelopes built from them."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.envelope import EventLimits, check_size
from schemas.segment import envelope_from_segment

_EVENT_NAMES = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")
_CATEGORIES = ("electronics.smartphone", "appliances.kitchen", "apparel.shoes", "home.decor")


@dataclass(frozen=True)
class Workload:
    """The synthetic events of one run and how they are sent."""

    events: int
    users: int
    batch_size: int
    clients: int
    seed: int


def synthetic_messages(workload: Workload, offset: int = 0) -> list[dict[str, Any]]:
    """Build Segment track messages for `workload.users` users, with unique message ids.

    Timestamps fall in the last ten minutes, so nearly every event lands under one date.
    """
    rng = random.Random(workload.seed + offset)
    now = datetime.now(UTC)
    return [_track_message(rng, now, workload.users) for _ in range(workload.events)]


def _track_message(rng: random.Random, now: datetime, users: int) -> dict[str, Any]:
    moment = now - timedelta(seconds=rng.uniform(0, 600))
    return {
        "type": "track",
        "event": rng.choice(_EVENT_NAMES),
        "userId": f"user-{rng.randrange(users):06d}",
        "messageId": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "properties": {
            "product_id": f"p-{rng.randrange(50_000):05d}",
            "category": rng.choice(_CATEGORIES),
            "price": round(rng.uniform(1, 500), 2),
            "currency": "USD",
        },
        "context": {"library": {"name": "herald-bench", "version": "0.1.0"}},
    }


def request_bodies(messages: Sequence[dict[str, Any]], batch_size: int) -> list[bytes]:
    """Serialise `/v1/batch` request bodies of `batch_size` messages each."""
    return [
        orjson.dumps({"batch": messages[start : start + batch_size]})
        for start in range(0, len(messages), batch_size)
    ]


def envelopes_of(messages: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], bytes]]:
    """Convert messages to (envelope, JSON) pairs exactly as the ingest API does."""
    limits = EventLimits()
    received_at = datetime.now(UTC)
    pairs = []
    for message in messages:
        envelope = envelope_from_segment(message, received_at, limits)
        pairs.append((envelope, check_size(envelope, limits)))
    return pairs
