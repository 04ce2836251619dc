"""Segment sizes, member exports and membership checks over landed Parquet."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from control.accounts import bootstrap_account
from control.models import Segment
from tests.api.control_support import START, database_url, push_campaign
from tests.queries.test_segment_sql import land, make_envelope
from tests.support.landed import api_over, land_tracks

BUYERS = {"type": "event", "event": "purchase", "window": {"type": "since_first_seen"}}


TRACKS = [
    ("u1", "purchase", "2024-03-13T10:00:00Z"),
    ("u2", "home", "2024-03-14T10:00:00Z"),
    ("u3", "purchase", "2024-03-20T10:00:00Z"),
    ("u4", "purchase", "2024-04-20T10:00:00Z"),
]


@pytest.fixture
def audience(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    land_tracks(tmp_path / "data", TRACKS)
    # The segment is judged at 2024-04-01, before u4's purchase.
    with api_over(tmp_path, database_url(tmp_path), datetime(2024, 4, 1, tzinfo=UTC)) as client:
        yield client


def _saved(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post(
        "/segments", json={"name": "Buyers", "definition": BUYERS}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_estimate_unsaved_definition(audience: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = audience
    response = client.post("/segments/estimate", json={"definition": BUYERS}, headers=headers)
    assert response.status_code == 200
    assert response.json()["size"] == 2


def test_saved_segment_size_and_export(audience: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = audience
    segment_id = _saved(client, headers)

    size = client.get(f"/segments/{segment_id}/size", headers=headers)
    export = client.get(f"/segments/{segment_id}/members", headers=headers)

    assert size.json()["size"] == 2
    assert export.headers["content-type"].startswith("text/csv")
    assert export.text == "user_id\nu1\nu3\n"


def test_membership_of_one_user(audience: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = audience
    segment_id = _saved(client, headers)

    member = client.get(f"/segments/{segment_id}/members/u1", headers=headers).json()
    later = client.get(f"/segments/{segment_id}/members/u4", headers=headers).json()

    assert member["member"] is True
    assert later["member"] is False


def test_membership_of_id_with_slash(tmp_path: Path) -> None:
    land_tracks(tmp_path / "data", [("shop/u5", "purchase", "2024-03-21T10:00:00Z")])
    with api_over(tmp_path, database_url(tmp_path), datetime(2024, 4, 1, tzinfo=UTC)) as audience:
        client, headers = audience
        segment_id = _saved(client, headers)

        response = client.get(f"/segments/{segment_id}/members/shop%2Fu5", headers=headers)

    assert response.status_code == 200
    assert response.json()["user_id"] == "shop/u5"
    assert response.json()["member"] is True


def test_membership_without_user_id(audience: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = audience
    segment_id = _saved(client, headers)

    response = client.get(f"/segments/{segment_id}/members/", headers=headers)

    assert response.status_code == 404
    assert response.json()["detail"] == "user '' not found"


def test_invalid_definition_rejected(audience: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = audience
    response = client.post(
        "/segments/estimate", json={"definition": {"country": "DE"}}, headers=headers
    )
    assert response.status_code == 422
    assert "invalid segment rule" in response.json()["detail"][0]["msg"]


def test_message_rules_name_only_own_campaigns(
    audience: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = audience
    own = client.post("/campaigns", json=push_campaign(), headers=headers).json()["id"]
    with client.app.state.control_store.session() as session:
        _admin, other_token = bootstrap_account(session, "Other", "admin@other.test", START)
    other_headers = {"Authorization": f"Bearer {other_token}"}
    sent_by = {"type": "message", "action": "sent", "window": {"type": "since_first_seen"}}

    foreign = client.post(
        "/segments/estimate",
        json={"definition": {**sent_by, "campaign_id": own}},
        headers=other_headers,
    )
    saved = client.post(
        "/segments",
        json={"name": "Theirs", "definition": {**sent_by, "campaign_id": own}},
        headers=other_headers,
    )
    inline = client.post(
        "/campaigns",
        json=push_campaign(
            who={"type": "inline_segment", "definition": {**sent_by, "campaign_id": own}}
        ),
        headers=other_headers,
    )
    mine = client.post(
        "/segments/estimate", json={"definition": {**sent_by, "campaign_id": own}}, headers=headers
    )

    for response in (foreign, saved, inline):
        assert response.status_code == 422, response.text
        assert f"campaign {own!r} does not exist" in response.text
    assert mine.status_code == 200


def test_notification_runs_cannot_be_filtered(
    audience: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = audience
    # A run id starts with its campaign's id, so this would pick out any account's campaign.
    by_run = {
        "type": "event",
        "event": "Notification Sent",
        "window": {"type": "since_first_seen"},
        "filters": [{"property": "run_id", "op": "contains", "value": "cmp_"}],
    }
    by_reason = {
        **by_run,
        "event": "Notification Not Sent",
        "filters": [{"property": "reason", "op": "eq", "value": "unsubscribed"}],
    }

    rejected = client.post("/segments/estimate", json={"definition": by_run}, headers=headers)
    allowed = client.post("/segments/estimate", json={"definition": by_reason}, headers=headers)

    assert rejected.status_code == 422
    assert rejected.json()["detail"][0]["loc"][-3:] == ["filters", 0, "property"]
    assert "cannot be filtered on run_id" in rejected.json()["detail"][0]["msg"]
    assert allowed.status_code == 200


def test_saved_segment_checked_when_used(audience: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = audience
    segment_id = _saved(client, headers)
    # As if saved before the check existed: the rule names a campaign of no account.
    sent_by = {
        "type": "message",
        "action": "sent",
        "campaign_id": "cmp_elsewhere",
        "window": {"type": "since_first_seen"},
    }
    with client.app.state.control_store.session() as session:
        session.get_one(Segment, segment_id).definition = sent_by
        session.commit()

    size = client.get(f"/segments/{segment_id}/size", headers=headers)
    members = client.get(f"/segments/{segment_id}/members", headers=headers)
    campaign = client.post(
        "/campaigns",
        json=push_campaign(who={"type": "saved_segment", "segment_id": segment_id}),
        headers=headers,
    )

    for response in (size, members, campaign):
        assert response.status_code == 422, response.text
        assert "campaign 'cmp_elsewhere' does not exist" in response.text


def test_label_rules_count_own_account_only(tmp_path: Path) -> None:
    now = datetime(2024, 4, 1, tzinfo=UTC)
    with api_over(tmp_path, database_url(tmp_path), now) as (client, headers):
        account_id = client.get("/account", headers=headers).json()["id"]
        land(
            tmp_path / "data",
            [
                make_envelope(
                    datetime(2024, 3, 30, tzinfo=UTC),
                    user_id=user,
                    event="Notification Sent",
                    labels=["Sale"],
                    properties={"account_id": owner},
                )
                for user, owner in [("u1", account_id), ("u2", "acc_other"), ("u3", account_id)]
            ],
        )
        definition = {
            "type": "message",
            "action": "sent",
            "label": "Sale",
            "window": {"type": "last_days", "days": 7},
        }
        estimate = client.post(
            "/segments/estimate", json={"definition": definition}, headers=headers
        )
        saved = client.post(
            "/segments", json={"name": "Sale", "definition": definition}, headers=headers
        ).json()
        members = client.get(f"/segments/{saved['id']}/members", headers=headers)
        other = client.get(f"/segments/{saved['id']}/members/u2", headers=headers)

    assert estimate.json()["size"] == 2
    assert members.text.split() == ["user_id", "u1", "u3"]
    assert other.json()["member"] is False
