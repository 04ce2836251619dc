"""Reports read from landed Parquet through the API, with a user token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.api.control_support import START, database_url
from tests.support.landed import api_over, land_tracks

TRACKS = [
    ("u1", "home", "2024-03-13T10:00:00Z"),
    ("u1", "home", "2024-03-13T11:00:00Z"),
    ("u2", "home", "2024-03-14T10:00:00Z"),
    ("u2", "purchase", "2024-03-14T10:05:00Z"),
    ("u3", "home", "2024-03-20T10:00:00Z"),
]


@pytest.fixture
def reports(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    land_tracks(tmp_path / "data", TRACKS)
    with api_over(tmp_path, database_url(tmp_path), START) as client_and_headers:
        yield client_and_headers


def test_event_counts_by_name(reports: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = reports
    response = client.get(
        "/reports/events", params={"start": "2024-03-13", "end": "2024-03-14"}, headers=headers
    )
    assert response.status_code == 200
    assert response.json() == [
        {"event": "home", "events": 3, "users": 2},
        {"event": "purchase", "events": 1, "users": 1},
    ]


def test_event_counts_one_name(reports: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = reports
    params = {"start": "2024-03-01", "end": "2024-03-31", "event": "home"}
    response = client.get("/reports/events", params=params, headers=headers)
    assert response.json() == [{"event": "home", "events": 4, "users": 3}]


def test_event_counts_checks_dates(reports: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = reports
    response = client.get(
        "/reports/events", params={"start": "2024-03-14", "end": "2024-03-13"}, headers=headers
    )
    assert response.status_code == 422
    assert (
        response.json()["detail"]
        == "end 2024-03-13 is before start 2024-03-14; give end on or after start"
    )


def test_event_counts_needs_token(reports: tuple[TestClient, dict[str, str]]) -> None:
    client, _headers = reports
    response = client.get("/reports/events", params={"start": "2024-03-13", "end": "2024-03-14"})
    assert response.status_code == 401
