"""The real-time engine timed three ways: pure, over Kafka, and for latency at a steady rate.

The pure and the Kafka runs read the same micro-batch records. The latency run writes
events at a fixed rate from a second process, so that the load generator takes no CPU
from the engine's process, and reads the send commands back in that process.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import multiprocessing
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from bench.broker import bench_kafka
from bench.events import envelopes_of
from bench.measurement import BenchError, Measurement, console, progress_bar, timeout_s
from bench.trigger_workload import CHANNELS, EventMix
from domain.engine import CampaignSet, EngineRules, PartitionEngine
from herald.config import HeraldSettings, KafkaSettings
from herald.logs import configure_logging
from schemas.envelope import format_timestamp
from schemas.wire import decode_events, encode_events, partition_key
from streams.catalog import CampaignCatalog
from streams.engine import StreamEngine
from streams.producer import EventProducer, partition_for

_POLL_INTERVAL_S = 0.05
_ASSIGNMENT_TIMEOUT_S = 60.0
_CPU_SAMPLE_INTERVAL_S = 0.1
# The latency reader stops once no send command has arrived for this long after the last
# event was written, or at the latest this long after it.
_DRAIN_QUIET_S = 3.0
_DRAIN_MAX_S = 60.0
# Message ids of the latency run: the prefix, the wall-clock produce time in nanoseconds
# and a sequence number. The engine copies the id into each command's `trigger_id`.
_STAMP_PREFIX = "lat"
_WARMUP_PREFIX = "warm"


@dataclass(frozen=True)
class EngineRun:
    """One timed engine run and what the engine decided in it.

    Attributes:
        measurement: the input events and the interval.
        sends: send commands issued.
        not_sent: decisions not to send (caps, unsubscribed, not reachable).
        transactions: Kafka transactions committed, or None for the pure engine.
        processed: events the engine processed, the Notification events it wrote back
            to the events topic and read again included.
    """

    measurement: Measurement
    sends: int
    not_sent: int
    transactions: int | None
    processed: int


def trigger_kafka(bootstrap: str, partitions: int, prefix: str) -> KafkaSettings:
    """Return settings whose topics, the engine's included, all start with `prefix`."""
    return bench_kafka(bootstrap, partitions, prefix).model_copy(
        update={
            "sends_topic_prefix": f"{prefix}.sends.",
            "engine_state_topic": f"{prefix}.engine.state",
            "engine_runs_topic": f"{prefix}.engine.runs",
        }
    )


def engine_settings(settings: HeraldSettings, kafka: KafkaSettings, name: str) -> HeraldSettings:
    """Return `settings` with `kafka` and an engine group and transactional id of its own."""
    engine = settings.engine.model_copy(
        update={"group_id": f"{name}-engine", "transactional_id": f"{name}-engine-tx"}
    )
    return settings.model_copy(update={"kafka": kafka, "engine": engine})


def micro_batch_records(
    pairs: Sequence[tuple[dict[str, Any], bytes]], partitions: int, batch_size: int
) -> list[tuple[int, bytes]]:
    """Return (partition, value) of the records that `prefill_micro_batches` writes.

    One record per partition per `batch_size` events, in write order. `EventProducer`
    splits a record past 512 KiB, and batches of a few hundred events stay far below that.
    """
    records: list[tuple[int, bytes]] = []
    for start in range(0, len(pairs), batch_size):
        by_partition: dict[int, list[bytes]] = {}
        for envelope, encoded in pairs[start : start + batch_size]:
            partition = partition_for(partition_key(envelope), partitions)
            by_partition.setdefault(partition, []).append(encoded)
        records += [(partition, encode_events(items)) for partition, items in by_partition.items()]
    return records


