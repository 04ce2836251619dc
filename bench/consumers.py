"""The landing and a plain aiokafka consumer, each timed on a pre-filled events topic."""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import pstats
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from bench.events import Workload
from bench.measurement import BenchError, Measurement, console, progress_bar, timeout_s
from herald.config import KafkaSettings, LandingSettings
from schemas.wire import partition_key
from sinks.landing import ParquetLanding
from streams.producer import EventProducer, partition_for
from streams.topics import ensure_topics, herald_topics

# The landing's consumer fetches up to this much per partition; the baseline uses the same
# value, so the ratio compares processing rather than fetch sizes.
_MAX_PARTITION_FETCH_BYTES = 8 * 1024 * 1024
_BASELINE_MAX_RECORDS = 10_000
# The baseline reads a topic in about a second or less, so a single run depends heavily on
# the scheduler. The median of a few runs is steadier.
_BASELINE_RUNS = 3
_POLL_INTERVAL_S = 0.02
_PREFILL_CONCURRENCY = 8


async def prefill_micro_batches(
    kafka: KafkaSettings, pairs: Sequence[tuple[dict[str, Any], bytes]], batch_size: int
) -> None:
    """Write events in requests of `batch_size`, one record per partition per request."""
    producer = EventProducer(kafka)
    await producer.start()
    limit = asyncio.Semaphore(_PREFILL_CONCURRENCY)

    async def send(start: int) -> None:
        async with limit:
            await producer.send_events(pairs[start : start + batch_size])

    try:
        await asyncio.gather(*(send(start) for start in range(0, len(pairs), batch_size)))
    finally:
        await producer.stop()


