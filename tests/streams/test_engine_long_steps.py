"""Long engine steps, a large restore and a large backlog of windows, keep the worker in
its consumer group: its heartbeats go on while they run."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from domain.engine import EngineRules, PartitionEngine, compile_campaigns
from herald.config import HeraldSettings, KafkaSettings
from schemas.campaign import CampaignCreate
from schemas.envelope import format_timestamp
from streams.catalog import CampaignCatalog
from streams.engine import StreamEngine, request_flush
from tests.support.engine import engine_settings

pytestmark = pytest.mark.kafka

# The minimum that brokers accept by default (`group.min.session.timeout.ms`).
SESSION_S = 6.0
CART = CampaignCreate.model_validate(
    {
        "name": "Abandoned cart",
        "channel": "push",
        "what": {
            "variants": [
                {"message": {"channel": "push", "title": "Still there?", "body": "Your cart"}}
            ]
        },
        "when": {
            "type": "inaction",
            "did": {"event": "Product Added"},
            "did_not": {"event": "Order Completed"},
            "within": "PT30M",
        },
    }
).model_dump(mode="json")


def _catalog() -> CampaignCatalog:
    catalog = CampaignCatalog()
    catalog.campaigns["cart"] = _entry()
    return catalog


def _entry() -> dict[str, Any]:
    return {"state": "running", "timezone": "UTC", "name": CART["name"], "live_definition": CART}


def _settings(kafka: KafkaSettings, **engine: Any) -> HeraldSettings:
    settings = engine_settings(kafka)
    update = {"session_timeout_s": SESSION_S, **engine}
    return settings.model_copy(update={"engine": settings.engine.model_copy(update=update)})


def _event(user_id: str, name: str, at: datetime, **fields: Any) -> dict[str, Any]:
    stamp = format_timestamp(at)
    return {
        "message_id": uuid.uuid4().hex,
        "type": "track",
        "event": name,
        "user_id": user_id,
        "timestamp": stamp,
        "received_at": stamp,
        "properties": {},
        **fields,
    }


def _identify(user_id: str, at: datetime) -> dict[str, Any]:
    return _event(user_id, None, at, type="identify", traits={"push_token": f"token-{user_id}"})  # type: ignore[arg-type]


def _user_states(
    users: int, events: list[dict[str, Any]], at: datetime
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Return the state records of `users` users whose states are what `events` of the user
    `user-template` make, and the partition record after them, as the engine writes both."""
    engine = PartitionEngine(0, EngineRules())
    engine.process(events, compile_campaigns({"cart": _entry()}, {}), at)
    template = orjson.dumps(engine.users["user-template"])
    states = [
        (f"u:user-{n:06d}".encode(), template.replace(b"user-template", b"user-%06d" % n))
        for n in range(users)
    ]
    return states, orjson.dumps(engine.meta())


