"""Writing envelopes to the `events` topic, grouped by the partition of their user.

`EventProducer.send_events` returns only after the broker has acknowledged every record
with `acks=all`, so an API that awaits it responds to a client only once the events are
durable. The producer is idempotent: an internal retry never writes a record twice.
Records of a partition keep the order in which they were sent, and so do the events of a
user within one call.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from herald.config import KafkaSettings
from herald.errors import TransientError
from schemas.wire import encode_events, partition_key

__all__ = ["EventProducer", "KafkaUnavailable", "bounded_records", "partition_for"]

logger = logging.getLogger(__name__)

# Keeps a record (a micro-batch of events) well under Kafka's default 1 MiB message limit.
_MAX_RECORD_BYTES = 512 * 1024


class KafkaUnavailable(TransientError):
    """Kafka did not acknowledge a write; the caller may retry."""


def partition_for(key: str, partition_count: int) -> int:
    """Pick the partition Kafka's default partitioner picks for `key` (murmur2)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partition_count


class EventProducer:
    """Sends envelopes and rejections to Kafka; one instance per process."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._partition_count = 0
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect and learn the partition count of the events topic; a no-op once started.

        Raises:
            KafkaUnavailable: the broker is unreachable or the events topic is missing.
        """
        async with self._start_lock:
            if self._partition_count:
                return
            try:
                self._partition_count = await asyncio.wait_for(
                    self._connect(), self._settings.send_timeout_s
                )
            except TimeoutError:
                raise KafkaUnavailable(
                    f"Kafka at {self._settings.bootstrap_servers} did not respond within "
                    f"{self._settings.send_timeout_s:g} s"
                ) from None
        logger.info(
            "producer started",
            extra={"topic": self._settings.events_topic, "partitions": self._partition_count},
        )

    async def _connect(self) -> int:
        producer = self._new_producer()
        try:
            await producer.start()
            partitions = await producer.partitions_for(self._settings.events_topic)
        except KafkaError as error:
            await producer.stop()
            raise KafkaUnavailable(
                f"cannot reach Kafka at {self._settings.bootstrap_servers}: {error}"
            ) from error
        except asyncio.CancelledError:
            await producer.stop()
            raise
        if not partitions:
            await producer.stop()
            raise KafkaUnavailable(
                f"topic '{self._settings.events_topic}' does not exist; run `herald kafka topics`"
            )
        self._producer = producer
        return len(partitions)

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._settings.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_request_size=2 * _MAX_RECORD_BYTES,
            request_timeout_ms=int(self._settings.request_timeout_s * 1000),
            client_id="herald-producer",
        )

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
            self._partition_count = 0
            logger.info("producer stopped")

    @property
    def partition_count(self) -> int:
        return self._partition_count

    async def send_events(self, envelopes: Sequence[tuple[dict[str, Any], bytes]]) -> None:
        """Write (envelope, its JSON) pairs as one micro-batch record per partition.

        Raises:
            KafkaUnavailable: the broker did not acknowledge every record in time.
        """
        await self.start()
        batches: dict[int, list[bytes]] = defaultdict(list)
        for envelope, encoded in envelopes:
            batches[partition_for(partition_key(envelope), self._partition_count)].append(encoded)
        sends = [
            self._send(self._settings.events_topic, value, partition)
            for partition, encoded in batches.items()
            for value in bounded_records(encoded)
        ]
        await self._await_all(sends)

    async def send_rejections(self, rejections: Sequence[bytes]) -> None:
        """Write rejected events, each with its reason, to the rejected topic."""
        await self.start()
        await self._await_all(
            [self._send(self._settings.rejected_topic, value, None) for value in rejections]
        )

    async def _send(self, topic: str, value: bytes, partition: int | None) -> asyncio.Future[Any]:
        assert self._producer is not None, "start() succeeded, so a producer exists"
        return await self._producer.send(topic, value=value, partition=partition)

    async def _await_all(self, sends: list[Any]) -> None:
        try:
            async with asyncio.timeout(self._settings.send_timeout_s):
                futures = await asyncio.gather(*sends)
                await asyncio.gather(*futures)
        except KafkaError as error:
            raise KafkaUnavailable(f"Kafka did not acknowledge the write: {error}") from error
        except TimeoutError:
            raise KafkaUnavailable(
                f"Kafka did not acknowledge the write within {self._settings.send_timeout_s:g} s"
            ) from None


def bounded_records(encoded: list[bytes]) -> list[bytes]:
    """Group serialised envelopes into record values of bounded size, keeping their order."""
    records: list[bytes] = []
    start, size = 0, 0
    for index, item in enumerate(encoded):
        if size and size + len(item) > _MAX_RECORD_BYTES:
            records.append(encode_events(encoded[start:index]))
            start, size = index, 0
        size += len(item) + 1
    records.append(encode_events(encoded[start:]))
    return records
