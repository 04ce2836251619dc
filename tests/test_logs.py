"""Rate limiting of repeated log lines."""

from __future__ import annotations

import logging

from herald.logs import RepeatFilter


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, message, None, None)


def test_repeats_dropped_then_counted() -> None:
    now = [0.0]
    repeat_filter = RepeatFilter(interval_s=30, clock=lambda: now[0])

    passed = [repeat_filter.filter(_record("Unable connect")) for _ in range(5)]
    now[0] = 31.0
    later = _record("Unable connect")

    assert passed == [True, False, False, False, False]
    assert repeat_filter.filter(later) is True
    assert later.getMessage() == "Unable connect (and 4 more like it in the last 30 s)"


def test_other_messages_pass() -> None:
    repeat_filter = RepeatFilter(interval_s=30, clock=lambda: 0.0)

    assert repeat_filter.filter(_record("one")) is True
    assert repeat_filter.filter(_record("two")) is True
