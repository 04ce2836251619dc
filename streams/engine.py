"""The real-time engine in the worker: events in, send commands out, in Kafka transactions.

Each poll of the events topic is processed by one `PartitionEngine` per assigned
partition. Its results are written in one Kafka transaction:
- the send commands, to `sends.<channel>`, as micro-batches like the events: a record is
  a JSON array of the commands of one events partition's users, in the same partition
  number of the sends topic;
- the Notification Sent and Not Sent events, to `events`;
- the changed user states, to the compacted state topic;
- the consumed offsets.

Either all of it becomes visible to `read_committed` consumers or none of it does. A
worker killed at any moment therefore leaves no send command whose state change was
lost, and the events it consumes again after a restart find their send ids in the ledger.

One transaction is in flight while the next poll is processed. Its records are serialised
first, so it contains the states as of its own offsets. A failed commit ends the run, and
the worker starts a new engine that restores the committed states.

Why not a Faust table: a Faust agent commits offsets and writes its changelog outside
any transaction, so a crash between a send and its ledger entry would send twice on
restart. The state topic is restored on assignment by reading the assigned partitions
from the beginning, which is what Faust does without a local store.

Control records: a record on the events topic with the header `herald-control: flush`
makes the engine decide the pending sends of that partition whose time has passed by the
wall clock. Its value is an empty array, which every other consumer reads as no events.
`herald replay --flush` writes one per partition once a replay of history is accepted.

Guarantee: every send id at most once on `sends.<channel>`, as long as one worker at a
time owns a partition. NOTE: fencing uses a transactional id per worker, not per
partition, so a worker that hangs past the session timeout while its partitions move
could still commit one last transaction.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiokafka.producer.sender
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import InvalidSessionTimeoutError
from aiokafka.structs import ConsumerRecord

from domain.delivery import AccountRules
from domain.engine import CampaignSet, Effects, EngineRules, PartitionEngine, fit_state
from domain.profiles import MAX_TRAITS_BYTES, list_traits
from domain.triggers import epoch_us
from herald.config import HeraldSettings, KafkaSettings
from schemas.campaign import SELF_TRIGGERING_EVENTS
from schemas.delivery import AccountDeliverySettings
from schemas.envelope import format_timestamp
from schemas.wire import (
    ENGINE_ORIGIN,
    ORIGIN_HEADER,
    decode_events,
    envelope_problem,
    origin_problem,
    written_by_engine,
)
from streams.catalog import CampaignCatalog
from streams.fencing import fence_offset_commits, member_of
from streams.producer import bounded_records
from streams.topics import TopicAdminError, existing_topics

__all__ = [
    "CONTROL_HEADER",
    "ENGINE_ORIGIN",
    "FLUSH",
    "ORIGIN_HEADER",
    "EngineStats",
    "StreamEngine",
    "engine_consumer",
    "engine_producer",
    "engine_rules",
    "request_flush",
]

logger = logging.getLogger(__name__)

CONTROL_HEADER = "herald-control"
FLUSH = b"flush"
# aiokafka's record builder takes headers as a list only; it does not change them.
_ENGINE_HEADERS = [(ORIGIN_HEADER, ENGINE_ORIGIN)]
_NO_HEADERS: list[tuple[str, bytes]] = []
_META_KEY = b"partition"
_Headers = list[tuple[str, bytes]]
# (topic, key, value, partition, headers) of one record to write.
_Record = tuple[str, bytes | None, bytes | None, int, _Headers]
_USER_PREFIX = "u:"
_IDLE_TICK_S = 1.0
_POLL_MS = 100
# A transaction that starts while the broker still writes the markers of the one before
# gets CONCURRENT_TRANSACTIONS on its first AddPartitionsToTxn, and aiokafka 0.14 retries
# after a fixed 20 ms. The engine starts transactions back to back, so nearly every one
# waited those 20 ms, which was most of a send's latency. Writing the markers takes a few
# milliseconds. NOTE: this sets a module constant of aiokafka, for every transactional
# producer in the process.
_CONCURRENT_TRANSACTIONS_BACKOFF_S = 0.002
# At most one warning per partition this often about events too old or new to trigger.
_UNTIMELY_LOG_S = 60.0
# A user's state is one record, and brokers reject records past 1 MiB by default
# (`message.max.bytes`). The margin covers the record's key and batch headers.
_MAX_STATE_BYTES = 960 * 1024
# A step that closed many windows writes as many sends, events and states. Encoding and
# batching them all in one go held the event loop for most of a second.
_RECORDS_PER_YIELD = 5_000
# Pending sends that a step may make due before it runs in a thread: 5,000 take about a
# quarter of a second.
_OFF_LOOP_DUE = 5_000
# A cap on the API's limit for events dated ahead, so that the engine's bound stays a valid date.
_MAX_AHEAD_S = 366 * 24 * 3600
# How often the objects alive so far leave the collector's view, see `_freeze_heap`.
_FREEZE_INTERVAL_S = 60.0


@dataclass(slots=True)
class EngineStats:
    """Counters since start; read by the benchmark and the periodic log line."""

    events: int = 0
    sends: int = 0
    transactions: int = 0
    not_sent: Counter[str] = field(default_factory=Counter)


def engine_rules(settings: HeraldSettings) -> EngineRules:
    engine = settings.engine
    delivery = AccountDeliverySettings(
        frequency_caps=engine.frequency_caps, control_group_percent=engine.control_group_percent
    )
    return EngineRules(
        account=AccountRules(engine.timezone, delivery),
        max_lateness_us=int(engine.max_lateness_s * 1_000_000),
        max_future_us=int(engine.max_future_s * 1_000_000),
        partitions=settings.kafka.partitions,
    )


class StreamEngine(ConsumerRebalanceListener):
    """Runs the engine over the events topic until cancelled."""

    def __init__(
        self, settings: HeraldSettings, catalog: CampaignCatalog, catalog_ready: asyncio.Event
    ) -> None:
        self._settings = settings
        self._kafka = settings.kafka
        self._rules = engine_rules(settings)
        self._catalog = catalog
        self._catalog_ready = catalog_ready
        self._campaigns = CampaignSet()
        self._catalog_version = -1
        self._partitions: dict[int, PartitionEngine] = {}
        self._last_record_s: dict[int, float] = {}
        self._last_tick_s: dict[int, float] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._sends_partitions: dict[str, int] = {}
        self._committing: asyncio.Task[None] | None = None
        self._failure: Exception | None = None
        self._frozen_s = time.monotonic()
        self._untimely: dict[int, int] = {}
        self._untimely_logged_s: dict[int, float] = {}
        # Partitions assigned to this worker whose states are not yet restored.
        self._unrestored: set[int] = set()
        self.stats = EngineStats()

    # Lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume, decide and commit until cancelled; the first failure ends the run."""
        engine = self._settings.engine
        transactional_id = engine.transactional_id or (
            f"{engine.group_id}-{socket.gethostname()}-{self._settings.worker_web_port}"
        )
        if not self._catalog_ready.is_set():
            logger.info("engine waiting for the campaign catalog")
            await self._catalog_ready.wait()

        self._producer = engine_producer(self._settings, transactional_id)
        self._consumer = engine_consumer(self._settings)
        consumer = self._consumer
        # A worker that its group dropped must not commit what it decided for partitions
        # that another worker owns by then.
        fence_offset_commits(self._producer, lambda: member_of(consumer, engine.group_id))
        try:
            # Starting the producer first aborts a transaction that a killed predecessor
            # with the same id left open. Until then, read_committed consumers could not
            # pass it.
            await self._producer.start()
            topics = [self._kafka.events_topic, self._kafka.engine_runs_topic]
            self._consumer.subscribe(topics, listener=self)
            await self._consumer.start()
            logger.info(
                "engine started",
                extra={"group_id": engine.group_id, "transactional_id": transactional_id},
            )
            await self._loop()
        except InvalidSessionTimeoutError as error:
            raise RuntimeError(
                f"the broker rejected the engine's session timeout of "
                f"{engine.session_timeout_s:g} s; set HERALD_ENGINE__SESSION_TIMEOUT_S within "
                "the broker's group.min.session.timeout.ms and group.max.session.timeout.ms"
            ) from error
        finally:
            if self._committing is not None:
                # A worker that stops lets its last transaction finish.
                try:
                    await self._finish_commit()
                except Exception:
                    logger.exception("engine transaction failed while stopping")
            await self._consumer.stop()
            await self._producer.stop()
            logger.info("engine stopped", extra={"events": self.stats.events})

    async def _loop(self) -> None:
        assert self._consumer is not None, "run() started the consumer"
        while True:
            if self._unrestored:
                async with self._lock:
                    await self._restore_assigned()
            batches = await self._consumer.getmany(
                timeout_ms=_POLL_MS, max_records=self._settings.engine.max_poll_records
            )
            async with self._lock:
                if self._failure is not None:
                    raise self._failure
                await self._step(batches)

    # Rebalance -------------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # The transaction in flight commits before the partitions go to another worker.
        async with self._lock:
            try:
                await self._finish_commit()
            except Exception as error:
                # aiokafka only logs what a rebalance listener raises, and the states of
                # the partitions kept include what failed to commit: end the run.
                logger.exception("engine transaction failed before a rebalance")
                self._failure = error
            for tp in revoked:
                self._partitions.pop(tp.partition, None)
                self._unrestored.discard(tp.partition)
            if revoked:
                logger.info(
                    "engine partitions revoked",
                    extra={"partitions": sorted({tp.partition for tp in revoked})},
                )

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # aiokafka sends no heartbeat until this callback returns, so a restore here that
        # outlasts the session timeout got the worker evicted, and it restored again on
        # rejoining, without end. The new partitions wait, paused, for `_restore_assigned`
        # in the loop instead.
        assert self._consumer is not None, "run() started the consumer"
        waiting = [tp for tp in assigned if tp.partition not in self._partitions]
        self._consumer.pause(*waiting)
        self._unrestored.update(tp.partition for tp in waiting)

    async def _restore_assigned(self) -> None:
        assert self._consumer is not None, "run() started the consumer"
        assignment = self._consumer.assignment()
        new = sorted({tp.partition for tp in assignment} & self._unrestored - set(self._partitions))
        self._unrestored.clear()
        if not new:
            return
        started_s = time.monotonic()
        self._count_partitions()
        restored = await self._restore(new)
        now_s = time.monotonic()
        for partition in new:
            users, meta = restored[partition]
            self._partitions[partition] = PartitionEngine(partition, self._rules, users, meta)
            self._last_record_s[partition] = now_s
            self._last_tick_s[partition] = now_s
        _freeze_heap()
        self._frozen_s = now_s
        # A rebalance during the restore may have taken some of them away again.
        self._consumer.resume(*(tp for tp in self._consumer.assignment() if tp.partition in new))
        logger.info(
            "engine partitions assigned",
            extra={
                "partitions": new,
                "users": sum(len(users) for users, _ in restored.values()),
                "restore_ms": round((now_s - started_s) * 1000),
            },
        )

    def _count_partitions(self) -> None:
        # The topic may have been created with another count than the settings give, and
        # each partition's share of throttles and limits depends on the real one.
        assert self._consumer is not None, "run() started the consumer"
        count = len(self._consumer.partitions_for_topic(self._kafka.events_topic) or ())
        if count and count != self._rules.partitions:
            logger.info(
                "engine counts the events topic's partitions",
                extra={"partitions": count, "configured": self._rules.partitions},
            )
            self._rules = replace(self._rules, partitions=count)

    async def _restore(
        self, partitions: list[int]
    ) -> dict[int, tuple[dict[str, dict[str, Any]], dict[str, Any] | None]]:
        """Read the assigned partitions of the state topic to their end."""
        restored: dict[int, tuple[dict[str, dict[str, Any]], dict[str, Any] | None]] = {
            partition: ({}, None) for partition in partitions
        }
        reader = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap_servers,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id="herald-engine-restore",
        )
        await reader.start()
        try:
            tps = [TopicPartition(self._kafka.engine_state_topic, p) for p in partitions]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            ends = await reader.end_offsets(tps)
            while True:
                behind = [tp for tp in tps if await reader.position(tp) < ends[tp]]
                if not behind:
                    break
                batches = await reader.getmany(*behind, timeout_ms=500)
                for tp, records in batches.items():
                    users, meta = restored[tp.partition]
                    for record in records:
                        meta = _restore_record(users, record) or meta
                    restored[tp.partition] = (users, meta)
        finally:
            await reader.stop()
        return restored

    # Processing ------------------------------------------------------------------------

    async def _step(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        campaigns = self._current_campaigns()
        now = datetime.now(UTC)
        now_s = time.monotonic()
        if now_s - self._frozen_s >= _FREEZE_INTERVAL_S:
            _freeze_heap()
            self._frozen_s = now_s
        effects: dict[int, Effects] = {}
        offsets: dict[TopicPartition, int] = {}
        for partition, engine in self._partitions.items():
            # A campaign stopped since the last step has its held sends reported now,
            # not when the partition's next record or idle tick comes.
            synced = engine.sync(campaigns, now)
            if _worth_writing(synced):
                effects[partition] = synced
        for tp, records in batches.items():
            engine = self._partitions.get(tp.partition)
            if engine is None or not records:
                continue
            if tp.topic == self._kafka.engine_runs_topic:
                result = self._process_runs(engine, records, campaigns, now)
            else:
                result = await self._process_records(engine, records, campaigns, now)
            _merge(effects.setdefault(tp.partition, Effects()), result)
            _log_rejected_traits(tp.partition, result)
            if result.untimely:
                self._untimely[tp.partition] = self._untimely.get(tp.partition, 0) + result.untimely
            offsets[tp] = records[-1].offset + 1
            self._last_record_s[tp.partition] = now_s
            self._last_tick_s[tp.partition] = now_s
        if self._untimely:
            self._log_untimely(now_s)
        busy = {tp.partition for tp in offsets}
        for partition, engine in self._partitions.items():
            if partition not in busy:
                idle = await self._idle_advance(partition, engine, campaigns, now, now_s)
                if idle is not None:
                    _merge(effects.setdefault(partition, Effects()), idle)
        if self._committing is not None and self._committing.done():
            # Raise a failed commit now, even when this poll has nothing to write.
            await self._finish_commit()
        if any(_worth_writing(e) for e in effects.values()) or offsets:
            await self._start_commit(effects, offsets)

    def _log_untimely(self, now_s: float) -> None:
        # A replay of old history after live traffic triggers nothing, which would
        # otherwise go unnoticed. One line a minute per partition is enough to see it, and
        # a count held back by that limit is logged at the first step after it.
        for partition, count in list(self._untimely.items()):
            last_s = self._untimely_logged_s.get(partition)
            if last_s is not None and now_s - last_s < _UNTIMELY_LOG_S:
                continue
            self._untimely_logged_s[partition] = now_s
            del self._untimely[partition]
            engine = self._partitions.get(partition)
            watermark_us = engine.watermark_us if engine is not None else None
            logger.warning(
                "engine: %d events too far from the partition's event time to trigger a "
                "campaign (more than %d s behind it or %d s ahead); they still updated profiles",
                count,
                self._rules.max_lateness_us // 1_000_000,
                self._rules.max_future_us // 1_000_000,
                extra={
                    "partition": partition,
                    "watermark": (
                        datetime.fromtimestamp(watermark_us / 1e6, UTC).isoformat()
                        if watermark_us is not None
                        else None
                    ),
                },
            )

    async def _process_records(
        self,
        engine: PartitionEngine,
        records: list[ConsumerRecord],
        campaigns: CampaignSet,
        now: datetime,
    ) -> Effects:
        total = Effects()
        skips_own = not engine.reads_notifications(campaigns)
        # The API rejects events dated further ahead. Written to Kafka directly, such an
        # event could make the engine compute local dates past the year 9999.
        ahead_s = min(self._settings.ingest.max_future_skew_s, _MAX_AHEAD_S)
        latest = format_timestamp(now + timedelta(seconds=ahead_s))
        for record in records:
            if _is_flush(record):
                flushed = await _off_loop(
                    "flushed", engine.partition, engine.flush, campaigns, now, log_empty=True
                )
                _merge(total, flushed)
                continue
            from_engine = written_by_engine(record.headers)
            if skips_own and from_engine:
                # The engine passes over its own Notification events unread when no live
                # audience counts them.
                continue
            try:
                decoded = decode_events(record.value)
            except ValueError as error:
                # The landing routes the same record to the rejected topic.
                logger.warning(
                    "engine skipped an undecodable record: %s",
                    error,
                    extra={"partition": record.partition, "offset": record.offset},
                )
                continue
            # Each record's events are processed before the next record is decoded: a
            # poll can bring hundreds of thousands of events, and holding them all decoded
            # at once made every step slower through the memory it took.
            envelopes: list[dict[str, Any]] = []
            for envelope in decoded:
                if skips_own and _is_own_notification(envelope):
                    continue
                problem = envelope_problem(envelope)
                if problem is None:
                    # The landing rejects these too, so segments over Parquet agree.
                    problem = origin_problem(envelope, from_engine)
                # Checked timestamps sort as text, to within a second.
                if problem is None and envelope["timestamp"] > latest:
                    problem = (
                        f"timestamp {envelope['timestamp']!r} is more than {ahead_s:g} s "
                        "after the worker's clock"
                    )
                if problem is None:
                    envelopes.append(envelope)
                else:
                    logger.warning(
                        "engine skipped an invalid event: %s",
                        problem,
                        extra={"partition": record.partition, "offset": record.offset},
                    )
            self.stats.events += len(envelopes)
            if _closes_many(engine, envelopes, now):
                result = await _off_loop(
                    "processed a record that moved the watermark of",
                    engine.partition,
                    engine.process,
                    envelopes,
                    campaigns,
                    now,
                )
            else:
                result = engine.process(envelopes, campaigns, now)
            _merge(total, result)
            # The transaction in flight advances only while the event loop runs, because
            # each of its steps waits for the broker. Yielding here sends its next request.
            await asyncio.sleep(0)
        return total

    def _process_runs(
        self,
        engine: PartitionEngine,
        records: list[ConsumerRecord],
        campaigns: CampaignSet,
        now: datetime,
    ) -> Effects:
        total = Effects()
        for record in records:
            try:
                request = orjson.loads(record.value)
                _merge(total, engine.run(request, campaigns, now))
            except (ValueError, KeyError, TypeError) as error:
                logger.error(
                    "engine skipped a run request it cannot read: %s",
                    error,
                    extra={"partition": record.partition, "offset": record.offset},
                )
        return total

    async def _idle_advance(
        self,
        partition: int,
        engine: PartitionEngine,
        campaigns: CampaignSet,
        now: datetime,
        now_s: float,
    ) -> Effects | None:
        idle_s = self._settings.engine.idle_watermark_s
        if engine.watermark_us is None or now_s - self._last_record_s[partition] < idle_s:
            return None
        step_s = now_s - self._last_tick_s[partition]
        if step_s < _IDLE_TICK_S:
            return None
        self._last_tick_s[partition] = now_s
        target_us = engine.watermark_us + int(step_s * 1_000_000)
        wall_us = int(now.timestamp() * 1_000_000)
        if wall_us - engine.watermark_us <= self._rules.max_lateness_us:
            # Live traffic: the quiet partition's event time is the wall clock. A watermark
            # ahead of it, moved by an event whose clock runs ahead, waits for the clock
            # rather than walk on ahead of it. A watermark far behind the clock belongs to
            # a replay of history, which only walks on.
            target_us = wall_us
        if target_us <= engine.watermark_us:
            return None
        return await _off_loop(
            "moved the idle watermark of", partition, engine.advance, target_us, campaigns, now
        )

    def _current_campaigns(self) -> CampaignSet:
        if self._catalog.version != self._catalog_version:
            self._catalog_version = self._catalog.version
            self._campaigns = self._catalog.live_campaigns()
            logger.info(
                "engine campaigns loaded",
                extra={
                    "campaigns": sorted(self._campaigns.by_id),
                    "catalog_version": self._catalog_version,
                },
            )
        return self._campaigns

    async def _start_commit(
        self, effects: dict[int, Effects], offsets: dict[TopicPartition, int]
    ) -> None:
        """Serialise the results now, then commit them in a task of their own.

        The states are encoded before the next poll is processed, because processing
        changes them in place and the transaction must hold them as of its offsets. While
        the broker confirms one transaction, the engine decides the next poll's sends.
        """
        records: list[_Record] = []
        for partition, result in effects.items():
            records += await self._records(partition, result)
        await self._finish_commit()
        self._committing = asyncio.create_task(self._commit(records, offsets, effects))

    async def _finish_commit(self) -> None:
        """Wait for the transaction in flight; raise its error if it failed."""
        committing, self._committing = self._committing, None
        if committing is not None:
            await committing

    async def _commit(
        self,
        records: list[_Record],
        offsets: dict[TopicPartition, int],
        effects: dict[int, Effects],
    ) -> None:
        assert self._producer is not None, "run() started the producer"
        producer = self._producer
        async with producer.transaction():
            pending = await self._send_batches(records)
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self._settings.engine.group_id)
            await asyncio.gather(*pending)
        self.stats.transactions += 1
        for result in effects.values():
            self.stats.sends += len(result.sends)
            for (campaign_id, reason), count in result.reasons.items():
                self.stats.not_sent[reason] += count
                logger.debug(
                    "not sent", extra={"campaign_id": campaign_id, "reason": reason, "count": count}
                )

    async def _send_batches(self, records: list[_Record]) -> list[Any]:
        """Send the records as one record batch per topic partition, in their order.

        Per record, `producer.send` costs tens of microseconds of Python. Building the
        batches directly costs a few, which matters most for the state records.
        """
        assert self._producer is not None, "run() started the producer"
        producer = self._producer
        by_partition: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, _Headers]]] = {}
        for topic, key, value, partition, headers in records:
            by_partition.setdefault((topic, partition), []).append((key, value, headers))
        futures = []
        for (topic, partition), items in by_partition.items():
            batch = producer.create_batch()
            for count, (key, value, headers) in enumerate(items, 1):
                if count % _RECORDS_PER_YIELD == 0:
                    await asyncio.sleep(0)
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    # A new batch takes its first record whatever its size.
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

    async def _records(self, partition: int, result: Effects) -> list[_Record]:
        engine = self._partitions[partition]
        records: list[_Record] = []
        by_topic: dict[str, list[bytes]] = {}
        for count, command in enumerate(result.sends, 1):
            if count % _RECORDS_PER_YIELD == 0:
                await asyncio.sleep(0)
            topic = self._kafka.sends_topic_prefix + command["channel"]
            by_topic.setdefault(topic, []).append(orjson.dumps(command))
        for topic, encoded in by_topic.items():
            target = await self._sends_partition(topic, partition)
            records += [
                (topic, None, value, target, _NO_HEADERS) for value in bounded_records(encoded)
            ]
        if result.events:
            encoded = []
            for count, event in enumerate(result.events, 1):
                if count % _RECORDS_PER_YIELD == 0:
                    await asyncio.sleep(0)
                encoded.append(orjson.dumps(event))
            events_topic = self._kafka.events_topic
            records += [
                (events_topic, None, value, partition, _ENGINE_HEADERS)
                for value in bounded_records(encoded)
            ]
        state_topic = self._kafka.engine_state_topic
        for count, key in enumerate(result.changed, 1):
            if count % _RECORDS_PER_YIELD == 0:
                await asyncio.sleep(0)
            state = engine.users.get(key)
            value = orjson.dumps(state) if state is not None else None
            if value is not None and len(value) > _MAX_STATE_BYTES:
                value = _fitted(partition, key, state, len(value))
                if value is None:
                    continue
            records.append(
                (state_topic, (_USER_PREFIX + key).encode(), value, partition, _NO_HEADERS)
            )
        if result.meta_changed:
            records.append(
                (state_topic, _META_KEY, orjson.dumps(engine.meta()), partition, _NO_HEADERS)
            )
        return records

    async def _sends_partition(self, topic: str, partition: int) -> int:
        """Return the partition of `topic` for the users of an events partition: the same
        number, or its remainder when the topic was created with fewer partitions."""
        count = self._sends_partitions.get(topic)
        if count is None:
            assert self._producer is not None, "run() started the producer"
            count = len(await self._producer.partitions_for(topic))
            self._sends_partitions[topic] = count
        return partition % count


