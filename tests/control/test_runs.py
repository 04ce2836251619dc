"""Runs of scheduled campaigns as the scheduler records them, across daylight-saving changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from control.accounts import bootstrap_account
from control.campaign_actions import publish_campaign
from control.campaigns import create_campaign
from control.db import ControlStore
from control.models import AuditEntry, Campaign, User
from control.runs import (
    SCHEDULER_ACTOR,
    DueRun,
    begin_run,
    complete_ended,
    due_runs,
    end_run,
    start_triggered,
)
from schemas.campaign import CampaignApproval, CampaignCreate
from tests.api.control_support import database_url

PUBLISHED_AT = datetime(2024, 3, 8, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ControlStore]:
    opened = ControlStore.open(database_url(tmp_path), feed_enabled=False)
    yield opened
    opened.close()


def _publish(session: Session, when: dict[str, Any]) -> str:
    admin, _token = bootstrap_account(
        session, "Shop", "a@shop.test", PUBLISHED_AT, "America/New_York"
    )
    actor = session.get_one(User, admin.id)
    body = CampaignCreate.model_validate(
        {
            "name": "Digest",
            "channel": "email",
            "who": {"type": "all_users"},
            "what": {
                "variants": [
                    {
                        "name": "A",
                        "weight": 100,
                        "message": {
                            "channel": "email",
                            "subject": "News",
                            "sender": {"name": "Shop", "address": "news@shop.example"},
                            "html_body": "<p>News</p>",
                            "text_body": "News",
                        },
                    }
                ]
            },
            "when": when,
        }
    )
    campaign = create_campaign(session, actor, body, PUBLISHED_AT)
    publish_campaign(session, actor, campaign.id, CampaignApproval(), PUBLISHED_AT)
    return campaign.id


def _due(session: Session, now: datetime, campaign_id: str) -> list[DueRun]:
    # Only this test's campaign: on PostgreSQL the tests share one database.
    return [run for run in due_runs(session, now) if run.campaign_id == campaign_id]


def _run_once(session: Session, now: datetime, campaign_id: str) -> datetime | None:
    [run] = _due(session, now, campaign_id)
    begin_run(session, run, now)
    return end_run(session, run, now, members=0)


def test_skipped_local_time_offset(store: ControlStore) -> None:
    daily = {
        "type": "recurring",
        "frequency": "daily",
        "local_time": "02:30",
        "start_date": "2024-03-09",
    }
    with store.session() as session:
        campaign_id = _publish(session, daily)
        first = datetime(2024, 3, 9, 7, 30, tzinfo=UTC)  # 02:30 EST
        assert _due(session, first - timedelta(microseconds=1), campaign_id) == []

        # 02:30 does not exist on 10 March; it is read with the offset before the change,
        # which is 03:30 EDT, 07:30 UTC.
        assert _run_once(session, first, campaign_id) == datetime(2024, 3, 10, 7, 30, tzinfo=UTC)
        campaign = session.get_one(Campaign, campaign_id)
        assert campaign.state == "awaiting_next_run"
        assert campaign.last_run_at == first

        second = datetime(2024, 3, 10, 7, 30, tzinfo=UTC)
        assert _run_once(session, second, campaign_id) == datetime(2024, 3, 11, 6, 30, tzinfo=UTC)


def test_repeated_local_time_takes_the_first(store: ControlStore) -> None:
    daily = {
        "type": "recurring",
        "frequency": "daily",
        "local_time": "01:30",
        "start_date": "2024-11-02",
    }
    with store.session() as session:
        campaign_id = _publish(session, daily)
        # 01:30 happens twice on 3 November; the first, in EDT, is 05:30 UTC.
        after_first = _run_once(session, datetime(2024, 11, 2, 5, 30, tzinfo=UTC), campaign_id)
        assert after_first == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)
        assert _run_once(session, after_first, campaign_id) == datetime(
            2024, 11, 4, 6, 30, tzinfo=UTC
        )


def test_one_time_run_completes(store: ControlStore) -> None:
    with store.session() as session:
        campaign_id = _publish(session, {"type": "now"})
        now = PUBLISHED_AT + timedelta(seconds=5)
        assert _run_once(session, now, campaign_id) is None
        assert session.get_one(Campaign, campaign_id).state == "completed"
        assert _due(session, now + timedelta(days=1), campaign_id) == []
        actions = session.scalars(
            select(AuditEntry.action).where(
                AuditEntry.actor_id == SCHEDULER_ACTOR, AuditEntry.resource_id == campaign_id
            )
        ).all()
        assert actions == ["start_run", "finish_run"]


def test_unfinished_run_is_due_again(
    store: ControlStore,
) -> None:
    with store.session() as session:
        campaign_id = _publish(session, {"type": "at", "at": "2024-03-09T15:00:00Z"})
        now = datetime(2024, 3, 9, 15, 0, 3, tzinfo=UTC)
        [run] = _due(session, now, campaign_id)
        begin_run(session, run, now)
        [again] = _due(session, now + timedelta(minutes=5), campaign_id)
        assert again.run_id == run.run_id
        assert run.run_id.endswith("@2024-03-09T15:00:00.000000Z")


def test_date_property_campaign_runs_daily_and_stays_running(store: ControlStore) -> None:
    birthday = {"type": "date_property", "property": "DOB", "days_before": 1, "local_time": "10:00"}
    with store.session() as session:
        campaign_id = _publish(session, birthday)
        assert session.get_one(Campaign, campaign_id).state == "running"
        # Published at 07:00 New York time, so the first run is at 10:00 that day.
        first = datetime(2024, 3, 8, 15, 0, tzinfo=UTC)
        assert _due(session, first - timedelta(microseconds=1), campaign_id) == []
        # The spring change falls in between: 10:00 EDT is 14:00 UTC.
        assert _run_once(session, first, campaign_id) == datetime(2024, 3, 9, 15, 0, tzinfo=UTC)
        assert session.get_one(Campaign, campaign_id).state == "running"
        assert _run_once(session, datetime(2024, 3, 9, 15, 0, tzinfo=UTC), campaign_id) == datetime(
            2024, 3, 10, 14, 0, tzinfo=UTC
        )


def test_triggered_campaign_starts_running_at_its_start(store: ControlStore) -> None:
    start = datetime(2024, 3, 9, 12, 0, tzinfo=UTC)
    trigger = {"type": "event", "event": "payment_error", "start_at": start.isoformat()}
    with store.session() as session:
        campaign_id = _publish(session, trigger)
        assert session.get_one(Campaign, campaign_id).state == "scheduled"
        assert campaign_id not in start_triggered(session, start - timedelta(seconds=1))
        assert campaign_id in start_triggered(session, start)
        assert session.get_one(Campaign, campaign_id).state == "running"
        assert _due(session, start, campaign_id) == []


def test_triggered_campaign_completes_after_its_end(store: ControlStore) -> None:
    end = datetime(2024, 3, 9, 12, 0, tzinfo=UTC)
    grace = timedelta(hours=2)
    trigger = {"type": "event", "event": "payment_error", "end_at": end.isoformat()}
    with store.session() as session:
        campaign_id = _publish(session, trigger)
        assert session.get_one(Campaign, campaign_id).state == "running"
        # An event from before the end may still arrive within the engine's lateness.
        assert complete_ended(session, end + grace - timedelta(seconds=1), grace) == []
        assert complete_ended(session, end + grace, grace) == [campaign_id]
        assert session.get_one(Campaign, campaign_id).state == "completed"
        assert complete_ended(session, end + grace, grace) == []
