"""The stream engine's transactions against a real broker."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from herald.config import KafkaSettings
from streams.catalog import CampaignCatalog
from streams.engine import StreamEngine
from tests.support.engine import engine_settings

pytestmark = pytest.mark.kafka


async def _write_empty_batch(kafka: KafkaSettings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(kafka.events_topic, b"[]", partition=0)
    finally:
        await producer.stop()


async def _wait_for(condition, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_fenced_engine_ends_its_run(unique_topics) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    settings = engine_settings(kafka)
    ready = asyncio.Event()

    async def scenario() -> BaseException | None:
        ready.set()
        engine = StreamEngine(settings, CampaignCatalog(), ready)
        run = asyncio.create_task(engine.run())
        await _write_empty_batch(kafka)
        await _wait_for(lambda: engine.stats.transactions >= 1 or run.done(), 60)
        assert not run.done(), "the engine stopped before it was fenced"

        # A producer with the same transactional id takes over, as a restarted worker does.
        successor = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            transactional_id=settings.engine.transactional_id,
        )
        await successor.start()
        try:
            await _write_empty_batch(kafka)
            done, _ = await asyncio.wait({run}, timeout=60)
        finally:
            await successor.stop()
        if not done:
            run.cancel()
            return None
        return run.exception()

    error = asyncio.run(scenario())
    assert error is not None, "the fenced engine kept running"
    assert isinstance(error, KafkaError)


def test_rejected_session_timeout_names_setting(unique_topics) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    # Below the broker's `group.min.session.timeout.ms` (6 s by default). Settings reject
    # such a value, so it is set here without validation, as a broker with other bounds
    # would see a valid one.
    settings = engine_settings(kafka, session_timeout_s=3.0)

    async def scenario() -> BaseException | None:
        ready = asyncio.Event()
        ready.set()
        run = asyncio.create_task(StreamEngine(settings, CampaignCatalog(), ready).run())
        done, _ = await asyncio.wait({run}, timeout=60)
        if not done:
            run.cancel()
            return None
        return run.exception()

    error = asyncio.run(scenario())
    assert error is not None, "the engine ran with a session timeout the broker rejects"
    assert "HERALD_ENGINE__SESSION_TIMEOUT_S" in str(error)