def engine_producer(settings: HeraldSettings, transactional_id: str) -> AIOKafkaProducer:
    """Return the engine's transactional producer, not started."""
    if hasattr(aiokafka.producer.sender, "BACKOFF_OVERRIDE"):
        aiokafka.producer.sender.BACKOFF_OVERRIDE = _CONCURRENT_TRANSACTIONS_BACKOFF_S
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=1,
        max_request_size=8 * 1024 * 1024,
        # A transaction writes one batch per partition, and a full batch waits for the
        # one before it to leave. Half the broker's default `message.max.bytes` (1 MiB),
        # because the broker limits whole batches.
        max_batch_size=512 * 1024,
        transaction_timeout_ms=int(settings.engine.transaction_timeout_s * 1000),
        # Brokers that verify transactional writes reject some with NOT_ENOUGH_REPLICAS
        # until the coordinator confirms the partition. The retry succeeds, and the
        # default wait of 100 ms before it would add as much to the send latency.
        retry_backoff_ms=10,
        client_id="herald-engine",
    )


def engine_consumer(settings: HeraldSettings) -> AIOKafkaConsumer:
    """Return the engine's consumer of its group, not started and not subscribed."""
    engine = settings.engine
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=engine.group_id,
        # Range assignment gives one worker the same partition of both topics, so a
        # run's members meet the state of their users.
        partition_assignment_strategy=(RangePartitionAssignor,),
        client_id="herald-engine",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_wait_ms=engine.fetch_max_wait_ms,
        fetch_min_bytes=engine.fetch_min_bytes,
        session_timeout_ms=int(engine.session_timeout_s * 1000),
        # Kafka's consumer configuration advises a heartbeat interval of at most a third
        # of the session timeout (`heartbeat.interval.ms`).
        heartbeat_interval_ms=int(engine.session_timeout_s * 1000 / 3),
    )


