"""Ingest throughput: HTTP API to Parquet, the Parquet landing alone, and a plain consumer.

Run from the repository root:

    python -m bench.ingest --events 200000

Every measurement uses its own new topics, consumer groups and temporary data directory on
one broker. When no broker responds at `--bootstrap`, the benchmark starts the development
broker described by the `HERALD_BROKER__…` settings and stops it at the end. The topics it
created (including the worker's Faust topics) are deleted at the end.

The measurements:

1. End to end: `herald api` and `herald worker` run as subprocesses. Concurrent clients
   post synthetic Segment track events to `POST /v1/batch`. The timer runs from the first
   request until DuckDB counts every event in the landed Parquet. A warm-up batch lands
   first, so process start-up and the first consumer-group join are not timed.
2. Landing: `ParquetLanding` in this process, on a topic pre-filled by `EventProducer` in
   micro-batch records (as the API writes them). Its wall time ends with a wait of up to
   `landing.flush_interval_s`, because the last buffer of each partition is flushed by
   the timer.
3. Baseline: a plain aiokafka consumer that decodes each record with `orjson.loads`, on the
   same topic. The landing/baseline ratio is the landing's efficiency.
4. Optionally (`--single-records`), 2 and 3 again on a topic with one event per record.

Other programs on the machine slow every wall-clock figure, so each measurement also
reports events per CPU-second of the processes it measures, and the load average is
printed at the start and the end.

`bench.end_to_end` runs measurement 1 and `bench.consumers` runs 2 to 4. This module reads
the options, finds or starts the broker, deletes the topics at the end and prints the report.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bench.broker import bench_kafka, delete_prefixed_topics, require_loopback, running_broker
from bench.consumers import landing_settings, measure_prefilled, profile_landing
from bench.end_to_end import measure_end_to_end
from bench.events import Workload, envelopes_of, synthetic_messages
from bench.measurement import Measurement, console, cpu_model, load_average, package_versions
from herald.config import HeraldSettings, KafkaSettings
from herald.logs import configure_logging
from herald.runtime import tune_garbage_collector

_SIZE_SAMPLE_EVENTS = 1_000


# Report


def _versions() -> str:
    packages = ("aiokafka", "faust-streaming", "duckdb", "pyarrow", "orjson", "fastapi", "uvicorn")
    return package_versions(packages)


def _median_size(items: Iterable[dict[str, Any]]) -> int:
    sizes = sorted(len(orjson.dumps(item)) for item in items)
    return sizes[len(sizes) // 2]


def _results_table(results: Sequence[Measurement]) -> Table:
    table = Table(title="Herald ingest throughput")
    for column in ("measurement", "events", "seconds", "events/s", "events per CPU-s", "note"):
        table.add_column(column, justify="left" if column in ("measurement", "note") else "right")
    for item in results:
        cpu_rate = f"{item.cpu_rate:,.0f}" if item.cpu_rate else "-"
        table.add_row(
            item.name,
            f"{item.events:,}",
            f"{item.wall_s:.2f}",
            f"{item.rate:,.0f}",
            cpu_rate,
            item.note,
        )
    return table


def _print_ratios(results: Sequence[Measurement]) -> None:
    by_name = {item.name: item for item in results}
    for shape in ("micro-batch records", "one event per record"):
        landed = by_name.get(f"Landing, {shape}")
        baseline = by_name.get(f"Baseline consumer, {shape}")
        if landed is None or baseline is None:
            continue
        ratio = landed.rate / baseline.rate
        verdict = "meets" if ratio >= 0.5 else "is below"
        print(f"Landing/baseline, {shape}: {ratio:.3f} ({verdict} the 0.5 target)")
        if landed.cpu_rate and baseline.cpu_rate:
            print(
                f"  per CPU-second instead of per wall second: {landed.cpu_rate / baseline.cpu_rate:.3f}"
            )


# Command line


def main(
    events: Annotated[int, typer.Option(min=1, help="Events per measurement.")] = 200_000,
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="Partitions of each events topic; default from settings."),
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap address on loopback; default from settings."),
    ] = None,
    users: Annotated[int, typer.Option(min=1, help="Distinct user ids in the events.")] = 10_000,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Events per POST /v1/batch and per pre-fill send.")
    ] = 500,
    clients: Annotated[int, typer.Option(min=1, help="Concurrent HTTP connections.")] = 4,
    end_to_end: Annotated[bool, typer.Option(help="Run the HTTP-to-Parquet measurement.")] = True,
    worker_profiles: Annotated[
        bool, typer.Option(help="Run the worker's profiles agent, as `herald worker` does.")
    ] = True,
    single_records: Annotated[
        bool, typer.Option(help="Also measure a topic with one event per record.")
    ] = False,
    profile: Annotated[
        Path | None,
        typer.Option(help="Profile an extra landing run with cProfile; save the stats here."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic events.")] = 7,
) -> None:
    """Measure ingest throughput: HTTP to Parquet, the landing alone, and a plain consumer."""
    settings = HeraldSettings()
    configure_logging("warning", settings.log_format)
    bootstrap = bootstrap or settings.kafka.bootstrap_servers
    require_loopback(bootstrap)
    workload = Workload(events, users, batch_size, clients, seed)
    partition_count = partitions or settings.kafka.partitions
    prefix = f"bench-{uuid.uuid4().hex[:8]}"

    console.print(f"{_versions()}\n{os.cpu_count()} CPUs, {cpu_model()}; {load_average()}")
    with (
        running_broker(settings, bootstrap) as address,
        tempfile.TemporaryDirectory(prefix="herald-bench-") as temporary,
    ):
        root = Path(temporary)
        kafka = bench_kafka(address, partition_count, prefix)
        console.print(f"Kafka {address}, {partition_count} partitions, topic prefix {prefix}")
        console.print(
            f"Landing flushes every {settings.landing.flush_records} records or "
            f"{settings.landing.flush_interval_s:g} s after a partition's first buffered record"
        )
        try:
            results = _run(
                settings,
                kafka,
                workload,
                root,
                prefix,
                end_to_end,
                worker_profiles,
                single_records,
                profile,
            )
        finally:
            deleted = asyncio.run(delete_prefixed_topics(kafka, prefix))
            console.print(f"Deleted {len(deleted)} topics")
    Console(width=160).print(_results_table(results))
    print(f"At the end: {load_average()}")
    _print_ratios(results)


def _run(
    settings: HeraldSettings,
    kafka: KafkaSettings,
    workload: Workload,
    root: Path,
    prefix: str,
    end_to_end: bool,
    worker_profiles: bool,
    single_records: bool,
    profile: Path | None,
) -> list[Measurement]:
    # The in-process landing runs with the collector settings of `herald worker`.
    tune_garbage_collector()
    results: list[Measurement] = []
    if end_to_end:
        e2e_kafka = bench_kafka(kafka.bootstrap_servers, kafka.partitions, f"{prefix}-e2e")
        results += measure_end_to_end(
            e2e_kafka, workload, root / "e2e", f"{prefix}-e2e", worker_profiles
        )

    with console.status(f"Building {workload.events} envelopes"):
        pairs = envelopes_of(synthetic_messages(workload, offset=2))
    sample = _SIZE_SAMPLE_EVENTS
    message_bytes = _median_size(synthetic_messages(replace(workload, events=sample)))
    envelope_bytes = _median_size(envelope for envelope, _encoded in pairs[:sample])
    console.print(
        f"Median JSON size: message {message_bytes} bytes, envelope {envelope_bytes} bytes"
    )

    batched = bench_kafka(kafka.bootstrap_servers, kafka.partitions, f"{prefix}-batched")
    batched_landing = landing_settings(settings.landing, root / "batched", f"{prefix}-batched")
    results += asyncio.run(measure_prefilled(batched, batched_landing, pairs, workload, False))
    if profile is not None:
        profiled = landing_settings(settings.landing, root / "profiled", f"{prefix}-profiled")
        profile_landing(batched, profiled, len(pairs), profile)
    if single_records:
        single = bench_kafka(kafka.bootstrap_servers, kafka.partitions, f"{prefix}-single")
        single_landing = landing_settings(settings.landing, root / "single", f"{prefix}-single")
        results += asyncio.run(measure_prefilled(single, single_landing, pairs, workload, True))
    return results


if __name__ == "__main__":
    typer.run(main)
