"""The ecom-csv reader on the project's reference dataset, checked against the csv module."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from herald.replay import read_ecom_csv
from herald.replay.readers import ECOM_TRAITS

DATASET = Path(__file__).parents[2] / "examples" / "data" / "ecom.csv.gz"


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with gzip.open(DATASET, "rt", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def messages() -> list[dict]:
    return list(read_ecom_csv(DATASET))


def _expected_identify_rows(rows: list[dict[str, str]]) -> set[int]:
    """Row indexes that need an identify: each user's first row and each change of traits.

    Rows of one user are in time order in the file, so file order is the user's order.
    """
    previous: dict[str, tuple[str, ...]] = {}
    expected = set()
    for index, row in enumerate(rows):
        traits = tuple(row[t] for t in ECOM_TRAITS)
        if previous.get(row["user_id"]) != traits:
            expected.add(index)
        previous[row["user_id"]] = traits
    return expected


def test_dataset_every_row_is_one_track(rows, messages):
    tracks = [m for m in messages if m["type"] == "track"]

    assert len(rows) == 31_106
    assert len(tracks) == 31_106
    assert {t["messageId"] for t in tracks} == {f"ecom-{i}-track" for i in range(31_106)}


def test_dataset_total_known_up_front(messages):
    assert read_ecom_csv(DATASET).total == len(messages)


def test_dataset_message_ids_unique(messages):
    counts = Counter(m["messageId"] for m in messages)

    assert counts.most_common(1)[0][1] == 1


def test_dataset_identifies_match_trait_changes(rows, messages):
    identified = {int(m["messageId"].split("-")[1]) for m in messages if m["type"] == "identify"}

    assert identified == _expected_identify_rows(rows)


def test_dataset_first_identify_per_user(messages):
    seen: set[str] = set()
    for message in messages:
        user = message["userId"]
        if user not in seen:
            assert message["type"] == "identify", message["messageId"]
            assert message["traits"]["email"] == f"{user}@example.com"
            seen.add(user)

    assert len(seen) == 600


def test_dataset_identify_right_before_its_track(messages):
    for index, message in enumerate(messages):
        if message["type"] == "identify":
            following = messages[index + 1]
            row = message["messageId"].removesuffix("-identify")
            assert following["messageId"] == f"{row}-track"
            assert following["timestamp"] == message["timestamp"]


def test_dataset_sent_in_time_order(messages):
    times = [datetime.fromisoformat(m["timestamp"]) for m in messages]

    assert all(t.tzinfo == UTC for t in times)
    assert times == sorted(times)


def test_dataset_equal_times_keep_file_order(messages):
    tracks = [m for m in messages if m["type"] == "track"]
    rows_by_time: dict[str, list[int]] = {}
    for track in tracks:
        row = int(track["messageId"].split("-")[1])
        rows_by_time.setdefault(track["timestamp"], []).append(row)

    assert all(rows == sorted(rows) for rows in rows_by_time.values())


def test_dataset_duplicate_rows_kept(rows, messages):
    duplicates = sum(n - 1 for n in Counter(tuple(r.values()) for r in rows).values())
    track_keys = Counter(
        (m["userId"], m["event"], m["timestamp"], m["properties"]["session_id"])
        for m in messages
        if m["type"] == "track"
    )

    assert duplicates == 30
    assert sum(n - 1 for n in track_keys.values()) == 30


def test_dataset_track_matches_its_row(rows, messages):
    for message in messages:
        if message["type"] != "track":
            continue
        row = rows[int(message["messageId"].split("-")[1])]
        assert message["userId"] == row["user_id"]
        assert message["event"] == row["event"]
        assert message["timestamp"] == row["timestamp"].replace(" ", "T") + "+00:00"
        assert message["properties"] == {
            "session_id": row["session_id"],
            "platform": row["platform"],
        }
