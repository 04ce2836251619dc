"""A relay with the engine's Kafka clients and transactions but no decisions.

Its send latency, measured like the engine's, is the floor that the broker, the machine and
the transactions set under the engine's. Per poll of the events topic it writes, in one
transaction, as the engine does:
- per record read, one send command to `sends.email`, whose `trigger_id` is the id of the
  record's first event, so that the latency reader times it;
- per record read, one event back to the events topic with the engine's origin header.
  The open transaction then holds back `read_committed` reads of that topic, as the
  engine's own Notification events do;
- per record read, its value to the state topic, where the engine writes a state per user;
- the consumed offsets, fenced by group generation.

While one transaction commits, the next poll is read, as in the engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import orjson
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.structs import ConsumerRecord

from herald.config import HeraldSettings
from schemas.wire import ENGINE_ORIGIN, ORIGIN_HEADER, decode_events, written_by_engine
from streams.engine import engine_consumer, engine_producer
from streams.fencing import fence_offset_commits, member_of

__all__ = ["KafkaRelay", "RelayStats"]

logger = logging.getLogger(__name__)

_POLL_MS = 100
_CHANNEL = "email"
_ORIGIN_HEADERS = [(ORIGIN_HEADER, ENGINE_ORIGIN)]


@dataclass(slots=True)
class RelayStats:
    """Counters since start, with the names of the engine's."""

    events: int = 0
    sends: int = 0
    transactions: int = 0


class KafkaRelay(ConsumerRebalanceListener):
    """A relay of each events record to a send command, in the engine's transactions."""

    def __init__(self, settings: HeraldSettings) -> None:
        self._settings = settings
        self.stats = RelayStats()
        # Set at the first assignment, like the engine's time of restore in the benchmark.
        self.restored_at_s: float | None = None
        self._committing: asyncio.Task[None] | None = None
        self._sends_partitions = 0

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._finish_commit()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if assigned and self.restored_at_s is None:
            self.restored_at_s = time.perf_counter()

    async def run(self) -> None:
        """Relay until cancelled. A failed transaction ends the run."""
        settings = self._settings
        group_id = settings.engine.group_id
        producer = engine_producer(settings, settings.engine.transactional_id or group_id)
        consumer = engine_consumer(settings)
        fence_offset_commits(producer, lambda: member_of(consumer, group_id))
        await producer.start()
        try:
            sends_topic = settings.kafka.sends_topic_prefix + _CHANNEL
            self._sends_partitions = len(await producer.partitions_for(sends_topic))
            consumer.subscribe([settings.kafka.events_topic], listener=self)
            await consumer.start()
            try:
                await self._loop(consumer, producer)
            finally:
                try:
                    await self._finish_commit()
                except Exception:
                    # The run's own error, if any, is the one to raise.
                    logger.exception("relay transaction failed while stopping")
                await consumer.stop()
        finally:
            await producer.stop()

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        max_records = self._settings.engine.max_poll_records
        while True:
            batches = await consumer.getmany(timeout_ms=_POLL_MS, max_records=max_records)
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items() if records}
            if not offsets:
                continue
            records = [record for batch in batches.values() for record in batch]
            await self._finish_commit()
            self._committing = asyncio.create_task(self._commit(producer, records, offsets))

    async def _finish_commit(self) -> None:
        committing, self._committing = self._committing, None
        if committing is not None:
            await committing

    async def _commit(
        self,
        producer: AIOKafkaProducer,
        records: list[ConsumerRecord],
        offsets: dict[TopicPartition, int],
    ) -> None:
        kafka = self._settings.kafka
        sends_topic = kafka.sends_topic_prefix + _CHANNEL
        sends = 0
        async with producer.transaction():
            pending = []
            for record in records:
                if written_by_engine(record.headers):
                    continue
                envelopes = decode_events(record.value)
                if not envelopes:
                    continue
                self.stats.events += len(envelopes)
                first_id = envelopes[0].get("message_id")
                command = {
                    "send_id": f"relay-{record.partition}-{record.offset}",
                    "trigger_id": first_id,
                    "channel": _CHANNEL,
                }
                pending += [
                    await producer.send(
                        sends_topic,
                        orjson.dumps([command]),
                        partition=record.partition % self._sends_partitions,
                    ),
                    await producer.send(
                        kafka.events_topic,
                        orjson.dumps([{"event": "Relayed", "trigger_id": first_id}]),
                        partition=record.partition,
                        headers=_ORIGIN_HEADERS,
                    ),
                    await producer.send(
                        kafka.engine_state_topic,
                        record.value,
                        key=f"p:{record.partition}".encode(),
                        partition=record.partition,
                    ),
                ]
                sends += 1
            await producer.send_offsets_to_transaction(offsets, self._settings.engine.group_id)
            await asyncio.gather(*pending)
        self.stats.sends += sends
        self.stats.transactions += 1