async def prefill_in_order(
    kafka: KafkaSettings, pairs: Sequence[tuple[dict[str, Any], bytes]], batch_size: int
) -> Measurement:
    """Write events in requests of `batch_size`, one request at a time.

    `bench.consumers.prefill_micro_batches` keeps several requests in flight, so records
    of a partition can land out of order. A user's track events could then come before
    the `identify` that gives the user contact traits, and the engine would decide
    differently from the pure run.
    """
    producer = EventProducer(kafka)
    await producer.start()
    started_s = time.perf_counter()
    try:
        with progress_bar(f"Pre-filling {kafka.events_topic}", len(pairs)) as advance:
            for start in range(0, len(pairs), batch_size):
                await producer.send_events(pairs[start : start + batch_size])
                advance(start + batch_size)
    finally:
        await producer.stop()
    elapsed_s = time.perf_counter() - started_s
    return Measurement(
        "Pre-fill, micro-batch records", len(pairs), elapsed_s, note="one request at a time"
    )


# Pure engine


def measure_pure_engine(
    records: Sequence[tuple[int, bytes]],
    partitions: int,
    rules: EngineRules,
    campaigns: CampaignSet,
    name: str,
) -> EngineRun:
    """Decode each record and pass its events to a fresh `PartitionEngine` of its partition.

    The Kafka path does the same and then serialises the results and writes them in a
    transaction, so this rate is a ceiling for it.
    """
    engines = {partition: PartitionEngine(partition, rules) for partition in range(partitions)}
    events = sends = not_sent = 0
    started_s = time.perf_counter()
    started_cpu_s = time.process_time()
    with progress_bar(name, len(records)) as advance:
        for index, (partition, value) in enumerate(records):
            envelopes = decode_events(value)
            effects = engines[partition].process(envelopes, campaigns, datetime.now(UTC))
            events += len(envelopes)
            sends += len(effects.sends)
            not_sent += sum(effects.reasons.values())
            if index % 100 == 0:
                advance(index)
    measurement = Measurement(
        name,
        events,
        time.perf_counter() - started_s,
        time.process_time() - started_cpu_s,
        note="decode + PartitionEngine.process, no Kafka",
    )
    return EngineRun(measurement, sends, not_sent, None, events)


# Engine over Kafka


