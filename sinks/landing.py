"""The Parquet landing: every event of the `events` topic, once, in `data/events/`.

Delivery guarantee: exactly once in the landed files, by idempotent writes rather than
transactions. A partition's records are buffered and flushed at deterministic offset
boundaries (every `flush_records` offsets) or, when traffic is slow, after
`flush_interval_s`. A flush writes its files atomically and only then commits the offset
after its last record. When a partition is assigned, files that start at or after the
committed offset are deleted, because their offsets will be consumed again; so a crash at
any point, including between two files of one flush, leaves no duplicate behind. A worker
that stalled past its session timeout may still write a flush after another worker took
the partition over. The partition's owner deletes such copies after a later commit.

Copies of an event (same identity and message id) received within `dedup_window_s` land
once. The index of seen ids is rebuilt from the landed files on assignment.

Not guaranteed: a record that cannot be decoded goes to the rejected topic, and after a
crash its rejection may be written twice. Buffered events are not flushed on SIGKILL; they
are consumed again on restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord

from herald.config import KafkaSettings, LandingSettings
from schemas.wire import (
    decode_events,
    encode_rejection,
    envelope_problem,
    origin_problem,
    written_by_engine,
)
from sinks.dedup import DedupIndex
from sinks.files import TEMP_PREFIX, write_parquet_atomically
from sinks.parquet import (
    LandedFile,
    LandedRow,
    event_tables_by_date,
    events_dir,
    landed_files,
    landed_files_in,
)
from streams.producer import EventProducer

__all__ = ["LandingStats", "ParquetLanding"]

logger = logging.getLogger(__name__)

# The shortest interval between two looks of a partition's owner for files that a stalled
# worker wrote late. A look also reads the directories changed within this margin before
# the last look, because some clocks and file systems keep coarse times.
_SWEEP_INTERVAL_S = 10.0
_SWEEP_MARGIN_S = 60.0


@dataclass(slots=True)
class LandingStats:
    """Counters since start; read by benchmarks and logs."""

    landed: int = 0
    duplicates: int = 0
    rejected: int = 0
    files: int = 0


@dataclass(slots=True)
class _PartitionBuffer:
    """Records of one partition not yet landed.

    `lock` serialises flushes, so a revocation waits for a flush in progress and the next
    owner of the partition never finds this worker writing after it took over. `revoked`
    stops a consume loop that still holds the buffer.
    """

    dedup: DedupIndex
    # The offset this worker began to consume the partition at, the names of the files it
    # has written since, and when it last looked for copies that another worker wrote.
    start_offset: int = 0
    written: set[str] = field(default_factory=set)
    swept_s: float = 0.0
    # The wall-clock time of the last sweep's start, to compare with directory times.
    swept_at: float = field(default_factory=time.time)
    # The offset after the last one this worker committed, once it has committed one.
    committed_next: int = -1
    rows: list[LandedRow] = field(default_factory=list)
    first_offset: int = -1
    last_offset: int = -1
    opened_at_s: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    revoked: bool = False

    @property
    def empty(self) -> bool:
        return self.first_offset < 0

    def reset(self) -> None:
        self.rows = []
        self.first_offset = self.last_offset = -1


class ParquetLanding(ConsumerRebalanceListener):  # type: ignore[misc]
    """Consumes the events topic with a plain aiokafka consumer and lands it as Parquet."""

    def __init__(self, kafka: KafkaSettings, landing: LandingSettings) -> None:
        self._kafka = kafka
        self._landing = landing
        self._data_dir = Path(landing.data_dir)
        self._buffers: dict[int, _PartitionBuffer] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._rejections = EventProducer(kafka)
        self.stats = LandingStats()

    async def run(self) -> None:
        """Consume and land until cancelled."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap_servers,
            group_id=self._landing.group_id,
            client_id="herald-landing",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The engine writes Notification events in transactions; an aborted one must
            # not land.
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self._consumer.subscribe([self._kafka.events_topic], listener=self)
        await self._consumer.start()
        logger.info(
            "landing started",
            extra={"topic": self._kafka.events_topic, "data_dir": str(self._data_dir)},
        )
        try:
            while True:
                await self._poll_once()
        finally:
            await self._consumer.stop()
            await self._rejections.stop()
            logger.info(
                "landing stopped",
                extra={"landed": self.stats.landed, "duplicates": self.stats.duplicates},
            )

    async def _poll_once(self) -> None:
        assert self._consumer is not None
        timeout_ms = int(min(self._landing.flush_interval_s, 1.0) * 1000)
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        for topic_partition, records in batches.items():
            await self._add(topic_partition.partition, records)
        await self._flush_idle()

    async def _add(self, partition: int, records: list[ConsumerRecord]) -> None:
        buffer = self._buffers.get(partition)
        if buffer is None:
            # Records of a partition revoked in the meantime; they will be consumed again.
            return
        block = self._landing.flush_records
        for record in records:
            if not buffer.empty and record.offset // block != buffer.first_offset // block:
                await self._flush(partition, buffer)
            if buffer.revoked:
                return
            if buffer.empty:
                buffer.first_offset = record.offset
                buffer.opened_at_s = time.monotonic()
            buffer.last_offset = record.offset
            await self._add_record(partition, buffer, record)

    async def _add_record(
        self, partition: int, buffer: _PartitionBuffer, record: ConsumerRecord
    ) -> None:
        try:
            envelopes = decode_events(record.value)
        except (ValueError, TypeError) as error:
            await self._reject(record, _undecodable_reason(record.value, error), None)
            return
        from_engine = written_by_engine(record.headers)
        for index, envelope in enumerate(envelopes):
            problem = envelope_problem(envelope)
            if problem is None:
                problem = origin_problem(envelope, from_engine)
            if problem is not None:
                await self._reject(record, problem, envelope)
            elif buffer.dedup.is_duplicate(envelope):
                self.stats.duplicates += 1
            else:
                buffer.rows.append(LandedRow(envelope, record.offset, index))

    async def _reject(self, record: ConsumerRecord, reason: str, payload: Any) -> None:
        self.stats.rejected += 1
        logger.warning(
            "rejected a landed record: %s",
            reason,
            extra={"partition": record.partition, "offset": record.offset},
        )
        if payload is None and record.value is not None:
            # Escaped rather than replaced, so that the bytes that were wrong stay readable.
            payload = record.value[:4096].decode("utf-8", "backslashreplace")
        value = encode_rejection(
            source="landing",
            reason=reason,
            field=None,
            index=None,
            payload=payload,
            received_at=datetime.now(UTC),
        )
        await self._rejections.send_rejections([value])

    async def _flush_idle(self) -> None:
        deadline = time.monotonic() - self._landing.flush_interval_s
        for partition, buffer in list(self._buffers.items()):
            if not buffer.empty and buffer.opened_at_s <= deadline:
                await self._flush(partition, buffer)

    async def _flush(self, partition: int, buffer: _PartitionBuffer) -> None:
        async with buffer.lock:
            if not buffer.revoked and not buffer.empty:
                await self._flush_locked(partition, buffer)

    async def _flush_locked(self, partition: int, buffer: _PartitionBuffer) -> None:
        name = LandedFile.file_name(partition, buffer.first_offset, buffer.last_offset)
        root = events_dir(self._data_dir)
        # Building the tables costs more than writing them; off the loop, fetches go on.
        files = await asyncio.to_thread(_write_all, root, name, buffer.rows, partition)
        landed, last_offset = len(buffer.rows), buffer.last_offset
        buffer.reset()
        buffer.written.add(name)
        self.stats.landed += landed
        self.stats.files += files
        committed = await self._commit(partition, last_offset + 1)
        if committed:
            buffer.committed_next = last_offset + 1
        logger.debug(
            "flushed %d events to %d files",
            landed,
            files,
            extra={"partition": partition, "file": name},
        )
        if len(buffer.dedup) > 100_000:
            buffer.dedup.prune()
        # Only right after a commit that the group accepted: a worker that the group has
        # dropped, and that does not know it yet, must not delete anything.
        if committed and time.monotonic() - buffer.swept_s >= _SWEEP_INTERVAL_S:
            buffer.swept_s = time.monotonic()
            await self._remove_late_copies(partition, buffer)

    async def _remove_late_copies(self, partition: int, buffer: _PartitionBuffer) -> None:
        """Delete the copies of landed offsets that stalled workers wrote late.

        A worker that stalled past its session timeout can still write the files of a
        flush it had begun after another worker took the partition over, and so after the
        files past the committed offset were removed. Its offset commit then fails, but
        its files stay beside the new owner's, which hold the same events. This worker
        deletes such files among the offsets it has landed and committed itself, and,
        below the offset it started at, the files whose range lies within another file's.
        """
        started_at = time.time()
        removed = await asyncio.to_thread(
            _remove_copies,
            self._data_dir,
            partition,
            buffer.start_offset,
            buffer.committed_next,
            frozenset(buffer.written),
            buffer.swept_at - _SWEEP_MARGIN_S,
        )
        buffer.swept_at = started_at
        if removed:
            logger.warning(
                "removed %d files that a stalled worker wrote late; other files hold the "
                "same offsets",
                len(removed),
                extra={"partition": partition, "files": removed},
            )

    async def _commit(self, partition: int, next_offset: int) -> bool:
        """Commit the offset after a flush; return whether the broker accepted it."""
        assert self._consumer is not None
        topic_partition = TopicPartition(self._kafka.events_topic, partition)
        try:
            await self._consumer.commit({topic_partition: next_offset})
        except (CommitFailedError, KafkaError) as error:
            # The files stay. The consumer assigned the partition next deletes and rewrites
            # them, or, when it was assigned before they were written, deletes them later.
            logger.warning(
                "offset commit failed: %s",
                error,
                extra={"partition": partition, "offset": next_offset},
            )
            return False
        return True

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        for topic_partition in revoked:
            buffer = self._buffers.pop(topic_partition.partition, None)
            if buffer is None:
                continue
            async with buffer.lock:
                if not buffer.empty:
                    await self._flush_locked(topic_partition.partition, buffer)
                buffer.revoked = True
        if revoked:
            logger.info(
                "partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)}
            )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None
        for topic_partition in assigned:
            start = await self._start_offset(topic_partition)
            removed = await asyncio.to_thread(
                _remove_uncommitted, self._data_dir, topic_partition.partition, start
            )
            dedup = await asyncio.to_thread(self._rebuild_dedup, topic_partition.partition)
            self._buffers[topic_partition.partition] = _PartitionBuffer(
                dedup, start_offset=start, swept_s=time.monotonic()
            )
            self._consumer.seek(topic_partition, start)
            logger.info(
                "partition assigned",
                extra={
                    "partition": topic_partition.partition,
                    "offset": start,
                    "removed_files": removed,
                    "dedup_ids": len(dedup),
                },
            )

    async def _start_offset(self, topic_partition: TopicPartition) -> int:
        assert self._consumer is not None
        committed = await self._consumer.committed(topic_partition)
        if committed is not None:
            return int(committed)
        beginnings = await self._consumer.beginning_offsets([topic_partition])
        return int(beginnings[topic_partition])

    def _rebuild_dedup(self, partition: int) -> DedupIndex:
        index = DedupIndex(self._landing.dedup_window_s)
        # A file written before the window opened holds only events received before it.
        horizon_s = time.time() - self._landing.dedup_window_s
        paths = [
            str(f.path)
            for f in landed_files(self._data_dir, partition)
            if f.path.stat().st_mtime >= horizon_s
        ]
        if not paths:
            return index
        with duckdb.connect() as connection:
            rows = connection.execute(
                "SELECT CASE WHEN user_id IS NOT NULL AND user_id <> '' THEN 'u:' || user_id "
                "ELSE 'a:' || anonymous_id END, message_id, "
                "strftime(received_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') "
                "FROM read_parquet($paths) WHERE received_at >= to_timestamp($horizon)",
                {"paths": paths, "horizon": horizon_s},
            ).fetchall()
        for identity, message_id, received_at in rows:
            index.remember(identity, message_id, received_at)
        return index


