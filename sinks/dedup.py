"""Per-partition deduplication of events by (identity, message id) within a time window.

All of a user's events share one partition, so a retried request always meets its first
copy in the same index. The window is measured on `received_at`: a copy received more than
`window_s` after the first one is kept, because by then the first has been pruned.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from schemas.envelope import format_timestamp

__all__ = ["DedupIndex", "identity_of"]


def identity_of(envelope: dict[str, Any]) -> str:
    """Return the identity a message id belongs to, prefixed so user and anonymous ids never collide."""
    user_id = envelope.get("user_id")
    return f"u:{user_id}" if user_id else f"a:{envelope['anonymous_id']}"


def _epoch_s(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class DedupIndex:
    """Remembers the message ids one partition has landed in the last `window_s` seconds.

    Times are kept as the envelopes' canonical UTC strings, which sort like the instants
    they name, so the common case (a new id) parses nothing.
    """

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._seen: dict[tuple[str, str], str] = {}
        self._latest = ""

    def __len__(self) -> int:
        return len(self._seen)

    def remember(self, identity: str, message_id: str, received_at: str) -> None:
        """Record an id that is already landed (used when rebuilding from Parquet)."""
        key = (identity, message_id)
        self._seen[key] = max(received_at, self._seen.get(key, received_at))
        self._latest = max(self._latest, received_at)

    def is_duplicate(self, envelope: dict[str, Any]) -> bool:
        """Return True for a copy of an event seen within the window; remember it otherwise."""
        key = (identity_of(envelope), envelope["message_id"])
        received_at = envelope["received_at"]
        first = self._seen.get(key)
        if first is not None and _epoch_s(received_at) - _epoch_s(first) <= self._window_s:
            return True
        self._seen[key] = received_at
        if received_at > self._latest:
            self._latest = received_at
        return False

    def prune(self) -> int:
        """Forget ids older than the window; return how many were dropped."""
        if not self._latest:
            return 0
        horizon = format_timestamp(
            datetime.fromisoformat(self._latest) - timedelta(seconds=self._window_s)
        )
        stale = [key for key, seen in self._seen.items() if seen < horizon]
        for key in stale:
            del self._seen[key]
        return len(stale)