async def prefill_single_records(
    kafka: KafkaSettings, pairs: Sequence[tuple[dict[str, Any], bytes]]
) -> None:
    """Write each event as its own record, on the partition of its user."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        partitions = len(await producer.partitions_for(kafka.events_topic))
        sends = [
            await producer.send(
                kafka.events_topic,
                value=encoded,
                partition=partition_for(partition_key(envelope), partitions),
            )
            for envelope, encoded in pairs
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


class _TimedLanding(ParquetLanding):
    """The Parquet landing, plus the time it first got partitions."""

    assigned_at_s: float | None = None
    assigned_cpu_s: float | None = None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await super().on_partitions_assigned(assigned)
        if self.assigned_at_s is None:
            self.assigned_at_s = time.perf_counter()
            self.assigned_cpu_s = time.process_time()


class _AssignmentClock(ConsumerRebalanceListener):  # type: ignore[misc]
    """Records when a consumer first got partitions."""

    def __init__(self) -> None:
        self.assigned_at_s: float | None = None
        self.assigned_cpu_s: float | None = None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.assigned_at_s is None:
            self.assigned_at_s = time.perf_counter()
            self.assigned_cpu_s = time.process_time()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None


def _since_assignment(
    name: str, events: int, clock: _AssignmentClock | _TimedLanding, started_s: float
) -> Measurement:
    assert clock.assigned_at_s is not None and clock.assigned_cpu_s is not None
    return Measurement(
        name=name,
        events=events,
        wall_s=time.perf_counter() - clock.assigned_at_s,
        cpu_s=time.process_time() - clock.assigned_cpu_s,
        note=f"from assignment; join took {clock.assigned_at_s - started_s:.2f} s",
    )


async def measure_landing(
    kafka: KafkaSettings, landing: LandingSettings, events: int, name: str
) -> Measurement:
    """Run `ParquetLanding` until it has landed `events` events, then cancel it."""
    sink = _TimedLanding(kafka, landing)
    started_s = time.perf_counter()
    deadline_s = started_s + timeout_s(events)
    task = asyncio.create_task(sink.run())
    try:
        with progress_bar(name, events) as advance:
            while sink.stats.landed < events:
                if task.done():
                    task.result()
                    raise BenchError(
                        f"{name}: the landing stopped after {sink.stats.landed} events"
                    )
                if time.perf_counter() > deadline_s:
                    raise BenchError(
                        f"{name}: {sink.stats.landed} of {events} events landed within "
                        f"{timeout_s(events):.0f} s"
                    )
                await asyncio.sleep(_POLL_INTERVAL_S)
                advance(sink.stats.landed)
        measured = _since_assignment(name, sink.stats.landed, sink, started_s)
        return replace(
            measured, note=f"{measured.note}; flush timer {landing.flush_interval_s:g} s"
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def measure_baseline(
    kafka: KafkaSettings, group_id: str, events: int, name: str
) -> Measurement:
    """Read `events` events with `getmany` and `orjson.loads` per record, and nothing else."""
    clock = _AssignmentClock()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=_MAX_PARTITION_FETCH_BYTES,
    )
    consumer.subscribe([kafka.events_topic], listener=clock)
    started_s = time.perf_counter()
    deadline_s = started_s + timeout_s(events)
    await consumer.start()
    decoded_events = 0
    try:
        with progress_bar(name, events) as advance:
            while decoded_events < events:
                if time.perf_counter() > deadline_s:
                    raise BenchError(f"{name}: read {decoded_events} of {events} events in time")
                batches = await consumer.getmany(timeout_ms=1000, max_records=_BASELINE_MAX_RECORDS)
                for records in batches.values():
                    for record in records:
                        value = orjson.loads(record.value)
                        decoded_events += len(value) if isinstance(value, list) else 1
                advance(decoded_events)
        return _since_assignment(name, decoded_events, clock, started_s)
    finally:
        await consumer.stop()


def profile_landing(
    kafka: KafkaSettings, landing: LandingSettings, events: int, path: Path
) -> None:
    """Profile one more landing run with cProfile, save the stats and print the top entries.

    cProfile records only the event-loop thread. The landing writes Parquet files in a
    worker thread (`asyncio.to_thread`), so that time appears as the loop waiting in `poll`.
    """
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(measure_landing(kafka, landing, events, "Landing under cProfile"))
    finally:
        profiler.disable()
    profiler.dump_stats(path)
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(25)
    console.print(f"cProfile stats written to {path}")


async def measure_prefilled(
    kafka: KafkaSettings,
    landing: LandingSettings,
    pairs: Sequence[tuple[dict[str, Any], bytes]],
    workload: Workload,
    single_records: bool,
) -> list[Measurement]:
    """Pre-fill the events topic, then time the landing and the baseline reading it."""
    await ensure_topics(kafka, herald_topics(kafka))
    shape = "one event per record" if single_records else "micro-batch records"
    with console.status(f"Pre-filling {kafka.events_topic} with {len(pairs)} events ({shape})"):
        started_s = time.perf_counter()
        if single_records:
            await prefill_single_records(kafka, pairs)
        else:
            await prefill_micro_batches(kafka, pairs, workload.batch_size)
        prefill_s = time.perf_counter() - started_s
    prefill = Measurement(f"Pre-fill, {shape}", len(pairs), prefill_s, note="producer, acks=all")
    landed = await measure_landing(kafka, landing, len(pairs), f"Landing, {shape}")
    baselines = [
        await measure_baseline(
            kafka, f"{landing.group_id}-baseline-{run}", len(pairs), f"Baseline consumer, {shape}"
        )
        for run in range(_BASELINE_RUNS)
    ]
    return [prefill, landed, _median_run(baselines)]


def _median_run(runs: Sequence[Measurement]) -> Measurement:
    """Return the run with the median rate, noting the range of all runs."""
    ordered = sorted(runs, key=lambda item: item.rate)
    median = ordered[len(ordered) // 2]
    spread = f"median of {len(runs)}: {ordered[0].rate:,.0f} to {ordered[-1].rate:,.0f}/s"
    return replace(median, note=f"{median.note}; {spread}")


def landing_settings(base: LandingSettings, root: Path, prefix: str) -> LandingSettings:
    """Return `base` with its data directory under `root` and a consumer group of its own."""
    return base.model_copy(update={"data_dir": root / "data", "group_id": f"{prefix}-landing"})