def _write_all(root: Path, name: str, rows: list[LandedRow], partition: int) -> int:
    tables = event_tables_by_date(rows, partition)
    for date, table in tables.items():
        write_parquet_atomically(table, root / f"date={date}" / name)
    return len(tables)


def _remove_uncommitted(data_dir: Path, partition: int, start_offset: int) -> int:
    """Delete files of `partition` at or past `start_offset`, and temporary leftovers."""
    removed = 0
    for landed in landed_files(data_dir, partition):
        if landed.first_offset >= start_offset:
            landed.path.unlink()
            removed += 1
    for leftover in events_dir(data_dir).glob(f"date=*/{TEMP_PREFIX}part-{partition}-*.tmp"):
        leftover.unlink(missing_ok=True)
    return removed


def _remove_copies(
    data_dir: Path,
    partition: int,
    start_offset: int,
    next_offset: int,
    own: frozenset[str],
    since: float,
) -> list[str]:
    """Delete the files of `partition` not named in `own` that copy others.

    A copy is a file within [start_offset, next_offset), which this worker has landed
    itself, or a file before `start_offset` whose offsets lie within those of another
    file of its directory: files that workers land in turn never overlap. Only date
    directories changed at or after the epoch time `since` are read, because a new file
    changes its directory's time and the others stay as they were.

    NOTE: a copy before `start_offset` that only partly overlaps other files stays.
    """
    removed = []
    for directory in events_dir(data_dir).glob("date=*"):
        try:
            if directory.stat().st_mtime < since:
                continue
        except FileNotFoundError:
            continue
        files = landed_files_in(directory, partition)
        for landed in files:
            if landed.path.name in own:
                continue
            mine = start_offset <= landed.first_offset and landed.last_offset < next_offset
            nested = landed.last_offset < start_offset and any(
                other.path != landed.path
                and other.first_offset <= landed.first_offset
                and landed.last_offset <= other.last_offset
                for other in files
            )
            if mine or nested:
                landed.path.unlink(missing_ok=True)
                removed.append(str(landed.path.relative_to(data_dir)))
    return removed


def _undecodable_reason(value: bytes | None, error: Exception) -> str:
    """Say why a record value is not events, naming the first byte that is not UTF-8."""
    if value is not None:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as bad:
            return (
                f"record value is not UTF-8: byte 0x{value[bad.start]:02x} at offset "
                f"{bad.start} ({bad.reason})"
            )
    return f"record value is not an event or an array of events: {error}"
