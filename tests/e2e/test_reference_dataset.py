"""The reference dataset replayed through the real API, broker and worker into Parquet."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from tests.support.stack import WRITE_KEY, HeraldStack

pytestmark = pytest.mark.kafka

DATASET = Path(__file__).resolve().parents[2] / "examples" / "data" / "ecom.csv.gz"
DATASET_ROWS = 31_106


def _csv_events() -> Counter[tuple[str, str, str]]:
    frame = pl.read_csv(DATASET, try_parse_dates=False)
    times = frame["timestamp"].str.to_datetime("%Y-%m-%d %H:%M:%S", time_zone="UTC")
    return Counter(zip(frame["user_id"], frame["event"], times.dt.strftime("%Y-%m-%dT%H:%M:%S")))


def _landed_tracks(stack: HeraldStack) -> Counter[tuple[str, str, str]]:
    rows = stack.query(
        "SELECT user_id, event, strftime(timestamp AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S') FROM tracks"
    )
    return Counter(rows)


def _replay(stack: HeraldStack) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "herald.cli",
            "replay",
            str(DATASET),
            "--format",
            "ecom-csv",
            "--host",
            stack.url,
            "--write-key",
            WRITE_KEY,
        ],
        cwd=stack.root,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _finish(replay: subprocess.Popen[bytes]) -> str:
    output, _ = replay.communicate(timeout=600)
    text = output.decode(errors="replace")
    assert replay.returncode == 0, text[-3000:]
    return text


def _wait_for_tracks(stack: HeraldStack, count: int, timeout_s: float = 180) -> int:
    deadline = time.monotonic() + timeout_s
    landed = -1
    while time.monotonic() < deadline:
        landed = stack.query("SELECT count(*) FROM tracks")[0][0]
        if landed >= count:
            break
        time.sleep(0.5)
    # A little longer, so that a duplicate written late would be seen.
    time.sleep(2)
    return stack.query("SELECT count(*) FROM tracks")[0][0]


def _assert_files_disjoint(stack: HeraldStack) -> None:
    """No two files of one partition hold overlapping offset ranges of one date."""
    from sinks.parquet import landed_files

    for partition in range(stack.kafka.partitions):
        ranges: dict[str, list[tuple[int, int]]] = {}
        for landed in landed_files(stack.data_dir, partition):
            ranges.setdefault(landed.path.parent.name, []).append(
                (landed.first_offset, landed.last_offset)
            )
        for date, spans in ranges.items():
            spans.sort()
            for (_, last), (first, _) in zip(spans, spans[1:]):
                assert first > last, f"overlapping files in partition {partition}, {date}: {spans}"


def test_replay_lands_every_row(herald_stack) -> None:  # type: ignore[no-untyped-def]
    stack = herald_stack()
    stack.start_worker()
    stack.start_api()
    output = _finish(_replay(stack))
    assert "rejected: 0" in output, output[-2000:]
    assert "failed:   0" in output, output[-2000:]

    assert _wait_for_tracks(stack, DATASET_ROWS) == DATASET_ROWS, stack.log("worker.log")
    assert _landed_tracks(stack) == _csv_events()
    assert stack.query("SELECT count(DISTINCT message_id) FROM tracks") == [(DATASET_ROWS,)]
    users = stack.query(
        "SELECT count(*) FROM profiles WHERE traits->>'email' LIKE 'user_%@example.com'"
    )
    assert users == [(600,)]


def test_worker_killed_mid_replay_lands_once(herald_stack) -> None:  # type: ignore[no-untyped-def]
    # Small flushes make many files, so the kill is likely to fall between two of them.
    stack = herald_stack(HERALD_LANDING__FLUSH_RECORDS="20")
    stack.start_worker()
    stack.start_api()
    replay = _replay(stack)
    deadline = time.monotonic() + 120
    while stack.query("SELECT count(*) FROM events")[0][0] < 5000 and time.monotonic() < deadline:
        time.sleep(0.1)
    stack.kill_worker()
    killed_at = stack.query("SELECT count(*) FROM events")[0][0]
    assert 0 < killed_at, stack.log("worker.log")
    stack.start_worker()
    _finish(replay)

    assert _wait_for_tracks(stack, DATASET_ROWS) == DATASET_ROWS, stack.log("worker.log")
    assert _landed_tracks(stack) == _csv_events()
    duplicates = stack.query("SELECT message_id FROM events GROUP BY 1 HAVING count(*) > 1 LIMIT 5")
    assert duplicates == []
    _assert_files_disjoint(stack)
