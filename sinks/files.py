"""Durable, atomic file replacement for landed Parquet files.

A reader globbing a directory must never see a half-written Parquet file (DuckDB fails the
whole scan on a file without a footer), so files are written under a hidden temporary name
in the same directory, fsynced, renamed into place and the directory fsynced.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["TEMP_PREFIX", "write_parquet_atomically"]

# Readers glob `*.parquet`; a leading dot and another suffix keep temporary files out.
TEMP_PREFIX = "."


def write_parquet_atomically(table: pa.Table, path: Path, *, compression: str = "zstd") -> None:
    """Write `table` to `path` so that readers see either no file or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{TEMP_PREFIX}{path.name}.tmp")
    with open(temporary, "wb") as handle:
        pq.write_table(table, handle, compression=compression)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
