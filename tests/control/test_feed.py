"""The change feed against a real broker: after a sequence of edits, the compacted
`campaigns` topic holds the current definition of every campaign, label and segment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from starlette.testclient import TestClient

from api.main import create_app
from control.accounts import bootstrap_account
from control.clock import SystemClock
from herald.config import HeraldSettings, KafkaSettings
from streams.topics import delete_topics
from tests.api.control_support import database_url, push_campaign

pytestmark = pytest.mark.kafka


async def _read_topic(kafka: KafkaSettings) -> dict[str, Any]:
    """Return the last value of every key, as a worker's global table would hold it."""
    consumer = AIOKafkaConsumer(
        kafka.campaigns_topic,
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    table: dict[str, Any] = {}
    try:
        while batch := await consumer.getmany(timeout_ms=1000):
            for records in batch.values():
                for record in records:
                    key = record.key.decode()
                    table[key] = None if record.value is None else orjson.loads(record.value)
    finally:
        await consumer.stop()
    return table


async def _cleanup_policy(kafka: KafkaSettings) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, kafka.campaigns_topic)
        response = await admin.describe_configs([resource])
    finally:
        await admin.close()
    entries = response[0].to_object()["resources"][0]["config_entries"]
    return next(str(e["config_value"]) for e in entries if e["config_names"] == "cleanup.policy")


def _edit_sequence(client: TestClient, token: str) -> dict[str, str]:
    """Create, edit, publish, stop and delete resources; return the ids involved."""
    headers = {"Authorization": f"Bearer {token}"}

    def call(method: str, path: str, body: Any = None) -> Any:
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code < 300, response.text
        return None if response.status_code == 204 else response.json()

    labels = call("POST", "/labels", {"names": ["Sale", "Temp", "Onboarding"]})["created"]
    ids = {label["name"]: label["id"] for label in labels}
    call("PATCH", f"/labels/{ids['Sale']}", {"name": "Spring Sale"})
    call("DELETE", f"/labels/{ids['Temp']}")
    segment = call(
        "POST",
        "/segments",
        {
            "name": "Germany",
            "definition": {"type": "trait", "trait": "country", "op": "eq", "value": "DE"},
        },
    )
    call(
        "PATCH",
        f"/segments/{segment['id']}",
        {"definition": {"type": "trait", "trait": "country", "op": "eq", "value": "AT"}},
    )
    doomed = call(
        "POST",
        "/segments",
        {"name": "Doomed", "definition": {"type": "trait", "trait": "x", "op": "eq", "value": 1}},
    )
    call("DELETE", f"/segments/{doomed['id']}")
    first = call("POST", "/campaigns", push_campaign(labels=["spring sale"]))
    call("PATCH", f"/campaigns/{first['id']}", {"name": "Spring sale, day 1"})
    call("POST", f"/campaigns/{first['id']}/publish", {"at": "2030-01-01T09:00:00Z"})
    second = call(
        "POST", "/campaigns", push_campaign(name="Welcome", when={"type": "event", "event": "home"})
    )
    call(
        "PATCH",
        f"/campaigns/{second['id']}",
        {"labels": ["Onboarding"], "who": {"type": "saved_segment", "segment_id": segment["id"]}},
    )
    call("POST", f"/campaigns/{second['id']}/publish", {})
    call("POST", f"/campaigns/{second['id']}/stop")
    call("PATCH", "/account", {"delivery": {"control_group_percent": 3}})
    call("POST", "/labels", {"names": ["Late"]})
    return {
        "first": first["id"],
        "second": second["id"],
        "segment": segment["id"],
        "doomed": doomed["id"],
        "temp": ids["Temp"],
        "sale": ids["Sale"],
    }


def test_feed_holds_current_definitions(
    unique_topics: Callable[..., KafkaSettings], tmp_path: Path
) -> None:
    # A campaigns topic that does not exist yet, so the publisher must create it compacted.
    created = unique_topics()
    kafka = created.model_copy(update={"campaigns_topic": f"{created.campaigns_topic}.fresh"})
    settings = HeraldSettings(control_db_url=database_url(tmp_path), kafka=kafka, control_feed=True)
    app = create_app(settings)
    with app.state.control_store.session() as session:
        _admin, token = bootstrap_account(session, "Feed shop", "a@feed.test", SystemClock().now())

    with TestClient(app) as client:
        ids = _edit_sequence(client, token)
        headers = {"Authorization": f"Bearer {token}"}
        expected = {
            key: client.get(f"/campaigns/{ids[key]}", headers=headers).json()
            for key in ("first", "second")
        }
        deadline = time.monotonic() + 60
        table = asyncio.run(_read_topic(kafka))
        while time.monotonic() < deadline and _stale(table, ids, expected):
            time.sleep(0.5)
            table = asyncio.run(_read_topic(kafka))

    cleanup_policy = asyncio.run(_cleanup_policy(kafka))
    asyncio.run(delete_topics(kafka, [kafka.campaigns_topic]))
    for key in ("first", "second"):
        record = table[ids[key]]
        assert record["kind"] == "campaign"
        definition = {k: v for k, v in record["definition"].items() if k in expected[key]}
        assert definition == {k: v for k, v in expected[key].items() if k != "warnings"}
    assert table[ids["second"]]["definition"]["state"] == "stopped"
    assert table[ids["first"]]["definition"]["live_definition"]["name"] == "Spring sale, day 1"
    for key in ("first", "second"):
        delivery = table[ids[key]]["definition"]["account_delivery"]
        assert delivery == {"frequency_caps": {"channels": {}}, "control_group_percent": 3}
    assert table[ids["sale"]]["definition"]["name"] == "Spring Sale"
    assert table[ids["segment"]]["definition"]["definition"] == {
        "type": "trait",
        "trait": "country",
        "op": "eq",
        "value": "AT",
    }
    assert table[ids["temp"]] is None
    assert table[ids["doomed"]] is None
    assert cleanup_policy == "compact"


def _stale(table: dict[str, Any], ids: dict[str, str], expected: dict[str, Any]) -> bool:
    """Return True until the table holds the last change of the sequence and every version."""
    names = {record["definition"].get("name") for record in table.values() if record is not None}
    if "Late" not in names:
        return True
    for key in ("first", "second"):
        record = table.get(ids[key])
        if record is None or record["definition"]["version"] != expected[key]["version"]:
            return True
    return False
