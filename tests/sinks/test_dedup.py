from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.envelope import format_timestamp
from sinks.dedup import DedupIndex, identity_of

START = datetime(2024, 3, 13, 10, 0, tzinfo=UTC)
WINDOW_S = 3600.0

Envelope = Callable[..., dict[str, Any]]


@pytest.fixture
def envelope() -> Envelope:
    """Return a factory of envelopes received `after_s` seconds after START."""

    def make(
        message_id: str = "m-1",
        *,
        user_id: str | None = "u-1",
        anonymous_id: str | None = None,
        after_s: float = 0,
    ) -> dict[str, Any]:
        return {
            "message_id": message_id,
            "user_id": user_id,
            "anonymous_id": anonymous_id,
            "received_at": format_timestamp(START + timedelta(seconds=after_s)),
        }

    return make


def test_first_copy_kept(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)

    assert not index.is_duplicate(envelope())
    assert len(index) == 1


def test_copy_within_window(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope())

    assert index.is_duplicate(envelope(after_s=60))
    assert index.is_duplicate(envelope(after_s=WINDOW_S))
    assert len(index) == 1


def test_copy_after_window(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope())

    assert not index.is_duplicate(envelope(after_s=WINDOW_S + 0.001))
    # The late copy opens a new window.
    assert index.is_duplicate(envelope(after_s=WINDOW_S + 60))


def test_duplicates_do_not_extend_window(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope())
    index.is_duplicate(envelope(after_s=WINDOW_S - 1))

    assert not index.is_duplicate(envelope(after_s=WINDOW_S + 1))


def test_copy_received_earlier(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope(after_s=600))

    assert index.is_duplicate(envelope(after_s=0))


def test_other_message_kept(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope("m-1"))

    assert not index.is_duplicate(envelope("m-2"))
    assert len(index) == 2


def test_identity_distinguishes(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope("m-1", user_id="u-1"))

    assert not index.is_duplicate(envelope("m-1", user_id="u-2"))
    assert index.is_duplicate(envelope("m-1", user_id="u-2", after_s=1))
    assert len(index) == 2


def test_anonymous_identity(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope(user_id=None, anonymous_id="a-1"))

    assert index.is_duplicate(envelope(user_id=None, anonymous_id="a-1", after_s=5))
    assert not index.is_duplicate(envelope(user_id=None, anonymous_id="a-2"))


def test_user_id_before_anonymous(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope(user_id="u-1", anonymous_id="a-1"))

    assert index.is_duplicate(envelope(user_id="u-1", anonymous_id="a-other", after_s=5))
    assert not index.is_duplicate(envelope(user_id=None, anonymous_id="a-1", after_s=5))


def test_offset_timestamps(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope())
    # The same instant as START + 30 s, written with a +02:00 offset.
    copy = envelope() | {"received_at": "2024-03-13T12:00:30+02:00"}

    assert index.is_duplicate(copy)


def _at(after_s: float) -> str:
    return format_timestamp(START + timedelta(seconds=after_s))


def test_identity_of() -> None:
    assert identity_of({"user_id": "x", "anonymous_id": "a-1"}) == "u:x"
    assert identity_of({"user_id": None, "anonymous_id": "x"}) == "a:x"
    assert identity_of({"user_id": "", "anonymous_id": "x"}) == "a:x"


def test_user_and_anonymous_ids_apart(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope(user_id="x"))

    assert not index.is_duplicate(envelope(user_id=None, anonymous_id="x", after_s=5))


def test_remember(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.remember("u:u-1", "m-1", _at(0))

    assert len(index) == 1
    assert index.is_duplicate(envelope(after_s=10))
    assert not index.is_duplicate(envelope(after_s=WINDOW_S + 10))


def test_remember_keeps_latest(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.remember("u:u-1", "m-1", _at(600))
    index.remember("u:u-1", "m-1", _at(0))

    assert len(index) == 1
    assert index.is_duplicate(envelope(after_s=WINDOW_S + 300))


def test_prune_drops_old(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope("old"))
    index.is_duplicate(envelope("edge", after_s=100))
    index.is_duplicate(envelope("new", after_s=WINDOW_S + 100))

    assert index.prune() == 1
    assert len(index) == 2
    # `edge` was seen exactly one window before the latest id, so it is still inside it.
    assert index.is_duplicate(envelope("edge", after_s=WINDOW_S + 100))
    assert not index.is_duplicate(envelope("old", after_s=WINDOW_S + 100))


def test_prune_nothing_stale(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.is_duplicate(envelope("m-1"))
    index.is_duplicate(envelope("m-2", after_s=WINDOW_S))

    assert index.prune() == 0
    assert len(index) == 2


def test_prune_empty() -> None:
    assert DedupIndex(WINDOW_S).prune() == 0


def test_prune_counts_remembered(envelope: Envelope) -> None:
    index = DedupIndex(WINDOW_S)
    index.remember("u:u-1", "m-1", _at(0))
    index.remember("u:u-2", "m-2", _at(2 * WINDOW_S))

    assert index.prune() == 1
    assert not index.is_duplicate(envelope("m-1", after_s=2 * WINDOW_S))
