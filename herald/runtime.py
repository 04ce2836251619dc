"""Process-wide settings of Herald's long-running processes."""

from __future__ import annotations

import gc

__all__ = ["tune_garbage_collector"]

_YOUNG_THRESHOLD = 25_000


def tune_garbage_collector() -> None:
    """Collect the youngest generation every 25,000 allocations instead of every 700.

    A worker allocates a dict per event and keeps thousands of them buffered, so Python's
    default threshold rescans them again and again: the Parquet landing spent about a
    quarter of its CPU in the collector (`python -m bench.ingest`, 2-core VM). Reference
    cycles are rare in this code, so collecting less often costs little memory. The
    threshold stops at 25,000 because each collection pauses the engine: at 100,000 the
    pauses reached 40-60 ms and set the engine's p99 send latency (`python -m
    bench.triggers`, same VM), at 25,000 they stayed under 20 ms for the same total time.
    """
    gc.set_threshold(_YOUNG_THRESHOLD, 50, 100)
