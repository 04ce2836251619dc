"""The landed layout: Parquet schema, file names and the conversion of envelopes to rows.

`data/events/date=YYYY-MM-DD/part-<partition>-<first offset>-<last offset>.parquet` contains
the events of the Kafka records `first..last` of one partition whose timestamp falls on
that UTC date. One flush of a partition writes one file per date it touches, all named by
the same offset range, so a flush that is repeated after a crash replaces its own files.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from schemas.wire import JSON_FIELDS, STRING_FIELDS

__all__ = [
    "EVENTS_SCHEMA",
    "JSON_FIELDS",
    "STRING_FIELDS",
    "LandedFile",
    "LandedRow",
    "event_tables_by_date",
    "events_dir",
    "landed_files",
    "landed_files_in",
    "profiles_dir",
]

EVENTS_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("name", pa.string()),
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("group_id", pa.string()),
        ("previous_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("properties", pa.string()),
        ("traits", pa.string()),
        ("context", pa.string()),
        ("campaign_id", pa.string()),
        ("variant", pa.string()),
        ("channel", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("_kafka_partition", pa.int32()),
        ("_kafka_offset", pa.int64()),
        ("_kafka_index", pa.int32()),
    ]
)

_FILE_NAME = re.compile(r"^part-(\d+)-(\d+)-(\d+)\.parquet$")


def events_dir(data_dir: Path) -> Path:
    return data_dir / "events"


def profiles_dir(data_dir: Path) -> Path:
    return data_dir / "profiles"


@dataclass(frozen=True, slots=True)
class LandedRow:
    """An envelope with its Kafka position: partition, record offset, index in the record."""

    envelope: dict[str, Any]
    offset: int
    index: int


@dataclass(frozen=True, slots=True)
class LandedFile:
    path: Path
    partition: int
    first_offset: int
    last_offset: int

    @staticmethod
    def file_name(partition: int, first_offset: int, last_offset: int) -> str:
        return f"part-{partition}-{first_offset}-{last_offset}.parquet"


def landed_files(data_dir: Path, partition: int) -> list[LandedFile]:
    """List the landed event files of one partition, in no particular order."""
    return _parsed(events_dir(data_dir).glob(f"date=*/part-{partition}-*.parquet"), partition)


def landed_files_in(directory: Path, partition: int) -> list[LandedFile]:
    """List the landed event files of one partition in one date directory."""
    return _parsed(directory.glob(f"part-{partition}-*.parquet"), partition)


def _parsed(paths: Iterable[Path], partition: int) -> list[LandedFile]:
    found = []
    for path in paths:
        match = _FILE_NAME.match(path.name)
        if match and int(match.group(1)) == partition:
            found.append(LandedFile(path, partition, int(match.group(2)), int(match.group(3))))
    return found


def event_tables_by_date(rows: Iterable[LandedRow], partition: int) -> dict[str, pa.Table]:
    """Group rows by the UTC date of their timestamp and build one Arrow table per date."""
    by_date: dict[str, list[LandedRow]] = defaultdict(list)
    for row in rows:
        # Timestamps are normalised to `YYYY-MM-DDT…Z` at ingest, so the date is a prefix.
        by_date[row.envelope["timestamp"][:10]].append(row)
    return {date: _events_table(group, partition) for date, group in by_date.items()}


def _events_table(rows: list[LandedRow], partition: int) -> pa.Table:
    envelopes = [row.envelope for row in rows]
    columns: dict[str, pa.Array] = {
        name: pa.array([e.get(name) for e in envelopes], pa.string()) for name in STRING_FIELDS
    }
    for name in ("timestamp", "received_at"):
        texts = pa.array([e.get(name) for e in envelopes], pa.string())
        columns[name] = texts.cast(pa.timestamp("us", tz="UTC"))
    for name in JSON_FIELDS:
        columns[name] = pa.array(
            [orjson.dumps(e.get(name) or {}).decode() for e in envelopes], pa.string()
        )
    columns["labels"] = pa.array([e.get("labels") for e in envelopes], pa.list_(pa.string()))
    columns["_kafka_partition"] = pa.array([partition] * len(rows), pa.int32())
    columns["_kafka_offset"] = pa.array([row.offset for row in rows], pa.int64())
    columns["_kafka_index"] = pa.array([row.index for row in rows], pa.int32())
    return pa.table([columns[field.name] for field in EVENTS_SCHEMA], schema=EVENTS_SCHEMA)
