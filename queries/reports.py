"""Named report queries over the analyst views; each reads its SQL from a file beside it."""

from __future__ import annotations

from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from queries.catalog import connect

__all__ = ["date_property_members", "delivery_outcomes", "event_counts"]


@cache
def _sql(name: str) -> str:
    return resources.files("queries").joinpath(f"{name}.sql").read_text()


def delivery_outcomes(
    data_dir: Path, start: date, end: date, campaign_id: str | None
) -> list[dict[str, Any]]:
    """Count the engine's decisions per campaign, outcome and reason between two UTC dates."""
    return _rows(
        data_dir, "delivery_outcomes", {"start": start, "end": end, "campaign_id": campaign_id}
    )


def date_property_members(
    connection: duckdb.DuckDBPyConnection, property_name: str, target: date
) -> list[str]:
    """Return the users whose date trait `property_name` has its anniversary on `target`."""
    cursor = connection.execute(
        _sql("date_property_members"), {"property": property_name, "target": target}
    )
    return [row[0] for row in cursor.fetchall()]


def _rows(data_dir: Path, name: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    with connect(data_dir) as connection:
        cursor = connection.execute(_sql(name), parameters)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def event_counts(data_dir: Path, start: date, end: date, event: str | None) -> list[dict[str, Any]]:
    """Count track events and distinct users per event name between two UTC dates."""
    return _rows(data_dir, "event_counts", {"start": start, "end": end, "event": event})
