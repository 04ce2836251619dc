"""The analyst views over landed Parquet, from DuckDB, a DuckDB shell script and polars."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from queries.catalog import connect, quote_literal, view_statements
from schemas.envelope import EventLimits
from schemas.segment import envelope_from_segment
from sinks.files import write_parquet_atomically
from sinks.parquet import LandedRow, event_tables_by_date

RECEIVED = datetime(2024, 6, 1, tzinfo=UTC)


def _land(data_dir: Path, messages: list[dict[str, object]], partition: int = 0) -> None:
    rows = [
        LandedRow(envelope_from_segment(message, RECEIVED, EventLimits()), offset, 0)
        for offset, message in enumerate(messages)
    ]
    for date, table in event_tables_by_date(rows, partition).items():
        write_parquet_atomically(
            table,
            data_dir / "events" / f"date={date}" / f"part-{partition}-0-{len(rows) - 1}.parquet",
        )


def _messages() -> list[dict[str, object]]:
    return [
        {
            "type": "track",
            "userId": "u1",
            "event": "home",
            "messageId": "a",
            "timestamp": "2024-03-13T23:59:59+00:00",
            "properties": {"platform": "ios"},
        },
        {
            "type": "track",
            "userId": "u1",
            "event": "purchase",
            "messageId": "b",
            "timestamp": "2024-03-14T00:30:00+01:00",
        },
        {
            "type": "identify",
            "userId": "u1",
            "messageId": "c",
            "timestamp": "2024-03-14T02:00:00Z",
            "traits": {"plan": "pro"},
        },
    ]


def test_views_empty_data_dir(tmp_path: Path) -> None:
    with connect(tmp_path) as connection:
        assert connection.execute("SELECT count(*) FROM events").fetchall() == [(0,)]
        assert connection.execute("SELECT count(*) FROM profiles").fetchall() == [(0,)]
        columns = [row[0] for row in connection.execute("DESCRIBE events").fetchall()]
    assert columns[:4] == ["message_id", "type", "event", "name"]
    assert "date" in columns


def test_views_read_landed_events(tmp_path: Path) -> None:
    _land(tmp_path, _messages())
    with connect(tmp_path) as connection:
        rows = connection.execute(
            "SELECT event, date::VARCHAR, properties->>'platform' FROM tracks ORDER BY timestamp"
        ).fetchall()
        identify = connection.execute(
            "SELECT traits->>'plan' FROM events WHERE type = 'identify'"
        ).fetchall()
    # 00:30 at +01:00 is 23:30 UTC on the day before.
    assert rows == [("purchase", "2024-03-13", None), ("home", "2024-03-13", "ios")]
    assert identify == [("pro",)]


def test_view_statements_run_in_plain_duckdb(tmp_path: Path) -> None:
    _land(tmp_path, _messages())
    connection = duckdb.connect()
    # A shell has no registered empty tables, so the profiles view must not be needed here.
    statements = view_statements(tmp_path).split("CREATE OR REPLACE VIEW profiles")[0]
    connection.execute(statements)
    assert connection.execute("SELECT count(*) FROM tracks").fetchall() == [(2,)]


def test_quote_literal_doubles_quotes() -> None:
    assert quote_literal("it's") == "'it''s'"


def test_polars_reads_hive_layout(tmp_path: Path) -> None:
    _land(tmp_path, _messages())
    frame = pl.scan_parquet(
        str(tmp_path / "events" / "*" / "*.parquet"), hive_partitioning=True
    ).collect()
    assert frame.height == 3
    assert set(frame["date"].cast(pl.Utf8)) == {"2024-03-13", "2024-03-14"}


def test_sql_command_reports_bad_sql(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "herald.cli", "sql", "SELEC 1", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: Parser Error")


def test_sql_command_prints_csv(tmp_path: Path) -> None:
    _land(tmp_path, _messages())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "herald.cli",
            "sql",
            "SELECT event FROM tracks ORDER BY event",
            "--data-dir",
            str(tmp_path),
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "event\nhome\npurchase\n"


def test_sql_command_writes_lists_as_json_in_csv(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "herald.cli",
            "sql",
            "SELECT 'a' AS name, ['Onboarding', 'Tests'] AS labels, NULL::VARCHAR[] AS none",
            "--data-dir",
            str(tmp_path),
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'name,labels,none\na,"[""Onboarding"",""Tests""]",\n'
