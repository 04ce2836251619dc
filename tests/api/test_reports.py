"""Reports read from landed Parquet through the API, with a user token."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.main import create_app
from control.accounts import bootstrap_account
from herald.config import HeraldSettings, LandingSettings
from schemas.envelope import EventLimits
from schemas.segment import envelope_from_segment
from sinks.files import write_parquet_atomically
from sinks.parquet import LandedRow, event_tables_by_date
from tests.api.control_support import START, database_url

RECEIVED = datetime(2024, 6, 1, tzinfo=UTC)


def _land(data_dir: Path) -> None:
    messages = [
        ("u1", "home", "2024-03-13T10:00:00Z"),
        ("u1", "home", "2024-03-13T11:00:00Z"),
        ("u2", "home", "2024-03-14T10:00:00Z"),
        ("u2", "purchase", "2024-03-14T10:05:00Z"),
        ("u3", "home", "2024-03-20T10:00:00Z"),
    ]
    rows = [
        LandedRow(
            envelope_from_segment(
                {
                    "type": "track",
                    "userId": user,
                    "event": event,
                    "timestamp": at,
                    "messageId": f"m{n}",
                },
                RECEIVED,
                EventLimits(),
            ),
            n,
            0,
        )
        for n, (user, event, at) in enumerate(messages)
    ]
    for date, table in event_tables_by_date(rows, 0).items():
        write_parquet_atomically(table, data_dir / "events" / f"date={date}" / "part-0-0-4.parquet")


@pytest.fixture
def reports(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    _land(tmp_path / "data")
    settings = HeraldSettings(
        control_db_url=database_url(tmp_path),
        control_feed=False,
        landing=LandingSettings(data_dir=tmp_path / "data"),
    )
    app = create_app(settings)
    with app.state.control_store.session() as session:
        _admin, token = bootstrap_account(session, "Shop", "admin@shop.test", START)
    client = TestClient(app)
    yield client, {"Authorization": f"Bearer {token}"}
    client.close()
    app.state.control_store.close()


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