class _TimedEngine(StreamEngine):
    """The stream engine, plus the times it restored its partitions' state and its first
    poll brought records."""

    restored_at_s: float | None = None
    first_records_s: float | None = None
    first_records_cpu_s: float | None = None

    async def _restore_assigned(self) -> None:
        await super()._restore_assigned()
        if self.restored_at_s is None and self._partitions:
            self.restored_at_s = time.perf_counter()

    async def _step(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        if self.first_records_s is None and any(batches.values()):
            self.first_records_s = time.perf_counter()
            self.first_records_cpu_s = time.process_time()
        await super()._step(batches)


async def _end_offsets(kafka: KafkaSettings) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    await consumer.start()
    try:
        # The benchmark created the topic with `kafka.partitions` partitions.
        tps = [TopicPartition(kafka.events_topic, p) for p in range(kafka.partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _committed_past(
    admin: AIOKafkaAdminClient, group_id: str, ends: dict[TopicPartition, int]
) -> bool:
    committed = await admin.list_consumer_group_offsets(group_id, partitions=list(ends))
    for tp, end in ends.items():
        offset = committed.get(tp)
        if offset is None or offset.offset < end:
            return False
    return True


async def measure_stream_engine(
    settings: HeraldSettings, catalog: CampaignCatalog, events: int, name: str
) -> EngineRun:
    """Run `StreamEngine` on the pre-filled events topic until it has committed every record.

    The interval starts when the engine's first poll brings records. The partitions wait,
    paused, for the restore of their (empty) state, so the first fetch starts only after
    it, once per start of a worker. In a run of 200,000 events that wait cost about 4%.
    The interval ends when the engine's committed offsets reach the end the topic had
    before the run.
    The engine also reads the Notification events it writes to the same topic, so its
    event counter alone cannot tell when the pre-filled events are done.
    """
    kafka = settings.kafka
    ends = await _end_offsets(kafka)
    ready = asyncio.Event()
    ready.set()
    engine = _TimedEngine(settings, catalog, ready)
    deadline_s = time.perf_counter() + timeout_s(events)
    task = asyncio.create_task(engine.run())
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        with progress_bar(name, events) as advance:
            while True:
                if task.done():
                    task.result()
                    raise BenchError(f"{name}: the engine stopped after {engine.stats.events}")
                if time.perf_counter() > deadline_s:
                    raise BenchError(
                        f"{name}: {engine.stats.events} of {events} events processed within "
                        f"{timeout_s(events):.0f} s"
                    )
                await asyncio.sleep(_POLL_INTERVAL_S)
                advance(min(engine.stats.events, events))
                # The committed offsets can cover the pre-filled records only once every
                # pre-filled event was processed, so they are requested only from then on.
                if engine.stats.events >= events and await _committed_past(
                    admin, settings.engine.group_id, ends
                ):
                    break
        assert engine.first_records_s is not None and engine.first_records_cpu_s is not None
        measurement = Measurement(
            name,
            events,
            time.perf_counter() - engine.first_records_s,
            time.process_time() - engine.first_records_cpu_s,
            note=f"from the first records; max_poll_records {settings.engine.max_poll_records}",
        )
        stats = engine.stats
        return EngineRun(
            measurement, stats.sends, sum(stats.not_sent.values()), stats.transactions, stats.events
        )
    finally:
        await admin.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def profile_engine(path: Path, run: Callable[[], Any]) -> None:
    """Run `run` under cProfile, save the stats to `path` and print the top entries."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run()
    finally:
        profiler.disable()
    profiler.dump_stats(path)
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(25)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(25)
    console.print(f"cProfile stats written to {path}")


# Latency


@dataclass(frozen=True)
class LatencyOptions:
    """The load of the latency run, sent to the load-generating process."""

    kafka: KafkaSettings
    users: int
    rate: float
    seconds: float
    warmup_s: float
    tick_s: float
    seed: int
    log_format: str


@dataclass(frozen=True)
class LatencyResult:
    """Counts and latencies from the load-generating process.

    Attributes:
        produced: events written in the timed interval, after the warm-up.
        produce_started: wall-clock epoch seconds of the first timed write.
        produce_s: seconds from the first write to the last acknowledgement.
        late_ticks: ticks that started more than one tick late, so that the next write
            carried more events than `rate * tick_s`.
        latencies_ms: per send command, consumed minus produced, sorted.
        commands: send commands read, those without a produce time included.
    """

    produced: int
    produce_started: float
    produce_s: float
    late_ticks: int
    latencies_ms: list[float]
    commands: int

    def percentile(self, share: float) -> float:
        """Return the nearest-rank percentile, `share` between 0 and 1."""
        index = max(0, min(len(self.latencies_ms) - 1, round(share * len(self.latencies_ms)) - 1))
        return self.latencies_ms[index]


@dataclass(frozen=True)
class LatencyRun:
    """The latency run seen from both processes.

    Attributes:
        worker_events: events the worker processed while the load ran, the engine's
            Notification events included.
        worker_cpu_share: the worker process's CPU time over that interval divided by
            its length, where 1.0 is one core busy.
    """

    result: LatencyResult
    worker_events: int
    worker_cpu_share: float
    sends: int
    transactions: int


class _Counters(Protocol):
    events: int
    sends: int
    transactions: int


class LatencyWorker(Protocol):
    """The worker that the latency run times: the engine, or the relay."""

    @property
    def restored_at_s(self) -> float | None: ...

    @property
    def stats(self) -> _Counters: ...

    async def run(self) -> None: ...


def timed_engine(settings: HeraldSettings, catalog: CampaignCatalog) -> LatencyWorker:
    """Return a stream engine that notes when its partitions are restored."""
    ready = asyncio.Event()
    ready.set()
    return _TimedEngine(settings, catalog, ready)


async def measure_latency(worker: LatencyWorker, options: LatencyOptions) -> LatencyRun:
    """Run `worker`, and in a second process write events at a steady rate and time
    each send command from the write of its triggering event to its read."""
    task = asyncio.create_task(worker.run())
    samples: list[tuple[float, float, int]] = []
    sampler = asyncio.create_task(_sample_cpu(worker, samples))
    try:
        deadline_s = time.perf_counter() + _ASSIGNMENT_TIMEOUT_S
        while worker.restored_at_s is None:
            if task.done():
                task.result()
                raise BenchError("latency: the worker stopped before it got its partitions")
            if time.perf_counter() > deadline_s:
                raise BenchError(f"latency: no partitions within {_ASSIGNMENT_TIMEOUT_S:.0f} s")
            await asyncio.sleep(_POLL_INTERVAL_S)
        context = multiprocessing.get_context("spawn")
        with (
            ProcessPoolExecutor(max_workers=1, mp_context=context) as pool,
            console.status(
                f"Latency: {options.rate:,.0f} events/s for {options.warmup_s:g} s of warm-up "
                f"and {options.seconds:g} s timed, from a second process"
            ),
        ):
            result = await asyncio.get_running_loop().run_in_executor(
                pool, run_latency_client, options
            )
        if task.done():
            task.result()
        start = _sample_at(samples, result.produce_started)
        end = _sample_at(samples, result.produce_started + result.produce_s)
        wall_s = end[0] - start[0]
        return LatencyRun(
            result=result,
            worker_events=end[2] - start[2],
            worker_cpu_share=(end[1] - start[1]) / wall_s if wall_s > 0 else 0.0,
            sends=worker.stats.sends,
            transactions=worker.stats.transactions,
        )
    finally:
        sampler.cancel()
        task.cancel()
        for pending in (sampler, task):
            with contextlib.suppress(asyncio.CancelledError):
                await pending


async def _sample_cpu(worker: LatencyWorker, samples: list[tuple[float, float, int]]) -> None:
    # The load generator reports its interval in wall-clock time only after it ends, so the
    # worker's CPU time is sampled all along and read at that interval's ends afterwards.
    while True:
        samples.append((time.time(), time.process_time(), worker.stats.events))
        await asyncio.sleep(_CPU_SAMPLE_INTERVAL_S)


def _sample_at(
    samples: Sequence[tuple[float, float, int]], wall: float
) -> tuple[float, float, int]:
    return min(samples, key=lambda sample: abs(sample[0] - wall))


def run_latency_client(options: LatencyOptions) -> LatencyResult:
    """Write the latency run's events and read the send commands, in a process of its own."""
    configure_logging("warning", options.log_format)
    return asyncio.run(_latency_client(options))


async def _latency_client(options: LatencyOptions) -> LatencyResult:
    warmup = round(options.rate * options.warmup_s)
    count = round(options.rate * options.seconds)
    mix = EventMix(options.users, options.seed)
    now = datetime.now(UTC)
    messages = mix.identifies(now)[: warmup + count]
    messages += [mix.next_message(now) for _ in range(warmup + count - len(messages))]
    envelopes = [envelope for envelope, _ in envelopes_of(messages)]

    kafka = options.kafka
    topics = [kafka.sends_topic_prefix + channel for channel in CHANNELS]
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"{kafka.events_topic}-latency-reader",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        client_id="herald-bench-latency",
    )
    producer = EventProducer(kafka)
    try:
        # Inside the `try`, so that an interrupt during the start still closes it.
        await consumer.start()
        await _wait_for_assignment(consumer)
        await producer.start()
        reader = _CommandReader(consumer)
        reading = asyncio.create_task(reader.run())
        # Right after the topics were created, some runs sent their first second's commands
        # hundreds of milliseconds late. A worker meets that once, so the warm-up is not timed.
        await _write_at_rate(producer, envelopes[:warmup], options, _WARMUP_PREFIX)
        produced_wall = time.time()
        started_s = time.perf_counter()
        late_ticks = await _write_at_rate(producer, envelopes[warmup:], options, _STAMP_PREFIX)
        produce_s = time.perf_counter() - started_s
        await reader.drain()
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    finally:
        await producer.stop()
        await consumer.stop()
    return LatencyResult(
        produced=count,
        produce_started=produced_wall,
        produce_s=produce_s,
        late_ticks=late_ticks,
        latencies_ms=sorted(reader.latencies_ms),
        commands=reader.commands,
    )


async def _wait_for_assignment(consumer: AIOKafkaConsumer) -> None:
    # Commands written before the reader has its partitions would still be read (earliest
    # offsets), but the group join would add seconds to their latency.
    deadline_s = time.perf_counter() + _ASSIGNMENT_TIMEOUT_S
    while not consumer.assignment():
        if time.perf_counter() > deadline_s:
            raise BenchError(f"latency reader: no partitions within {_ASSIGNMENT_TIMEOUT_S:.0f} s")
        await consumer.getmany(timeout_ms=100)


async def _write_at_rate(
    producer: EventProducer, envelopes: list[dict[str, Any]], options: LatencyOptions, prefix: str
) -> int:
    """Write `envelopes` at `options.rate`, one `send_events` call per tick.

    Each tick writes the events due since the start, so a late tick catches up instead
    of lowering the rate. Returns the number of ticks that started more than a tick late.
    """
    writes: set[asyncio.Task[None]] = set()
    started_s = time.perf_counter()
    written = tick = late_ticks = 0
    while written < len(envelopes):
        now_s = time.perf_counter()
        if now_s - (started_s + tick * options.tick_s) > options.tick_s:
            late_ticks += 1
        due = min(len(envelopes), round((now_s - started_s) * options.rate))
        if due > written:
            pairs = _stamped(envelopes, written, due, prefix)
            write = asyncio.create_task(producer.send_events(pairs))
            writes.add(write)
            write.add_done_callback(writes.discard)
            written = due
        tick = int((now_s - started_s) / options.tick_s) + 1
        await asyncio.sleep(max(0.0, started_s + tick * options.tick_s - time.perf_counter()))
    await asyncio.gather(*writes)
    return late_ticks


def _stamped(
    envelopes: list[dict[str, Any]], start: int, end: int, prefix: str
) -> list[tuple[dict[str, Any], bytes]]:
    """Give events start..end the current time, and encode it in their message ids."""
    produced_ns = time.time_ns()
    moment = format_timestamp(datetime.fromtimestamp(produced_ns / 1e9, UTC))
    pairs = []
    for index in range(start, end):
        envelope = envelopes[index]
        envelope["message_id"] = f"{prefix}-{produced_ns}-{index}"
        envelope["timestamp"] = moment
        envelope["received_at"] = moment
        pairs.append((envelope, orjson.dumps(envelope)))
    return pairs


class _CommandReader:
    """Reads send commands and records, per command, the time since its event was written."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.latencies_ms: list[float] = []
        self.commands = 0
        self._last_read_s = time.perf_counter()

    async def run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            consumed_ns = time.time_ns()
            for records in batches.values():
                for record in records:
                    for command in decode_events(record.value):
                        self._record(command, consumed_ns)
            if batches:
                self._last_read_s = time.perf_counter()

    def _record(self, command: dict[str, Any], consumed_ns: int) -> None:
        self.commands += 1
        prefix, _, rest = str(command.get("trigger_id") or "").partition("-")
        if prefix != _STAMP_PREFIX:
            return
        produced_ns = int(rest.partition("-")[0])
        self.latencies_ms.append((consumed_ns - produced_ns) / 1e6)

    async def drain(self) -> None:
        """Wait until no command has come for `_DRAIN_QUIET_S`, at most `_DRAIN_MAX_S`."""
        deadline_s = time.perf_counter() + _DRAIN_MAX_S
        self._last_read_s = time.perf_counter()
        while time.perf_counter() < deadline_s:
            if time.perf_counter() - self._last_read_s > _DRAIN_QUIET_S:
                return
            await asyncio.sleep(_POLL_INTERVAL_S)
