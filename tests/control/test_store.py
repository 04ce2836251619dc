from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import inspect, select

from control.accounts import authenticate, bootstrap_account
from control.db import ControlStore
from control.identity import hash_token
from control.labels import create_labels, delete_label
from control.models import ApiToken, FeedOutbox, User
from domain.errors import AuthenticationFailed
from tests.api.control_support import database_url

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ControlStore]:
    opened = ControlStore.open(database_url(tmp_path))
    yield opened
    opened.close()


def test_migrations_create_tables(store: ControlStore) -> None:
    tables = set(inspect(store.engine).get_table_names())

    assert {
        "accounts",
        "users",
        "api_tokens",
        "labels",
        "campaigns",
        "audit_log",
        "feed_outbox",
    } <= tables
    assert "alembic_version" in tables


def test_migrate_twice_is_noop(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    ControlStore.open(url).close()

    again = ControlStore.open(url)

    assert "campaigns" in inspect(again.engine).get_table_names()
    again.close()


def test_token_stored_hashed(store: ControlStore) -> None:
    with store.session() as session:
        admin, token = bootstrap_account(session, "Shop", "a@shop.test", NOW)
        stored = session.scalars(
            select(ApiToken.token_hash).where(ApiToken.user_id == admin.id)
        ).all()

    assert token.startswith("hrd_")
    assert len(token) > 40
    assert stored == [hash_token(token)]
    assert token not in stored


def test_authenticate(store: ControlStore) -> None:
    with store.session() as session:
        admin, token = bootstrap_account(session, "Shop", "a@shop.test", NOW)

        assert authenticate(session, token).id == admin.id
        with pytest.raises(AuthenticationFailed):
            authenticate(session, token + "x")


def test_outbox_order_and_tombstone(store: ControlStore) -> None:
    with store.session() as session:
        admin, _token = bootstrap_account(session, "Shop", "a@shop.test", NOW)
        actor = session.get(User, admin.id)
        assert actor is not None
        created, _rejected = create_labels(session, actor, ["One", "Two"], NOW)
        delete_label(session, actor, created[0].id, NOW)
        keys = [label.id for label in created]
        query = select(FeedOutbox).where(FeedOutbox.key.in_(keys)).order_by(FeedOutbox.id)
        rows = session.scalars(query).all()

    assert [row.key for row in rows] == [created[0].id, created[1].id, created[0].id]
    assert orjson.loads(rows[0].value or "null")["definition"]["name"] == "One"
    assert orjson.loads(rows[0].value or "null")["kind"] == "label"
    assert rows[2].value is None


def test_outbox_skipped_without_feed(tmp_path: Path) -> None:
    store = ControlStore.open(database_url(tmp_path), feed_enabled=False)
    with store.session() as session:
        admin, _token = bootstrap_account(session, "Shop", "a@shop.test", NOW)
        actor = session.get(User, admin.id)
        assert actor is not None
        created, _rejected = create_labels(session, actor, ["One"], NOW)
        query = select(FeedOutbox).where(FeedOutbox.key == created[0].id)

        assert session.scalars(query).all() == []
    store.close()
