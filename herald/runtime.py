"""Process-wide settings of Herald's long-running processes."""

from __future__ import annotations

import gc

__all__ = ["tune_garbage_collector"]


def tune_garbage_collector() -> None:
    """Collect the youngest generation every 100,000 allocations instead of every 700.

    A worker allocates a dict per event and keeps thousands of them buffered, so Python's
    default threshold rescans them again and again: the Parquet landing spent about a
    quarter of its CPU in the collector (`python -m bench.ingest`, 2-core VM). Reference
    cycles are rare in this code, so collecting less often costs little memory.
    """
    gc.set_threshold(100_000, 50, 100)
