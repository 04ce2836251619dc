"""Helpers for tests of the engine: the example campaigns through the control plane, and
the send commands read back from Kafka."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer

from herald.config import HeraldSettings, KafkaSettings
from schemas.campaign import CampaignCreate
from schemas.envelope import format_timestamp
from schemas.wire import decode_events
from streams.catalog import CampaignCatalog, wait_for_live
from streams.topics import sends_topics
from tests.support.stack import HeraldStack

__all__ = [
    "COUPON_TRIGGER",
    "bootstrap_admin",
    "coupon_catalog",
    "coupon_event",
    "engine_settings",
    "publish",
    "publish_examples",
    "read_sends",
    "wait_for_live_campaigns",
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "campaigns"
COUPON_TRIGGER = "Coupon Claimed"


def engine_settings(kafka: KafkaSettings, **engine_updates: Any) -> HeraldSettings:
    """Return settings on `kafka` whose engine has a consumer group and transactional id
    of its own, so that no other test's engine fences it or shares its offsets.

    `engine_updates` replace engine settings without validation, so a test can give a
    value that a broker with other bounds would accept.
    """
    settings = HeraldSettings()
    name = f"test-{uuid.uuid4().hex[:8]}"
    engine = settings.engine.model_copy(
        update={"group_id": f"{name}-engine", "transactional_id": f"{name}-tx", **engine_updates}
    )
    return settings.model_copy(update={"kafka": kafka, "engine": engine})


def coupon_catalog(
    delivery: dict[str, Any] | None = None, who: dict[str, Any] | None = None
) -> CampaignCatalog:
    """Return a catalog with one running campaign: an in-app message on each coupon event."""
    campaign = CampaignCreate.model_validate(
        {
            "name": "Coupon confirmation",
            "who": who or {"type": "all_users"},
            "channel": "in_app",
            "what": {
                "variants": [
                    {
                        "message": {
                            "channel": "in_app",
                            "layout": "alert",
                            "title": "Hi",
                            "body": "Yes",
                        }
                    }
                ]
            },
            "when": {"type": "event", "event": COUPON_TRIGGER},
            "delivery": delivery or {},
        }
    )
    catalog = CampaignCatalog()
    catalog.campaigns["coupon"] = {
        "state": "running",
        "timezone": "UTC",
        "name": campaign.name,
        "live_definition": campaign.model_dump(mode="json"),
    }
    return catalog


def coupon_event(user_id: str) -> dict[str, Any]:
    """Return a coupon event of `user_id`, dated now."""
    now = format_timestamp(datetime.now(UTC))
    return {
        "message_id": uuid.uuid4().hex,
        "type": "track",
        "event": COUPON_TRIGGER,
        "user_id": user_id,
        "timestamp": now,
        "received_at": now,
        "properties": {},
    }


def bootstrap_admin(stack: HeraldStack) -> str:
    """Create the stack's account and return its admin token."""
    result = subprocess.run(
        [sys.executable, "-m", "herald.cli", "users", "bootstrap", "--email", "admin@shop.test"],
        cwd=stack.root,
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def publish_examples(stack: HeraldStack, token: str) -> dict[str, str]:
    """Create and publish the example campaigns; return campaign name -> id."""
    ids: dict[str, str] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        ids[body["name"]] = publish(stack, token, body)
    return ids


def publish(stack: HeraldStack, token: str, body: dict[str, Any]) -> str:
    """Create a campaign with its labels, publish it, and return its id."""
    client = httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    with client:
        if body.get("labels"):
            client.post("/labels", json={"names": body["labels"]}).raise_for_status()
        created = client.post("/campaigns", json=body)
        assert created.status_code == 201, created.text
        campaign_id: str = created.json()["id"]
        published = client.post(f"/campaigns/{campaign_id}/publish", json={})
        assert published.status_code == 200, published.text
        return campaign_id


def wait_for_live_campaigns(
    kafka: KafkaSettings, campaign_ids: list[str], timeout_s: float = 30
) -> None:
    """Wait until the campaigns topic shows every campaign able to send."""
    asyncio.run(wait_for_live(kafka, campaign_ids, timeout_s))


def read_sends(
    kafka: KafkaSettings, expected: int, timeout_s: float = 180, settle_s: float = 3.0
) -> list[dict[str, Any]]:
    """Read committed send commands of every channel until `expected` arrived and
    `settle_s` passed without more, or until the timeout; return them in the order read."""

    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            *sends_topics(kafka),
            bootstrap_servers=kafka.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        commands: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + timeout_s
            quiet_since = time.monotonic()
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        commands += decode_events(record.value)
                    quiet_since = time.monotonic()
                if len(commands) >= expected and time.monotonic() - quiet_since >= settle_s:
                    break
        finally:
            await consumer.stop()
        return commands

    return asyncio.run(read())
