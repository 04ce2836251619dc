"""Anniversaries of a date trait, the audience of a date-property campaign's daily run."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from domain.profiles import apply_event, new_profile
from queries.catalog import connect
from queries.reports import date_property_members
from sinks.files import write_parquet_atomically
from streams.profiles import _profiles_table

BIRTHDAYS = {
    "may": "1990-05-17",
    "may-timestamp": "1985-05-17T00:00:00Z",
    "future": "2030-05-17",
    "leap": "2000-02-29",
    "garbled": "soon",
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    profiles = []
    for user, birthday in BIRTHDAYS.items():
        identify = {
            "type": "identify",
            "user_id": user,
            "anonymous_id": None,
            "timestamp": "2024-01-01T00:00:00.000000Z",
            "traits": {"DOB": birthday},
        }
        profiles.append(apply_event(new_profile(identify, 0), identify))
    write_parquet_atomically(_profiles_table(profiles), tmp_path / "profiles" / "part-0.parquet")
    return tmp_path


@pytest.mark.parametrize(
    ("target", "members"),
    [
        (date(2024, 5, 17), ["may", "may-timestamp"]),
        (date(2024, 5, 16), []),
        (date(2030, 5, 17), ["future", "may", "may-timestamp"]),
        (date(2023, 2, 28), ["leap"]),
        (date(2024, 2, 28), []),
        (date(2024, 2, 29), ["leap"]),
    ],
)
def test_anniversary_on_target(data_dir: Path, target: date, members: list[str]) -> None:
    with connect(data_dir) as connection:
        assert date_property_members(connection, "DOB", target) == members
