from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from queries.catalog import connect
from sinks.files import TEMP_PREFIX, write_parquet_atomically
from sinks.parquet import (
    EVENTS_SCHEMA,
    LandedFile,
    LandedRow,
    event_tables_by_date,
    events_dir,
    landed_files,
    profiles_dir,
)
from tests.sinks.conftest import Event


def _rows(envelopes: list[dict], first_offset: int = 0) -> list[LandedRow]:
    return [LandedRow(e, first_offset + i, 0) for i, e in enumerate(envelopes)]


def _touch(data_dir: Path, date: str, name: str) -> Path:
    path = events_dir(data_dir) / f"date={date}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_layout_dirs(tmp_path: Path) -> None:
    assert events_dir(tmp_path) == tmp_path / "events"
    assert profiles_dir(tmp_path) == tmp_path / "profiles"


def test_file_name() -> None:
    assert LandedFile.file_name(3, 120, 4999) == "part-3-120-4999.parquet"


def test_tables_split_by_utc_date(event: Event) -> None:
    late = event(message_id="late", timestamp="2024-03-13T23:59:59.999999Z")
    # 01:30 at +02:00 on the 14th is still the 13th in UTC.
    offset = event(message_id="offset", timestamp="2024-03-14T01:30:00+02:00")
    early = event(message_id="early", timestamp="2024-03-14T00:00:00Z")

    tables = event_tables_by_date(_rows([late, offset, early]), partition=2)

    assert sorted(tables) == ["2024-03-13", "2024-03-14"]
    assert tables["2024-03-13"].column("message_id").to_pylist() == ["late", "offset"]
    assert tables["2024-03-14"].column("message_id").to_pylist() == ["early"]


def test_tables_empty() -> None:
    assert event_tables_by_date([], partition=0) == {}


def test_table_schema(event: Event) -> None:
    tables = event_tables_by_date(_rows([event(), event()]), partition=1)

    assert tables["2024-03-13"].schema.equals(EVENTS_SCHEMA)
    assert tables["2024-03-13"].num_rows == 2


def test_table_values(event: Event) -> None:
    envelope = event(
        "u-7",
        message_id="m-7",
        timestamp="2024-03-13T10:21:14.123456Z",
        received_at=datetime(2024, 3, 13, 10, 21, 15, tzinfo=UTC),
        anonymousId="a-7",
    )

    [row] = event_tables_by_date([LandedRow(envelope, 41, 3)], partition=5)[
        "2024-03-13"
    ].to_pylist()

    assert row["message_id"] == "m-7"
    assert row["type"] == "track"
    assert row["event"] == "Product Viewed"
    assert row["name"] is None
    assert row["user_id"] == "u-7"
    assert row["anonymous_id"] == "a-7"
    assert row["timestamp"] == datetime(2024, 3, 13, 10, 21, 14, 123456, tzinfo=UTC)
    assert row["received_at"] == datetime(2024, 3, 13, 10, 21, 15, tzinfo=UTC)
    assert row["_kafka_partition"] == 5
    assert row["_kafka_offset"] == 41
    assert row["_kafka_index"] == 3


def test_table_json_round_trip(event: Event) -> None:
    properties = {
        "price": 9.5,
        "items": [{"sku": "A1", "qty": 2}],
        "note": 'Grüße, "quoted" \\ 日本',
        "gift": None,
        "ok": True,
    }
    context = {"timezone": "Europe/Berlin", "device": {"type": "ios"}}
    envelope = event(properties=properties, context=context, traits={"plan": "pro"})

    [row] = event_tables_by_date(_rows([envelope]), partition=0)["2024-03-13"].to_pylist()

    assert orjson.loads(row["properties"]) == properties
    assert orjson.loads(row["context"]) == context
    assert orjson.loads(row["traits"]) == {"plan": "pro"}


def test_table_json_missing_is_empty(event: Event) -> None:
    envelope = event()
    envelope["traits"] = None
    del envelope["context"]

    [row] = event_tables_by_date(_rows([envelope]), partition=0)["2024-03-13"].to_pylist()

    assert row["traits"] == "{}"
    assert row["context"] == "{}"


def test_table_labels(event: Event) -> None:
    tagged = event(message_id="tagged") | {
        "campaign_id": "c-1",
        "variant": "B",
        "channel": "email",
        "labels": ["Spring Sale", "Re:engage"],
    }
    empty = event(message_id="empty") | {"labels": []}
    plain = event(message_id="plain")

    table = event_tables_by_date(_rows([tagged, empty, plain]), partition=0)["2024-03-13"]

    assert table.column("labels").to_pylist() == [["Spring Sale", "Re:engage"], [], None]
    assert table.column("campaign_id").to_pylist() == ["c-1", None, None]
    assert table.column("variant").to_pylist() == ["B", None, None]
    assert table.column("channel").to_pylist() == ["email", None, None]


def test_table_duckdb_view(tmp_path: Path, event: Event) -> None:
    envelope = event(
        message_id="m-1",
        properties={"platform": "ios", "amount": 12},
    ) | {"labels": ["Sale"]}
    tables = event_tables_by_date([LandedRow(envelope, 7, 0)], partition=1)
    for date, table in tables.items():
        write_parquet_atomically(
            table, events_dir(tmp_path) / f"date={date}" / "part-1-7-7.parquet"
        )

    with connect(tmp_path) as connection:
        row = connection.execute(
            "SELECT message_id, properties->>'platform', properties->>'amount', labels, "
            "CAST(date AS VARCHAR), _kafka_partition, _kafka_offset FROM events"
        ).fetchall()

    assert row == [("m-1", "ios", "12", ["Sale"], "2024-03-13", 1, 7)]


