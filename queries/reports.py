"""Named report queries over the analyst views; each reads its SQL from a file beside it."""

from __future__ import annotations

from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from queries.catalog import connect

__all__ = ["event_counts"]


@cache
def _sql(name: str) -> str:
    return resources.files("queries").joinpath(f"{name}.sql").read_text()


def event_counts(data_dir: Path, start: date, end: date, event: str | None) -> list[dict[str, Any]]:
    """Count track events and distinct users per event name between two UTC dates."""
    with connect(data_dir) as connection:
        cursor = connection.execute(
            _sql("event_counts"), {"start": start, "end": end, "event": event}
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
