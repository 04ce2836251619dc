"""Real-time engine benchmark: throughput with 50 live campaigns, and send latency.

Run from the repository root:

    python -m bench.triggers --events 200000

`make compile` first measures the engine as the image ships it, compiled by mypyc; the
output names the build it ran.

The measurements, in one run:

1. Pre-fill: `EventProducer` writes the events in micro-batch records, as the API does,
   one request at a time so that each partition keeps their order. Each user's first
   event is an `identify` with contact traits, and the timestamps rise evenly over an
   hour of event time, so that delayed sends and inaction windows come due while the
   engine runs.
2. Landing and baseline: `ParquetLanding` and a plain aiokafka consumer on that topic,
   timed by `bench.consumers` as `bench.ingest` does, for comparison (`--no-landing`
   skips them).
3. Pure engine: one `PartitionEngine` per partition, given the same records without Kafka.
4. Engine over Kafka: `StreamEngine` in this process, from partition assignment until its
   committed offsets cover every pre-filled record.
5. Latency floor: the same measurement as 6, with `bench.relay` in place of the engine:
   the engine's Kafka clients and transactions without its decisions, on topics of its
   own (`--no-floor` skips it). It shows what the broker and the machine cost by
   themselves in this run.
6. Latency: on new topics, with the engine running here, a second process writes events
   at `--rate` for `--seconds` and reads the send commands with `read_committed`. Each
   command's latency is the time it was read minus the time its triggering event was
   written.

The broker is found or started as in `bench.ingest`. The throughput runs' topics are deleted
before the latency run, and the latency run's at the end.
Other programs on the machine slow every wall-clock figure, so the throughput rows also
give events per CPU-second of this process, and the load average is printed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bench.broker import delete_prefixed_topics, require_loopback, running_broker
from bench.consumers import landing_settings, measure_baseline, measure_landing
from bench.engine_runs import (
    EngineRun,
    LatencyOptions,
    LatencyRun,
    LatencyWorker,
    engine_settings,
    measure_latency,
    measure_pure_engine,
    measure_stream_engine,
    micro_batch_records,
    prefill_in_order,
    profile_engine,
    timed_engine,
    trigger_kafka,
)
from bench.events import Workload, envelopes_of
from bench.measurement import Measurement, console, cpu_model, load_average, package_versions
from bench.relay import KafkaRelay
from bench.trigger_workload import CampaignMix, bench_catalog, message_counts, spread_messages
from herald.config import HeraldSettings, KafkaSettings
from herald.logs import configure_logging
from herald.runtime import compiled_modules, tune_garbage_collector
from streams.catalog import CampaignCatalog
from streams.engine import engine_rules
from streams.topics import ensure_topics, herald_topics

TARGET_EVENTS_PER_S = 50_000
TARGET_P99_MS = 50.0
# Longer than the longest delay (30 minutes) and inaction window (30 minutes) of the
# campaigns, so that some of each come due during the run.
_EVENT_TIME_SPAN = timedelta(hours=1)
_TICK_S = 0.01
# The baseline reads the topic in about a second, so the median of a few runs is steadier.
_BASELINE_RUNS = 3
_PURE = "Engine, pure (no Kafka)"
_OVER_KAFKA = "Engine over Kafka"
_FLOOR = "Relay, no decisions"
_PACKAGES = ("aiokafka", "orjson", "pydantic", "jinja2", "pyarrow", "duckdb")


@dataclass
class _Results:
    campaigns: CampaignMix
    baseline: list[Measurement]
    engines: list[EngineRun]
    latency: LatencyRun | None = None
    floor: LatencyRun | None = None


# Report


def _throughput_table(results: _Results) -> Table:
    table = Table(title="Herald real-time engine throughput, 50 live campaigns")
    columns = (
        "measurement",
        "events",
        "seconds",
        "events/s",
        "events per CPU-s",
        "sends",
        "not sent",
        "transactions",
        "note",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("measurement", "note") else "right")
    for item in results.baseline:
        cpu_rate = f"{item.cpu_rate:,.0f}" if item.cpu_rate else "-"
        table.add_row(
            item.name,
            f"{item.events:,}",
            f"{item.wall_s:.2f}",
            f"{item.rate:,.0f}",
            cpu_rate,
            "-",
            "-",
            "-",
            item.note,
        )
    for run in results.engines:
        item = run.measurement
        cpu_rate = f"{item.cpu_rate:,.0f}" if item.cpu_rate else "-"
        transactions = f"{run.transactions:,}" if run.transactions is not None else "-"
        note = item.note
        if run.processed != item.events:
            note += f"; {run.processed:,} events processed with the Notification events"
        table.add_row(
            item.name,
            f"{item.events:,}",
            f"{item.wall_s:.2f}",
            f"{item.rate:,.0f}",
            cpu_rate,
            f"{run.sends:,}",
            f"{run.not_sent:,}",
            transactions,
            note,
        )
    return table


def _latency_table(results: _Results, warmup_s: float) -> Table:
    table = Table(title="Send latency: event written to send command read (read_committed)")
    columns = ("worker", "p50 ms", "p90 ms", "p99 ms", "max ms", "commands timed", "note")
    for column in columns:
        table.add_column(column, justify="left" if column in ("worker", "note") else "right")
    rows = [
        (
            _FLOOR,
            results.floor,
            "the relay",
            "any warm-up backlog included, its own records written back not counted",
        ),
        (
            _OVER_KAFKA,
            results.latency,
            "the engine",
            "its own Notification events and any warm-up backlog included",
        ),
    ]
    for name, run, worker, counted in rows:
        if run is None:
            continue
        result = run.result
        if not result.latencies_ms:
            table.add_row(name, "-", "-", "-", "-", "0", "no send command carried a produce time")
            continue
        rate = result.produced / result.produce_s
        note = (
            f"{result.produced:,} events at {rate:,.0f}/s after {warmup_s:g} s of warm-up, "
            f"{result.late_ticks} late ticks; meanwhile {worker} read "
            f"{run.worker_events:,} events ({counted}) at {run.worker_cpu_share:.0%} of a core"
        )
        table.add_row(
            name,
            f"{result.percentile(0.50):.1f}",
            f"{result.percentile(0.90):.1f}",
            f"{result.percentile(0.99):.1f}",
            f"{result.latencies_ms[-1]:.1f}",
            f"{len(result.latencies_ms):,}",
            note,
        )
    return table


def _print_targets(results: _Results) -> None:
    for run in results.engines:
        item = run.measurement
        wall = "meets" if item.rate >= TARGET_EVENTS_PER_S else "misses"
        line = (
            f"{item.name}: {item.rate:,.0f} events/s ({wall} the {TARGET_EVENTS_PER_S:,}/s target)"
        )
        if item.cpu_rate:
            cpu = "meets" if item.cpu_rate >= TARGET_EVENTS_PER_S else "misses"
            line += f", {item.cpu_rate:,.0f} per CPU-second ({cpu} it)"
        print(line)
    by_name = {item.name: item for item in results.baseline}
    landing = by_name.get("Landing, micro-batch records")
    stream = next(
        (run.measurement for run in results.engines if run.measurement.name == _OVER_KAFKA), None
    )
    if landing is not None and stream is not None and landing.cpu_rate and stream.cpu_rate:
        print(
            f"Engine over Kafka / landing: {stream.rate / landing.rate:.2f} by wall time, "
            f"{stream.cpu_rate / landing.cpu_rate:.2f} per CPU-second"
        )
    if results.latency is not None and results.latency.result.latencies_ms:
        p99 = results.latency.result.percentile(0.99)
        verdict = "meets" if p99 < TARGET_P99_MS else "misses"
        print(f"Latency p99: {p99:.1f} ms ({verdict} the {TARGET_P99_MS:g} ms target)")
        if results.floor is not None and results.floor.result.latencies_ms:
            floor = results.floor.result.percentile(0.99)
            print(
                f"Latency p99 over the relay's floor of {floor:.1f} ms: "
                f"{p99 - floor:+.1f} ms, {p99 / floor:.2f} times"
            )


# Command line


def main(
    events: Annotated[
        int, typer.Option(min=1, help="Events pre-filled for the throughput runs.")
    ] = 200_000,
    users: Annotated[int, typer.Option(min=1, help="Distinct user ids in the events.")] = 10_000,
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="Partitions of each events topic; default from settings."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Events per pre-fill send, as in one API request.")
    ] = 500,
    rate: Annotated[
        float, typer.Option(min=1, help="Events per second written in the latency run.")
    ] = 10_000,
    seconds: Annotated[
        float, typer.Option(min=1, help="Seconds of writing in the latency run.")
    ] = 20,
    landing: Annotated[
        bool, typer.Option(help="Also time the Parquet landing and a plain consumer.")
    ] = True,
    warmup: Annotated[
        float,
        typer.Option(
            min=0,
            max=600,
            help="Seconds of writing at the same rate before the latency run's timer.",
        ),
    ] = 3,
    latency: Annotated[bool, typer.Option(help="Run the latency measurement.")] = True,
    floor: Annotated[
        bool,
        typer.Option(
            help="Before the engine's latency, measure a relay without decisions the same way."
        ),
    ] = True,
    profile: Annotated[
        Path | None,
        typer.Option(
            help="Profile one more pure and Kafka engine run with cProfile; save the stats "
            "in this directory."
        ),
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap address on loopback; default from settings."),
    ] = None,
    max_poll_records: Annotated[
        int | None,
        typer.Option(
            min=1, help="Records the engine takes per poll and transaction; default from settings."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic events.")] = 7,
) -> None:
    """Measure the real-time engine: throughput with 50 campaigns, and send latency."""
    settings = HeraldSettings()
    if max_poll_records is not None:
        engine = settings.engine.model_copy(update={"max_poll_records": max_poll_records})
        settings = settings.model_copy(update={"engine": engine})
    configure_logging("warning", settings.log_format)
    bootstrap = bootstrap or settings.kafka.bootstrap_servers
    require_loopback(bootstrap)
    partition_count = partitions or settings.kafka.partitions
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)

    console.print(
        f"{package_versions(_PACKAGES)}\n{os.cpu_count()} CPUs, {cpu_model()}; {load_average()}"
    )
    with (
        running_broker(settings, bootstrap) as address,
        tempfile.TemporaryDirectory(prefix="herald-bench-") as temporary,
    ):
        kafka = trigger_kafka(address, partition_count, prefix)
        console.print(f"Kafka {address}, {partition_count} partitions, topic prefix {prefix}")
        workload = Workload(events, users, batch_size, 1, seed)
        deleted: list[str] = []
        try:
            results = _run(settings, kafka, workload, Path(temporary), prefix, landing, profile)
            if latency:
                # The broker would otherwise still be compacting the throughput runs'
                # state topics while the latency is measured.
                deleted += asyncio.run(delete_prefixed_topics(kafka, prefix))
                gc.collect()
                latency_kafka = trigger_kafka(address, partition_count, f"{prefix}-latency")
                options = LatencyOptions(
                    latency_kafka,
                    users,
                    rate,
                    seconds,
                    warmup,
                    _TICK_S,
                    seed + 1,
                    settings.log_format,
                )
                if floor:
                    floor_name = f"{prefix}-floor"
                    floor_kafka = trigger_kafka(address, partition_count, floor_name)
                    floor_options = replace(options, kafka=floor_kafka)
                    results.floor = asyncio.run(
                        _measure_latency(
                            settings, floor_kafka, floor_options, floor_name, KafkaRelay
                        )
                    )
                    # Its topics would otherwise take the broker's work during the next run.
                    deleted += asyncio.run(delete_prefixed_topics(kafka, floor_name))
                catalog, _ = bench_catalog()
                results.latency = asyncio.run(
                    _measure_latency(
                        settings,
                        latency_kafka,
                        options,
                        f"{prefix}-latency",
                        lambda worker_settings: timed_engine(worker_settings, catalog),
                    )
                )
        finally:
            deleted += asyncio.run(delete_prefixed_topics(kafka, prefix))
            console.print(f"Deleted {len(set(deleted))} topics")
    print(results.campaigns.describe())
    print(f"Build: {compiled_modules().describe()}")
    Console(width=180).print(_throughput_table(results))
    if results.latency is not None:
        Console(width=180).print(_latency_table(results, warmup))
    print(f"At the end: {load_average()}")
    _print_targets(results)


def _run(
    settings: HeraldSettings,
    kafka: KafkaSettings,
    workload: Workload,
    root: Path,
    prefix: str,
    landing: bool,
    profile: Path | None,
) -> _Results:
    # The engine runs with the collector settings of `herald worker`.
    tune_garbage_collector()
    catalog, mix = bench_catalog()
    console.print(mix.describe())
    with console.status(f"Building {workload.events:,} events"):
        messages = spread_messages(workload.users, workload.events, workload.seed, _EVENT_TIME_SPAN)
        pairs = envelopes_of(messages)
    counts = ", ".join(
        f"{name} {count:,}" for name, count in message_counts(messages).most_common()
    )
    console.print(f"Events: {counts}")

    baseline = asyncio.run(
        _prefill_and_land(settings, kafka, pairs, workload.batch_size, root if landing else None)
    )
    records = micro_batch_records(pairs, kafka.partitions, workload.batch_size)
    rules = engine_rules(settings)
    pure = measure_pure_engine(records, kafka.partitions, rules, catalog.live_campaigns(), _PURE)
    event_count = len(pairs)
    profiled_pairs = pairs if profile is not None else None
    # A worker starts with only its restored state in memory. The engine collects garbage
    # when it gets its partitions, which would otherwise walk these inputs too.
    del messages, pairs, records
    gc.collect()
    stream = asyncio.run(
        measure_stream_engine(
            engine_settings(settings, kafka, prefix), catalog, event_count, _OVER_KAFKA
        )
    )
    if profiled_pairs is not None and profile is not None:
        _profile(settings, kafka, catalog, profiled_pairs, workload.batch_size, prefix, profile)
    return _Results(mix, baseline, [pure, stream])


async def _prefill_and_land(
    settings: HeraldSettings,
    kafka: KafkaSettings,
    pairs: list[tuple[dict[str, Any], bytes]],
    batch_size: int,
    landing_root: Path | None,
) -> list[Measurement]:
    """Create the topics and pre-fill them. With a `landing_root` for the landing's data,
    also time the landing and the baseline on them."""
    await ensure_topics(kafka, herald_topics(kafka))
    results = [await prefill_in_order(kafka, pairs, batch_size)]
    if landing_root is None:
        return results
    # The landing and the baseline run before the engine, which appends its Notification
    # events to the same topic.
    landing_config = landing_settings(settings.landing, landing_root, kafka.events_topic)
    shape = "micro-batch records"
    results.append(await measure_landing(kafka, landing_config, len(pairs), f"Landing, {shape}"))
    baselines = [
        await measure_baseline(
            kafka,
            f"{landing_config.group_id}-baseline-{run}",
            len(pairs),
            f"Baseline consumer, {shape}",
        )
        for run in range(_BASELINE_RUNS)
    ]
    results.append(_median_run(baselines))
    return results


def _median_run(runs: list[Measurement]) -> Measurement:
    ordered = sorted(runs, key=lambda item: item.rate)
    median = ordered[len(ordered) // 2]
    spread = f"median of {len(runs)}: {ordered[0].rate:,.0f} to {ordered[-1].rate:,.0f}/s"
    return replace(median, note=f"{median.note}; {spread}")


async def _measure_latency(
    settings: HeraldSettings,
    kafka: KafkaSettings,
    options: LatencyOptions,
    name: str,
    make_worker: Callable[[HeraldSettings], LatencyWorker],
) -> LatencyRun:
    """Time the worker that `make_worker` builds on `kafka`'s topics, with a group of `name`."""
    await ensure_topics(kafka, herald_topics(kafka))
    return await measure_latency(make_worker(engine_settings(settings, kafka, name)), options)


def _profile(
    settings: HeraldSettings,
    kafka: KafkaSettings,
    catalog: CampaignCatalog,
    pairs: list[tuple[dict[str, Any], bytes]],
    batch_size: int,
    prefix: str,
    directory: Path,
) -> None:
    records = micro_batch_records(pairs, kafka.partitions, batch_size)
    rules = engine_rules(settings)
    profile_engine(
        directory / "engine-pure.prof",
        lambda: measure_pure_engine(
            records, kafka.partitions, rules, catalog.live_campaigns(), "Pure engine, cProfile"
        ),
    )
    # The profiled run gets new topics. On the measured run's topics the engine would
    # restore that run's state, whose ledgers skip every decision.
    profiled_kafka = trigger_kafka(kafka.bootstrap_servers, kafka.partitions, f"{prefix}-profiled")
    asyncio.run(_prefill_and_land(settings, profiled_kafka, pairs, batch_size, None))
    profiled = engine_settings(settings, profiled_kafka, f"{prefix}-profiled")
    profile_engine(
        directory / "engine-kafka.prof",
        lambda: asyncio.run(
            measure_stream_engine(profiled, catalog, len(pairs), "Engine over Kafka, cProfile")
        ),
    )


if __name__ == "__main__":
    typer.run(main)