async def request_flush(kafka: KafkaSettings) -> int:
    """Ask the engine to decide every pending send: one flush record per events partition.

    Each record lands behind the events already written to its partition, so the engine
    flushes only after it has processed them. Returns the number of partitions.

    Raises:
        TopicAdminError: the events topic does not exist, or Kafka could not be reached.
        KafkaError: the flush records were not written.
    """
    # Writing to a missing topic would create it on a broker that creates topics on use,
    # and the flush would seem to succeed.
    if kafka.events_topic not in await existing_topics(kafka):
        raise TopicAdminError(
            f"topic {kafka.events_topic!r} does not exist on Kafka at "
            f"{kafka.bootstrap_servers}; check HERALD_KAFKA__EVENTS_TOPIC"
        )
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=int(kafka.request_timeout_s * 1000),
        client_id="herald-flush",
    )
    try:
        await producer.start()
        partitions = sorted(await producer.partitions_for(kafka.events_topic))
        futures = [
            await producer.send(
                kafka.events_topic,
                value=b"[]",
                partition=partition,
                headers=[(CONTROL_HEADER, FLUSH)],
            )
            for partition in partitions
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(partitions)


async def _off_loop(
    action: str,
    partition: int,
    decide: Callable[..., Effects],
    *args: Any,
    log_empty: bool = False,
) -> Effects:
    """Run a step that may decide any number of pending sends in a thread of its own.

    After a replay, or after the worker was down, one flush or one idle step can close
    tens of thousands of windows, which takes seconds. On the event loop, that held back
    aiokafka's heartbeats until the group evicted the worker. The thread gives the loop
    the interpreter lock every few milliseconds, and the engine's lock keeps every other
    step off the partitions meanwhile.

    Records of events go there too when their times move the watermark as far. The step
    is logged when it decided something, or always with `log_empty`.
    """
    started_s = time.monotonic()
    effects = await asyncio.to_thread(decide, *args)
    not_sent = sum(effects.reasons.values())
    if effects.sends or not_sent or log_empty:
        logger.info(
            "engine %s partition %d: %d sent, %d not sent",
            action,
            partition,
            len(effects.sends),
            not_sent,
            extra={
                "partition": partition,
                "sends": len(effects.sends),
                "not_sent": not_sent,
                "decide_ms": round((time.monotonic() - started_s) * 1000),
            },
        )
    return effects


def _closes_many(engine: PartitionEngine, envelopes: list[dict[str, Any]], now: datetime) -> bool:
    """Tell whether the events may make many pending sends due, as the first live events
    after a replay of history do."""
    if not envelopes or engine.scheduled < _OFF_LOOP_DUE:
        return False
    # Checked timestamps sort as text, except that a time without a fraction sorts after
    # the same second with one, so a second more covers every event.
    latest = max(envelope["timestamp"] for envelope in envelopes)
    received = max(envelope["received_at"] for envelope in envelopes)
    reach_us = engine.reach_us(received, int(now.timestamp() * 1_000_000))
    until_us = min(epoch_us(latest), reach_us) + 1_000_000
    return engine.due_count(until_us, _OFF_LOOP_DUE) >= _OFF_LOOP_DUE


def _restore_record(
    users: dict[str, dict[str, Any]], record: ConsumerRecord
) -> dict[str, Any] | None:
    """Apply one state record; return the partition record when it is one."""
    if record.key == _META_KEY:
        return orjson.loads(record.value) if record.value is not None else None
    key = record.key.decode() if record.key else ""
    if not key.startswith(_USER_PREFIX):
        return None
    user = key[len(_USER_PREFIX) :]
    if record.value is None:
        users.pop(user, None)
    else:
        users[user] = orjson.loads(record.value)
    return None


def _freeze_heap() -> None:
    """Collect garbage, then move every object alive out of the collector's generations.

    A full collection visits every tracked object, so with the states of many users it
    paused the engine for hundreds of milliseconds (450 ms with 10,000 users in
    `python -m bench.triggers`, 2-core VM), which set the p99 send latency. After a freeze,
    a collection visits only the objects made since. The collection before it frees the
    cyclic garbage made since the last freeze, and reference counting frees frozen
    objects, because the states are trees without reference cycles.
    NOTE: a reference cycle that includes an object frozen earlier is never collected.
    """
    gc.collect()
    gc.freeze()


def _is_own_notification(envelope: Any) -> bool:
    # Runs before validation, so the event name may be of any JSON type.
    if not isinstance(envelope, dict):
        return False
    event = envelope.get("event")
    return isinstance(event, str) and event in SELF_TRIGGERING_EVENTS


def _is_flush(record: ConsumerRecord) -> bool:
    return any(name == CONTROL_HEADER and value == FLUSH for name, value in record.headers or ())


def _fitted(partition: int, key: str, state: Any, size: int) -> bytes | None:
    """Return a user's state trimmed to fit one record, or None when even that fails."""
    value, trimmed = fit_state(state, _MAX_STATE_BYTES)
    extra = {"partition": partition, "user": key, "bytes_before": size, "bytes_after": len(value)}
    if len(value) > _MAX_STATE_BYTES:
        # NOTE: the state stays in memory only; a restart brings back its last stored form.
        logger.error(
            "engine failed to store a user's state: %d bytes after trimming, more than the "
            "%d that fit one record",
            len(value),
            _MAX_STATE_BYTES,
            extra=extra,
        )
        return None
    logger.warning(
        "engine trimmed a user's state to fit one Kafka record, dropping the oldest %s",
        " and the oldest ".join(trimmed),
        extra=extra,
    )
    return value


def _log_rejected_traits(partition: int, effects: Effects) -> None:
    for key, names in effects.rejected_traits.items():
        logger.warning(
            "engine rejected traits that would take the profile past %d bytes of JSON: %s",
            MAX_TRAITS_BYTES,
            list_traits(names),
            extra={"partition": partition, "user": key, "traits": len(names)},
        )


def _merge(total: Effects, part: Effects) -> None:
    total.untimely += part.untimely
    for key, names in part.rejected_traits.items():
        total.rejected_traits.setdefault(key, []).extend(names)
    total.sends += part.sends
    total.events += part.events
    total.changed |= part.changed
    total.reasons.update(part.reasons)
    total.meta_changed = total.meta_changed or part.meta_changed


def _worth_writing(effects: Effects) -> bool:
    return bool(effects.sends or effects.events or effects.changed or effects.meta_changed)
