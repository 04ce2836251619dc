"""Per-partition deduplication of events by (identity, message id) within a time window.

All of a user's events share one partition, so a retried request always meets its first
copy in the same index. The window is measured on `received_at`: a copy received more than
`window_s` after the first one is kept, because by then the first has been pruned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["DedupIndex"]


def _epoch_s(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class DedupIndex:
    """Remembers the message ids one partition has landed in the last `window_s` seconds."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._seen: dict[tuple[str, str], float] = {}
        self._latest_s = 0.0

    def __len__(self) -> int:
        return len(self._seen)

    def remember(self, identity: str, message_id: str, received_s: float) -> None:
        """Record an id that is already landed (used when rebuilding from Parquet)."""
        key = (identity, message_id)
        self._seen[key] = max(received_s, self._seen.get(key, received_s))
        self._latest_s = max(self._latest_s, received_s)

    def is_duplicate(self, envelope: dict[str, Any]) -> bool:
        """Return True for a copy of an event seen within the window; remember it otherwise."""
        key = (envelope.get("user_id") or envelope["anonymous_id"], envelope["message_id"])
        received_s = _epoch_s(envelope["received_at"])
        first_s = self._seen.get(key)
        if first_s is not None and received_s - first_s <= self._window_s:
            return True
        self._seen[key] = received_s
        self._latest_s = max(self._latest_s, received_s)
        return False

    def prune(self) -> int:
        """Forget ids older than the window; return how many were dropped."""
        horizon = self._latest_s - self._window_s
        stale = [key for key, seen_s in self._seen.items() if seen_s < horizon]
        for key in stale:
            del self._seen[key]
        return len(stale)
