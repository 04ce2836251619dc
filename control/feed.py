"""Publishing of control-plane changes to the compacted `campaigns` topic.

Each record's key is a resource id (`cmp_…`, `seg_…`, `lbl_…`) and its value is
`{"kind": …, "id": …, "definition": {…}}` with the full current definition as JSON; a
deleted resource gets a tombstone (a null value), so compaction drops it. Workers read
the topic from the start into a global table.

Delivery is at least once, in commit order: `FeedPublisher` sends the outbox rows that
`control.outbox` committed with each change and deletes them only after Kafka
acknowledged them. A crash between the two sends some records again, which a compacted
topic absorbs because a repeat carries the same value as the original.

NOTE: one publisher per control database is assumed. Two API processes on one database
can both send a row, so a stale repeat may land after a newer value of its key. A
PostgreSQL advisory lock around `publish_pending` would remove that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from control.db import ControlStore
from control.models import FeedOutbox
from herald.config import KafkaSettings
from streams.topics import TopicAdminError, ensure_topics, herald_topics

__all__ = ["FeedPublisher"]

logger = logging.getLogger(__name__)

_BATCH_ROWS = 500
_MAX_BACKOFF_S = 30.0


class FeedPublisher:
    """Sends the outbox to Kafka whenever a commit wakes it, and every `poll_interval_s`.

    While Kafka is down the API keeps working. The publisher logs a warning, backs off and
    retries, and changes wait in the outbox until it can send them.
    """

    def __init__(
        self, store: ControlStore, kafka: KafkaSettings, poll_interval_s: float = 5.0
    ) -> None:
        self._store = store
        self._kafka = kafka
        self._poll_interval_s = poll_interval_s
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Start the publishing task and subscribe it to the store's commits."""
        self._loop = asyncio.get_running_loop()
        self._store.on_commit(self.wake)
        self._task = asyncio.create_task(self._run(), name="control-feed")

    def wake(self) -> None:
        """Ask the task to publish now; safe to call from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def stop(self) -> None:
        """Stop the task after a last attempt to publish what is queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                await self.publish_pending()
            await self._producer.stop()
            self._producer = None

    async def publish_pending(self) -> int:
        """Send every queued row in commit order; return how many were sent."""
        if self._producer is None:
            return 0
        sent = 0
        while rows := await asyncio.to_thread(self._read_batch):
            await self._send(self._producer, rows)
            await asyncio.to_thread(self._delete, [row.id for row in rows])
            sent += len(rows)
        return sent

    async def _run(self) -> None:
        backoff_s = 0.5
        while True:
            try:
                await self._connect()
                sent = await self.publish_pending()
                if sent:
                    logger.debug("published %s feed records", sent)
                backoff_s = 0.5
            except (KafkaError, TopicAdminError, OSError, SQLAlchemyError) as error:
                logger.warning(
                    "cannot publish to the campaigns topic, retrying in %ss: %s",
                    backoff_s,
                    error,
                    extra={"topic": self._kafka.campaigns_topic},
                )
                await self._reset_producer()
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval_s)
            self._wakeup.clear()

    async def _connect(self) -> None:
        if self._producer is not None:
            return
        specs = [s for s in herald_topics(self._kafka) if s.name == self._kafka.campaigns_topic]
        await ensure_topics(self._kafka, specs)
        producer = AIOKafkaProducer(
            bootstrap_servers=self._kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=int(self._kafka.request_timeout_s * 1000),
        )
        await producer.start()
        self._producer = producer
        logger.info(
            "publishing control-plane changes", extra={"topic": self._kafka.campaigns_topic}
        )

    async def _reset_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                await self._producer.stop()
            self._producer = None

    async def _send(self, producer: AIOKafkaProducer, rows: Sequence[FeedOutbox]) -> None:
        futures = [
            await producer.send(
                self._kafka.campaigns_topic,
                key=row.key.encode(),
                value=None if row.value is None else row.value.encode(),
            )
            for row in rows
        ]
        await asyncio.gather(*futures)

    def _read_batch(self) -> list[FeedOutbox]:
        with self._store.session() as session:
            query = select(FeedOutbox).order_by(FeedOutbox.id).limit(_BATCH_ROWS)
            return list(session.scalars(query))

    def _delete(self, ids: list[int]) -> None:
        with self._store.session() as session:
            session.execute(delete(FeedOutbox).where(FeedOutbox.id.in_(ids)))
            session.commit()
