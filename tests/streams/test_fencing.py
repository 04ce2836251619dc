"""Offset commits that name their group generation, against a real broker."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from herald.config import HeraldSettings, KafkaSettings
from streams.engine import StreamEngine
from streams.fencing import GroupMember, StaleGroupMember, fence_offset_commits, member_of
from tests.support.engine import coupon_catalog, coupon_event, engine_settings, read_sends

pytestmark = pytest.mark.kafka


async def _joined(kafka: KafkaSettings, group_id: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        kafka.events_topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    deadline = time.monotonic() + 60
    while not consumer.assignment():
        assert time.monotonic() < deadline, "no assignment within 60 s"
        await consumer.getmany(timeout_ms=100)
    return consumer


async def _committed_records(kafka: KafkaSettings, topic: str, least: int = 0) -> list[bytes]:
    """Return the committed records of `topic`, once there are at least `least` of them."""
    deadline = time.monotonic() + 30
    while len(values := await _read_committed(kafka, topic)) < least:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return values


async def _read_committed(kafka: KafkaSettings, topic: str) -> list[bytes]:
    reader = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await reader.start()
    try:
        tp = TopicPartition(topic, 0)
        reader.assign([tp])
        # A read_committed consumer's end offset is the last stable offset, so a reader
        # that reaches it has read every finished transaction.
        end = (await reader.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while await reader.position(tp) < end:
            batches = await reader.getmany(tp, timeout_ms=500)
            values += [record.value for record in batches.get(tp, [])]
        return values
    finally:
        await reader.stop()


async def _commit_as(
    kafka: KafkaSettings, member: GroupMember, output: str, value: bytes
) -> BaseException | None:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        transactional_id=f"fencing-{uuid.uuid4().hex[:8]}",
    )
    fence_offset_commits(producer, lambda: member)
    await producer.start()
    offsets = {TopicPartition(kafka.events_topic, 0): 1}
    try:
        async with producer.transaction():
            await producer.send_and_wait(output, value, partition=0)
            await producer.send_offsets_to_transaction(offsets, member.group_id)
    except StaleGroupMember as error:
        return error
    finally:
        await producer.stop()
    return None


def test_dropped_member_cannot_commit(unique_topics) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    group_id = f"{kafka.events_topic}-engine"
    output = kafka.sends_topic_prefix + "push"

    async def scenario() -> tuple[BaseException | None, int | None, list[bytes]]:
        first = await _joined(kafka, group_id)
        dropped = member_of(first, group_id)
        await first.stop()
        # The group moves to a new generation with another member.
        second = await _joined(kafka, group_id)
        try:
            error = await _commit_as(kafka, dropped, output, b"from the dropped member")
            committed = await second.committed(TopicPartition(kafka.events_topic, 0))
        finally:
            await second.stop()
        return error, committed, await _committed_records(kafka, output)

    error, committed, records = asyncio.run(scenario())
    assert isinstance(error, StaleGroupMember)
    assert committed is None
    assert records == []


def test_current_member_commits(unique_topics) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    group_id = f"{kafka.events_topic}-engine"
    output = kafka.sends_topic_prefix + "push"

    async def scenario() -> tuple[BaseException | None, int | None, list[bytes]]:
        consumer = await _joined(kafka, group_id)
        try:
            member = member_of(consumer, group_id)
            error = await _commit_as(kafka, member, output, b"from the member")
            # The broker writes a transaction's markers after it acknowledges the commit, so
            # the offset and the record become visible a moment later.
            deadline = time.monotonic() + 30
            tp = TopicPartition(kafka.events_topic, 0)
            while (committed := await consumer.committed(tp)) is None:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        finally:
            await consumer.stop()
        return error, committed, await _committed_records(kafka, output, least=1)

    error, committed, records = asyncio.run(scenario())
    assert error is None
    assert committed == 1
    assert records == [b"from the member"]


async def _wait_until(condition, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _write_events(kafka: KafkaSettings, *users: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        events = [coupon_event(user) for user in users]
        await producer.send_and_wait(kafka.events_topic, orjson.dumps(events), partition=0)
    finally:
        await producer.stop()


def _second_worker(settings: HeraldSettings) -> HeraldSettings:
    engine = settings.engine.model_copy(
        update={"transactional_id": f"{settings.engine.transactional_id}-second"}
    )
    return settings.model_copy(update={"engine": engine})


def test_dropped_engine_sends_nothing(unique_topics) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    # The shortest session that brokers accept by default, so the group drops the first
    # engine soon.
    settings = engine_settings(kafka, session_timeout_s=6.0)

    async def scenario() -> BaseException | None:
        ready = asyncio.Event()
        ready.set()
        first = StreamEngine(settings, coupon_catalog(), ready)
        first_run = asyncio.create_task(first.run())
        second_run: asyncio.Task[None] | None = None
        try:
            await _write_events(kafka, "ada")
            await _wait_until(lambda: first.stats.sends == 1)
            # The first engine stops its heartbeats, as a stalled process would, but goes on
            # reading its partition, which the group gives to the second engine.
            assert first._consumer is not None
            await first._consumer._coordinator._stop_heartbeat_task()
            second = StreamEngine(_second_worker(settings), coupon_catalog(), ready)
            second_run = asyncio.create_task(second.run())
            await _wait_until(lambda: 0 in second._partitions)

            await _write_events(kafka, "grace")
            # Unfenced, the first engine would send to grace too.
            await _wait_until(
                lambda: second.stats.sends == 1 and (first_run.done() or first.stats.sends == 2)
            )
            return first_run.exception() if first_run.done() else None
        finally:
            for run in (first_run, second_run):
                if run is not None:
                    run.cancel()
            await asyncio.gather(first_run, *(r for r in [second_run] if r), return_exceptions=True)

    error = asyncio.run(scenario())
    commands = read_sends(kafka, expected=2)
    users = sorted(command["user_id"] for command in commands)
    assert users == ["ada", "grace"]
    assert isinstance(error, StaleGroupMember)
