"""DuckDB connections with Herald's views over the landed Parquet.

Every connection is in-memory and reads Parquet directly, so any number of readers (the
API, `herald sql`, a notebook) can run beside the worker that writes the files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from sinks.parquet import EVENTS_SCHEMA, events_dir, profiles_dir
from streams.profiles import PROFILES_SCHEMA

__all__ = ["connect", "quote_literal", "view_statements"]


def quote_literal(text: str) -> str:
    """Quote `text` as a SQL string literal; the one place literals are built by hand."""
    return "'" + text.replace("'", "''") + "'"


def _source(directory: Path, pattern: str, empty_name: str, hive: bool) -> str:
    glob = directory / pattern
    if not any(directory.glob(pattern)):
        return f"(SELECT *{', NULL::VARCHAR AS date' if hive else ''} FROM {empty_name})"
    options = ", hive_partitioning = true" if hive else ""
    return f"read_parquet({quote_literal(str(glob))}{options})"


def view_statements(data_dir: Path) -> str:
    """Return the CREATE VIEW statements for `data_dir`, ready for a DuckDB shell."""
    template = resources.files("queries").joinpath("views.sql").read_text()
    return template.format(
        events_source=_source(events_dir(data_dir), "date=*/*.parquet", "_empty_events", True),
        profiles_source=_source(profiles_dir(data_dir), "*.parquet", "_empty_profiles", False),
    )


def connect(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB connection with the views over `data_dir`."""
    connection = duckdb.connect()
    connection.register(
        "_empty_events", pa.table({f.name: pa.array([], f.type) for f in EVENTS_SCHEMA})
    )
    connection.register(
        "_empty_profiles", pa.table({f.name: pa.array([], f.type) for f in PROFILES_SCHEMA})
    )
    connection.execute(view_statements(data_dir.resolve()))
    return connection
