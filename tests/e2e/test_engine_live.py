"""The engine on live traffic: windows close by the wall clock once a partition goes quiet."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from herald.config import KafkaSettings
from tests.support.engine import bootstrap_admin, publish, read_sends, wait_for_live_campaigns

pytestmark = pytest.mark.kafka

FORGOTTEN_CART = {
    "name": "Forgotten cart",
    "channel": "push",
    "who": {"type": "all_users"},
    "what": {
        "variants": [
            {
                "name": "A",
                "weight": 100,
                "message": {"channel": "push", "title": "Still there?", "body": "Your cart"},
            }
        ]
    },
    "when": {
        "type": "inaction",
        "did": {"event": "add_to_cart"},
        "did_not": {"event": "purchase"},
        "within": "PT1M",
    },
}


def _events(user: str, started: datetime, *names: str) -> list[dict[str, Any]]:
    identify = {
        "type": "identify",
        "userId": user,
        "messageId": f"{user}-identify",
        "timestamp": started.isoformat(),
        "traits": {"push_token": f"push-{user}"},
    }
    tracks = [
        {
            "type": "track",
            "userId": user,
            "event": name,
            "messageId": f"{user}-{name}",
            "timestamp": (started + timedelta(seconds=index)).isoformat(),
        }
        for index, name in enumerate(names)
    ]
    return [identify, *tracks]


def test_quiet_partition_closes_windows(herald_stack) -> None:  # type: ignore[no-untyped-def]
    stack = herald_stack(HERALD_ENGINE__IDLE_WATERMARK_S="1")
    stack.start_api()
    campaign_id = publish(stack, bootstrap_admin(stack), FORGOTTEN_CART)
    wait_for_live_campaigns(stack.kafka, [campaign_id])
    stack.start_worker()

    # Carts a little under a minute old: only the wall clock can close their windows.
    started = datetime.now(UTC) - timedelta(seconds=55)
    batch = _events("forgetful", started, "add_to_cart") + _events(
        "buyer", started, "add_to_cart", "purchase"
    )
    response = stack.post("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text

    [send] = read_sends(stack.kafka, 1, timeout_s=90)
    assert send["user_id"] == "forgetful"
    assert datetime.fromisoformat(send["send_at"]) == started + timedelta(minutes=1)


PAYMENT_NOW = {
    "name": "Payment now",
    "channel": "push",
    "who": {"type": "all_users"},
    "what": {
        "variants": [
            {
                "name": "A",
                "weight": 100,
                "message": {"channel": "push", "title": "Payment", "body": "Please check"},
            }
        ]
    },
    "when": {"type": "event", "event": "payment_error"},
}


def test_stray_records_stop_no_send(herald_stack) -> None:  # type: ignore[no-untyped-def]
    stack = herald_stack()
    stack.start_api()
    campaign_id = publish(stack, bootstrap_admin(stack), PAYMENT_NOW)
    wait_for_live_campaigns(stack.kafka, [campaign_id])
    stray = [
        b'{"user_id": "p1"}',
        b"[1, 2]",
        b'"text"',
        b'{"user_id": "p1", "type": "track", "event": "payment_error", "timestamp": "soon"}',
        b"{not json",
        # Read before validation by the skip of the engine's own Notification events.
        b'[{"message_id": "m", "type": "track", "event": ["Notification Sent"],'
        b' "user_id": "p1", "timestamp": "2024-03-13T10:21:14Z",'
        b' "received_at": "2024-03-13T10:21:14Z"}]',
        b'{"message_id": "m2", "type": "track", "event": {"a": 1}, "user_id": "p1"}',
    ]
    asyncio.run(_write_raw(stack.kafka, stray))
    stack.start_worker()

    started = datetime.now(UTC) - timedelta(seconds=5)
    users = [f"payer-{n}" for n in range(8)]
    batch = [e for user in users for e in _events(user, started, "payment_error")]
    assert stack.post("/v1/batch", {"batch": batch}).status_code == 200

    sends = read_sends(stack.kafka, len(users), timeout_s=90)
    assert sorted(send["user_id"] for send in sends) == users
    assert stack.worker is not None and stack.worker.poll() is None, stack.log("worker.log")


async def _write_raw(kafka: KafkaSettings, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for partition in range(kafka.partitions):
            for value in values:
                await producer.send_and_wait(kafka.events_topic, value, partition=partition)
    finally:
        await producer.stop()
