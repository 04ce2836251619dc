"""Run requests of scheduled campaigns, decided by the partition engine."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from domain.delivery import AccountRules
from domain.engine import CampaignSet, EngineRules, PartitionEngine, compile_campaigns
from domain.engine.partition import run_request_problem
from schemas.campaign import CampaignCreate
from schemas.envelope import format_timestamp
from tests.domain.engine.reference import catalog_entry

NOW = datetime(2026, 12, 4, tzinfo=UTC)
SEEN = datetime(2024, 6, 1, tzinfo=UTC)
RUN_AT = datetime(2024, 6, 3, 13, 0, tzinfo=UTC)  # 09:00 in New York
NEW_YORK = EngineRules(account=AccountRules("America/New_York"))


def _digest(when: dict[str, Any], delivery: dict[str, Any] | None = None) -> CampaignSet:
    body = {
        "name": "Digest",
        "channel": "push",
        "who": {"type": "all_users"},
        "what": {
            "variants": [
                {
                    "name": "A",
                    "weight": 100,
                    "message": {"channel": "push", "title": "News", "body": "Today"},
                }
            ]
        },
        "when": when,
        "delivery": delivery or {},
    }
    entry = catalog_entry(CampaignCreate.model_validate(body), state="awaiting_next_run")
    entry["timezone"] = "America/New_York"
    return compile_campaigns({"digest": entry}, {})


def _engine(**zones: str | None) -> PartitionEngine:
    engine = PartitionEngine(0, NEW_YORK)
    envelopes = []
    for user, zone in zones.items():
        traits: dict[str, Any] = {"push_token": f"push-{user}"}
        if zone:
            traits["Tz"] = zone
        envelopes.append(
            {
                "message_id": f"{user}-identify",
                "type": "identify",
                "user_id": user,
                "anonymous_id": None,
                "timestamp": format_timestamp(SEEN),
                "received_at": format_timestamp(SEEN),
                "traits": traits,
            }
        )
    engine.process(envelopes, CampaignSet(), NOW)
    return engine


def _request(*users: str) -> dict[str, Any]:
    return {
        "campaign_id": "digest",
        "run_id": f"digest@{format_timestamp(RUN_AT)}",
        "run_at": format_timestamp(RUN_AT),
        "users": list(users),
    }


DAILY_9AM = {
    "type": "recurring",
    "frequency": "daily",
    "local_time": "09:00",
    "start_date": "2024-06-01",
}


def test_run_sends_to_members_once() -> None:
    campaigns = _digest(DAILY_9AM)
    engine = _engine(a=None, b=None)
    first = engine.run(_request("a", "b", "stranger"), campaigns, NOW)
    assert sorted(s["user_id"] for s in first.sends) == ["a", "b"]
    assert {s["send_at"] for s in first.sends} == {format_timestamp(RUN_AT)}
    assert {s["run_id"] for s in first.sends} == {_request()["run_id"]}
    assert first.reasons == Counter({("digest", "not_reachable"): 1})
    assert engine.run(_request("a", "b"), campaigns, NOW).sends == []


def test_per_run_limit_counts_exactly() -> None:
    campaigns = _digest(DAILY_9AM, {"limits": {"per_run": 2}})
    engine = _engine(a=None, b=None, c=None, d=None)
    effects = engine.run(_request("a", "b", "c", "d"), campaigns, NOW)
    assert len(effects.sends) == 2
    assert effects.reasons == Counter({("digest", "limit_per_run"): 2})


@pytest.mark.parametrize(
    ("missed", "berlin"),
    [("next_day", [datetime(2024, 6, 4, 7, 0, tzinfo=UTC)]), ("drop", [])],
)
def test_delivery_in_the_users_zone(missed: str, berlin: list[datetime]) -> None:
    campaigns = _digest({**DAILY_9AM, "timezone": "user"}, {"missed_local_time": missed})
    engine = _engine(ny=None, la="America/Los_Angeles", berlin="Europe/Berlin")
    effects = engine.run(_request("ny", "la", "berlin"), campaigns, NOW)
    assert [s["user_id"] for s in effects.sends] == ["ny"]
    if missed == "drop":
        assert effects.reasons == Counter({("digest", "missed_local_time"): 1})
    later = engine.advance(int(datetime(2024, 6, 5, tzinfo=UTC).timestamp() * 1e6), campaigns, NOW)
    sent = {s["user_id"]: datetime.fromisoformat(s["send_at"]) for s in later.sends}
    # 09:00 in Los Angeles is 16:00 UTC; 09:00 in Berlin had passed, so it is the next day's.
    assert sent.pop("la") == datetime(2024, 6, 3, 16, 0, tzinfo=UTC)
    assert list(sent.values()) == berlin


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"run_id": 5}, "run_id must be a string"),
        ({"campaign_id": None}, "campaign_id must be a string"),
        ({"run_at": "yesterday"}, "is not an ISO 8601 time"),
        ({"run_at": "2024-06-03T13:00:00"}, "run_at has no UTC offset"),
        ({"users": ["a", 7]}, "users must be a list"),
        ({"users": "a"}, "users must be a list"),
    ],
)
def test_malformed_request_rejected(change: dict[str, Any], problem: str) -> None:
    request = {**_request("ny"), **change}
    assert problem in (run_request_problem(request) or "")


def test_malformed_request_changes_nothing() -> None:
    # 09:00 in Los Angeles is after the run, so the send would wait with the bad run id.
    campaigns = _digest({**DAILY_9AM, "timezone": "user"})
    engine = _engine(la="America/Los_Angeles")
    before = orjson.dumps(engine.users)
    with pytest.raises(ValueError, match="run_id must be a string"):
        engine.run({**_request("la"), "run_id": 5}, campaigns, NOW)
    assert orjson.dumps(engine.users) == before