def test_landed_files_parsed(tmp_path: Path) -> None:
    _touch(tmp_path, "2024-03-13", "part-1-0-99.parquet")
    _touch(tmp_path, "2024-03-14", "part-1-100-250.parquet")

    found = sorted(landed_files(tmp_path, 1), key=lambda f: f.first_offset)

    assert found == [
        LandedFile(events_dir(tmp_path) / "date=2024-03-13" / "part-1-0-99.parquet", 1, 0, 99),
        LandedFile(
            events_dir(tmp_path) / "date=2024-03-14" / "part-1-100-250.parquet", 1, 100, 250
        ),
    ]


def test_landed_files_partition_prefix(tmp_path: Path) -> None:
    _touch(tmp_path, "2024-03-13", "part-1-5-9.parquet")
    _touch(tmp_path, "2024-03-13", "part-10-5-9.parquet")
    _touch(tmp_path, "2024-03-13", "part-11-0-4.parquet")

    assert [f.path.name for f in landed_files(tmp_path, 1)] == ["part-1-5-9.parquet"]
    assert [f.path.name for f in landed_files(tmp_path, 10)] == ["part-10-5-9.parquet"]
    assert landed_files(tmp_path, 0) == []


def test_landed_files_ignores_others(tmp_path: Path) -> None:
    _touch(tmp_path, "2024-03-13", "part-2-0-9.parquet")
    _touch(tmp_path, "2024-03-13", f"{TEMP_PREFIX}part-2-10-19.parquet.tmp")
    _touch(tmp_path, "2024-03-13", "part-2-x-19.parquet")
    _touch(tmp_path, "2024-03-13", "part-2-10-19.parquet.bak")
    _touch(tmp_path, "2024-03-13", "part-2-10.parquet")
    (events_dir(tmp_path) / "part-2-20-29.parquet").write_bytes(b"")
    other = tmp_path / "elsewhere" / "date=2024-03-13"
    other.mkdir(parents=True)
    (other / "part-2-30-39.parquet").write_bytes(b"")

    assert [f.path.name for f in landed_files(tmp_path, 2)] == ["part-2-0-9.parquet"]


def test_landed_files_no_dir(tmp_path: Path) -> None:
    assert landed_files(tmp_path, 0) == []


def _table(rows: int, tag: str = "x") -> pa.Table:
    return pa.table({"n": pa.array(range(rows), pa.int64()), "tag": pa.array([tag] * rows)})


def test_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "events" / "date=2024-03-13" / "part-0-0-9.parquet"

    write_parquet_atomically(_table(10), path)

    assert pq.read_table(path).equals(_table(10))
    assert [p.name for p in path.parent.iterdir()] == ["part-0-0-9.parquet"]


def test_atomic_write_compression(tmp_path: Path) -> None:
    zstd = tmp_path / "zstd.parquet"
    snappy = tmp_path / "snappy.parquet"

    write_parquet_atomically(_table(10), zstd)
    write_parquet_atomically(_table(10), snappy, compression="snappy")

    assert pq.ParquetFile(zstd).metadata.row_group(0).column(0).compression == "ZSTD"
    assert pq.ParquetFile(snappy).metadata.row_group(0).column(0).compression == "SNAPPY"


def test_atomic_write_replaces(tmp_path: Path) -> None:
    path = tmp_path / "part-0-0-9.parquet"
    write_parquet_atomically(_table(10, "first"), path)

    write_parquet_atomically(_table(3, "second"), path)

    assert pq.read_table(path).column("tag").to_pylist() == ["second"] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["part-0-0-9.parquet"]


def test_atomic_write_failure_leaves_old(tmp_path: Path) -> None:
    path = tmp_path / "part-0-0-9.parquet"
    write_parquet_atomically(_table(10, "first"), path)

    with pytest.raises(pa.ArrowException):
        write_parquet_atomically(_table(10), path, compression="no-such-codec")

    assert pq.read_table(path).column("tag").to_pylist() == ["first"] * 10


def test_temp_files_not_read(tmp_path: Path) -> None:
    directory = tmp_path / "date=2024-03-13"
    write_parquet_atomically(_table(10), directory / "part-0-0-9.parquet")
    # What a crash in the middle of a write leaves behind: a file without a footer.
    (directory / f"{TEMP_PREFIX}part-0-10-19.parquet.tmp").write_bytes(b"PAR1 truncated")

    with duckdb.connect() as connection:
        count = connection.execute(
            "SELECT count(*) FROM read_parquet($glob)", {"glob": f"{tmp_path}/date=*/*.parquet"}
        ).fetchall()

    assert count == [(10,)]


def test_readers_see_whole_files(tmp_path: Path) -> None:
    rows = 200_000
    directory = tmp_path / "date=2024-03-13"
    write_parquet_atomically(_table(rows), directory / "part-0-0-0.parquet")
    stop = threading.Event()
    errors: list[BaseException] = []

    def rewrite() -> None:
        try:
            while not stop.is_set():
                for name in ("part-0-0-0.parquet", "part-0-1-1.parquet"):
                    write_parquet_atomically(_table(rows), directory / name)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    writer = threading.Thread(target=rewrite)
    writer.start()
    counts = set()
    try:
        with duckdb.connect() as connection:
            for _ in range(40):
                [(count,)] = connection.execute(
                    "SELECT count(*) FROM read_parquet($glob)",
                    {"glob": f"{tmp_path}/date=*/*.parquet"},
                ).fetchall()
                counts.add(count)
    finally:
        stop.set()
        writer.join()

    assert errors == []
    assert counts <= {rows, 2 * rows}
    assert [p.name for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX)] == []