async def _write_records(
    kafka: KafkaSettings, topic: str, records: list[tuple[Any, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        # Whole batches, because a send per record would take most of the test's time.
        futures = []
        batch = producer.create_batch()
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=0))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        futures.append(await producer.send_batch(batch, topic, partition=0))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _run_engine(
    settings: HeraldSettings, until: Any, deadline_s: float
) -> tuple[StreamEngine, float]:
    """Run the engine until `until` holds. Return it and the maximum delay, once it has
    partitions, with which a task that sleeps 0.1 s woke up."""

    async def scenario() -> tuple[StreamEngine, float]:
        ready = asyncio.Event()
        ready.set()
        engine = StreamEngine(settings, _catalog(), ready)
        run = asyncio.create_task(engine.run())
        deadline = time.monotonic() + deadline_s
        max_pause_s = 0.0
        try:
            while not await until(engine):
                assert not run.done(), f"the engine stopped: {run.exception()!r}"
                assert time.monotonic() < deadline, "timed out"
                slept_s = time.monotonic()
                await asyncio.sleep(0.1)
                if engine._partitions:
                    max_pause_s = max(max_pause_s, time.monotonic() - slept_s - 0.1)
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        return engine, max_pause_s

    return asyncio.run(scenario())


def _assignments(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "engine partitions assigned"]


def test_restore_longer_than_the_session(unique_topics, caplog) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    settings = _settings(kafka)
    # States as the engine writes them, of users with a few dozen traits, for enough
    # users that reading them back takes longer than the session timeout.
    at = datetime.now(UTC) - timedelta(days=1)
    users = 300_000
    identify = _identify("user-template", at)
    identify["traits"].update({f"trait_{n}": f"value {n} of a trait" for n in range(60)})
    states, _ = _user_states(users, [identify], at)
    asyncio.run(_write_records(kafka, kafka.engine_state_topic, states))
    state: dict[str, Any] = {}

    async def sent_after_restore(engine: StreamEngine) -> bool:
        if engine._partitions and "written" not in state:
            now = datetime.now(UTC)
            trigger = [_event("user-000001", "Product Added", now - timedelta(hours=1))]
            flush = [_event("user-000001", "App Opened", now)]
            await _write_records(kafka, kafka.events_topic, [(None, orjson.dumps(trigger + flush))])
            state["written"] = True
        if engine.stats.sends and "sent" not in state:
            state["sent"] = time.monotonic()
        # A worker evicted during the restore learns it from its next heartbeats.
        return "sent" in state and time.monotonic() - state["sent"] > SESSION_S

    with caplog.at_level("INFO", logger="streams.engine"):
        engine, _ = _run_engine(settings, sent_after_restore, deadline_s=120)

    [assigned] = _assignments(caplog)
    assert assigned.users == users
    # Otherwise the restore proves nothing about the session.
    assert assigned.restore_ms > SESSION_S * 1000
    assert not [r for r in caplog.records if r.getMessage() == "engine partitions revoked"]
    assert engine.stats.sends == 1


@pytest.mark.parametrize(
    "closed_by", ["idle watermark", "flushed", "record that moved", "record that moved inside"]
)
def test_many_windows_closing_at_once(unique_topics, caplog, closed_by) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    # A flush or a live event comes first, before the partition counts as idle.
    idle_s = 0.5 if closed_by == "idle watermark" else 600
    settings = _settings(kafka, idle_watermark_s=idle_s)
    # Restored states of users whose cart windows all closed half an hour ago, behind a
    # watermark that stopped an hour ago.
    opened = datetime.now(UTC) - timedelta(hours=1)
    users = 50_000
    trigger = _event("user-template", "Product Added", opened)
    states, partition = _user_states(users, [_identify("user-template", opened), trigger], opened)
    records = [*states, (b"partition", partition)]
    asyncio.run(_write_records(kafka, kafka.engine_state_topic, records))
    if closed_by == "flushed":
        asyncio.run(request_flush(kafka))
    if closed_by == "record that moved":
        live = orjson.dumps([_event("someone-else", "App Opened", datetime.now(UTC))])
        asyncio.run(_write_records(kafka, kafka.events_topic, [(None, live)]))
    if closed_by == "record that moved inside":
        # Only an event between the first and the last moves the watermark.
        times = [opened, datetime.now(UTC), opened]
        live = orjson.dumps([_event("someone-else", "App Opened", at) for at in times])
        asyncio.run(_write_records(kafka, kafka.events_topic, [(None, live)]))

    async def all_sent(engine: StreamEngine) -> bool:
        return engine.stats.sends >= users

    with caplog.at_level("INFO", logger="streams.engine"):
        engine, max_pause_s = _run_engine(settings, all_sent, deadline_s=120)

    step = closed_by.removesuffix(" inside")
    [closing] = [r for r in caplog.records if step in r.getMessage()]
    assert closing.sends == users
    # Otherwise the loop could not show how long the step held it.
    assert closing.decide_ms > 1000
    assert max_pause_s < closing.decide_ms / 1000 / 2
    assert engine.stats.sends == users
