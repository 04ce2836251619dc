"""Reports read from landed Parquet through the API, with a user token."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from control.accounts import bootstrap_account
from schemas.envelope import EventLimits
from schemas.segment import envelope_from_segment
from sinks.files import write_parquet_atomically
from sinks.parquet import LandedRow, event_tables_by_date
from tests.api.control_support import START, database_url, push_campaign
from tests.support.landed import api_over, land_tracks

_RECEIVED = datetime(2024, 6, 1, tzinfo=UTC)
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


def _land_outcomes(data_dir: Path, outcomes: list[tuple[str, str, str | None]]) -> None:
    """Land Notification events of (campaign id, user id, reason or None for a send)."""
    rows = []
    for n, (campaign_id, user, reason) in enumerate(outcomes):
        properties: dict[str, str] = {"send_id": f"s{n}"}
        if reason is not None:
            properties["reason"] = reason
        segment = {
            "type": "track",
            "userId": user,
            "event": "placeholder",
            "timestamp": "2024-03-13T10:00:00Z",
            "messageId": f"s{n}",
            "properties": properties,
        }
        envelope = envelope_from_segment(segment, _RECEIVED, EventLimits())
        # Only the engine may write these names; the API rejects them.
        envelope["event"] = "Notification Sent" if reason is None else "Notification Not Sent"
        envelope["campaign_id"] = campaign_id
        envelope["channel"] = "push"
        rows.append(LandedRow(envelope, n, 1))
    for date, table in event_tables_by_date(rows, 1).items():
        write_parquet_atomically(table, data_dir / "events" / f"date={date}" / "part-1-0.parquet")


def test_deliveries_only_of_own_campaigns(
    tmp_path: Path, reports: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = reports
    created = client.post("/campaigns", json=push_campaign(), headers=headers)
    own = created.json()["id"]
    # The other campaign belongs to another account of the same deployment.
    with client.app.state.control_store.session() as session:
        _admin, other_token = bootstrap_account(session, "Other", "admin@other.test", START)
    other = client.post(
        "/campaigns", json=push_campaign(), headers={"Authorization": f"Bearer {other_token}"}
    ).json()["id"]
    _land_outcomes(
        tmp_path / "data",
        [(own, "u1", None), (own, "u2", "unsubscribed"), (other, "u3", None), (other, "u4", None)],
    )
    params = {"start": "2024-03-13", "end": "2024-03-13"}

    response = client.get("/reports/deliveries", params=params, headers=headers)
    foreign = client.get(
        "/reports/deliveries", params={**params, "campaign_id": other}, headers=headers
    )

    assert response.status_code == 200
    assert response.json() == [
        {"campaign_id": own, "outcome": "sent", "reason": None, "messages": 1, "users": 1},
        {
            "campaign_id": own,
            "outcome": "not_sent",
            "reason": "unsubscribed",
            "messages": 1,
            "users": 1,
        },
    ]
    assert foreign.status_code == 404
