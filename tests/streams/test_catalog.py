"""The campaigns topic read into a worker's catalog, and the triggers compiled from it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from streams.catalog import CampaignCatalog, follow_catalog

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "campaigns"


def _campaign(name: str, state: str = "running", published: bool = True) -> dict[str, Any]:
    body = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    live = {
        key: body.get(key)
        for key in ("name", "channel", "labels", "who", "what", "when", "delivery")
    }
    return {"id": name, "state": state, **body, "live_definition": live if published else None}


def _record(kind: str, resource_id: str, definition: dict[str, Any]) -> bytes:
    return orjson.dumps({"kind": kind, "id": resource_id, "definition": definition})


def test_apply_and_tombstone() -> None:
    catalog = CampaignCatalog()
    catalog.apply(b"cmp_1", _record("campaign", "cmp_1", {"state": "draft"}))
    catalog.apply(b"lbl_1", _record("label", "lbl_1", {"name": "Support"}))
    catalog.apply(b"cmp_1", _record("campaign", "cmp_1", {"state": "running"}))
    catalog.apply(b"lbl_1", None)

    assert catalog.campaigns == {"cmp_1": {"state": "running"}}
    assert catalog.labels == {}


def test_live_triggers_of_examples() -> None:
    catalog = CampaignCatalog()
    for name in ("abandoned_cart", "payment_problem", "welcome"):
        catalog.apply(name.encode(), _record("campaign", name, _campaign(name)))
    catalog.apply(b"stopped", _record("campaign", "stopped", _campaign("welcome", state="stopped")))
    catalog.apply(b"draft", _record("campaign", "draft", _campaign("welcome", "draft", False)))

    triggers = {trigger.campaign_id: trigger for trigger in catalog.live_triggers()}

    assert sorted(triggers) == ["abandoned_cart", "payment_problem", "welcome"]
    assert triggers["abandoned_cart"].kind == "inaction"
    assert triggers["abandoned_cart"].offset_us == 3600 * 1_000_000
    assert triggers["payment_problem"].kind == "action"
    assert triggers["welcome"].profile is not None


def test_broken_definition_skipped() -> None:
    catalog = CampaignCatalog()
    broken = {"state": "running", "live_definition": {"when": {"type": "nonsense"}}}
    catalog.apply(b"cmp_x", _record("campaign", "cmp_x", broken))

    assert catalog.live_triggers() == []


@pytest.mark.parametrize(
    "value",
    [
        b'{"kind": "campaign", "id": "cmp_1"}',
        b'{"kind": "campaign", "id": "cmp_1", "definition": null}',
        b'{"kind": "campaign", "id": "cmp_1", "definition": [1]}',
        b"[1, 2]",
        b"not json",
    ],
)
def test_unreadable_record_keeps_last_definition(value: bytes) -> None:
    catalog = CampaignCatalog()
    catalog.apply(b"cmp_1", _record("campaign", "cmp_1", _campaign("welcome")))
    catalog.apply(b"cmp_1", value)

    assert [trigger.campaign_id for trigger in catalog.live_triggers()] == ["cmp_1"]


@pytest.mark.kafka
def test_follow_reads_then_tracks(unique_topics) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics()

    async def scenario() -> CampaignCatalog:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                kafka.campaigns_topic, key=b"a", value=_record("campaign", "a", {"v": 1})
            )
            await producer.send_and_wait(
                kafka.campaigns_topic, key=b"b", value=_record("segment", "b", {"v": 1})
            )
            catalog, ready = CampaignCatalog(), asyncio.Event()
            task = asyncio.create_task(follow_catalog(kafka, catalog, ready))
            await asyncio.wait_for(ready.wait(), 20)
            assert catalog.campaigns == {"a": {"v": 1}}
            await producer.send_and_wait(
                kafka.campaigns_topic, key=b"a", value=_record("campaign", "a", {"v": 2})
            )
            await producer.send_and_wait(kafka.campaigns_topic, key=b"b", value=None)
            for _ in range(100):
                if catalog.campaigns["a"] == {"v": 2} and not catalog.segments:
                    break
                await asyncio.sleep(0.05)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return catalog
        finally:
            await producer.stop()

    catalog = asyncio.run(scenario())

    assert catalog.campaigns == {"a": {"v": 2}}
    assert catalog.segments == {}
