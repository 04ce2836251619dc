"""A control-plane API on a fresh database, with a movable clock, for the API tests.

The database is a SQLite file in the test's tmp_path, or the server that
`HERALD_TEST_DATABASE_URL` names (as the PostgreSQL CI job sets). Every test bootstraps
its own account, and all data is scoped by account, so tests sharing one server database
do not see each other.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from api.main import create_app
from control.accounts import bootstrap_account
from control.clock import ManualClock
from control.db import ControlStore
from herald.config import HeraldSettings
from schemas.account import Role

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

PUSH_WHAT: dict[str, Any] = {
    "variants": [
        {
            "name": "A",
            "weight": 100,
            "message": {
                "channel": "push",
                "title": "Hello {{ profile.Name }}",
                "body": "Sale today",
            },
        }
    ],
    "defaults": {"Name": "there"},
}


def database_url(tmp_path: Path) -> str:
    return os.environ.get("HERALD_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'control.db'}"


def push_campaign(**overrides: Any) -> dict[str, Any]:
    """Return a valid push campaign body, one-time at START + 1 day unless overridden."""
    body: dict[str, Any] = {
        "name": "Spring sale",
        "channel": "push",
        "labels": [],
        "who": {"type": "all_users"},
        "what": copy.deepcopy(PUSH_WHAT),
        "when": {"type": "at", "at": "2026-03-03T08:00:00Z"},
    }
    body.update(overrides)
    return body


class ControlApi:
    """A test client of the control-plane API with one account and helpers to act in it."""

    def __init__(self, client: TestClient, store: ControlStore, clock: ManualClock) -> None:
        self.client = client
        self.store = store
        self.clock = clock
        with store.session() as session:
            _admin, self.admin = bootstrap_account(session, "Test shop", "admin@shop.test", START)

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def user(self, role: Role | str, email: str | None = None) -> str:
        """Create a user with `role` and return their token."""
        role = Role(role)
        email = email or f"{role.value}-{os.urandom(4).hex()}@shop.test"
        response = self.post("/users", self.admin, {"email": email, "role": role.value})
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    def set_workflow(self, enabled: bool) -> None:
        response = self.client.patch(
            "/account", json={"approval_workflow": enabled}, headers=self.headers(self.admin)
        )
        assert response.status_code == 200, response.text

    def get(self, path: str, token: str) -> Any:
        return self.client.get(path, headers=self.headers(token))

    def post(self, path: str, token: str, body: Any = None) -> Any:
        return self.client.post(path, json=body, headers=self.headers(token))

    def patch(self, path: str, token: str, body: Any) -> Any:
        return self.client.patch(path, json=body, headers=self.headers(token))

    def delete(self, path: str, token: str) -> Any:
        return self.client.delete(path, headers=self.headers(token))

    def create_campaign(self, token: str, **overrides: Any) -> dict[str, Any]:
        response = self.post("/campaigns", token, push_campaign(**overrides))
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


@pytest.fixture
def control_api(tmp_path: Path) -> Iterator[ControlApi]:
    """Return a `ControlApi` on a fresh account, with the clock at START."""
    yield from open_control_api(tmp_path, control_feed=False)


def open_control_api(tmp_path: Path, *, control_feed: bool) -> Iterator[ControlApi]:
    """Yield a `ControlApi` on a fresh account; with `control_feed`, changes queue feed
    records, which nothing publishes."""
    settings = HeraldSettings(control_db_url=database_url(tmp_path), control_feed=control_feed)
    app = create_app(settings)
    clock = ManualClock(START)
    app.state.clock = clock
    # The client is not entered as a context manager, so the app's lifespan (which
    # connects to Kafka for ingest) does not run; the control plane does not need it.
    client = TestClient(app)
    api = ControlApi(client, app.state.control_store, clock)
    yield api
    client.close()
    app.state.control_store.close()
