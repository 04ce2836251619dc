"""`herald demo`: the reference dataset through the whole pipeline, checked against the CSV.

Starts the development broker, a worker and the API, replays the dataset through the HTTP
API with the Segment client, waits until every event has landed, and prints the landed
count of each event name next to the CSV's. Running it again lands nothing twice: the
replay sends the same message ids, and the landing drops copies.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import polars as pl
import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from herald.commands.replay import default_host
from herald.config import HeraldSettings
from queries.catalog import connect
from streams.broker import BrokerError, LocalBroker
from streams.topics import TopicAdminError, ensure_topics, herald_topics

__all__ = ["demo"]

_DEFAULT_DATASET = Path("examples/data/ecom.csv.gz")
_console = Console(stderr=True)


def demo(
    dataset: Path = typer.Option(
        _DEFAULT_DATASET, exists=True, dir_okay=False, help="The ecom CSV to replay."
    ),
    keep_running: bool = typer.Option(
        False, help="Leave the worker and the API running afterwards."
    ),
    timeout_s: float = typer.Option(
        300.0, "--timeout", help="Seconds to wait for every event to land."
    ),
) -> None:
    settings = HeraldSettings()
    logs = settings.state_dir.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _start_broker(settings)
    processes = [_spawn("worker", logs), _spawn("api", logs)]
    try:
        host = default_host(settings.api)
        _wait_for_api(host, processes[1], logs / "api.log")
        _replay(dataset, host)
        expected = _csv_counts(dataset)
        _wait_for_landing(settings, sum(expected.values()), timeout_s)
        matched = _print_comparison(expected, _landed_counts(settings.landing.data_dir))
    finally:
        if not keep_running:
            _stop(processes)
    if keep_running:
        _console.print(f"worker and API left running; logs in {logs}")
    if not matched:
        raise typer.Exit(1)


def _start_broker(settings: HeraldSettings) -> None:
    with _console.status("starting Kafka…"):
        try:
            LocalBroker(settings.broker).start()
            asyncio.run(ensure_topics(settings.kafka, herald_topics(settings.kafka)))
        except (BrokerError, TopicAdminError) as error:
            _console.print(f"[red]error:[/] {error}", markup=True, highlight=False)
            raise typer.Exit(1) from None


def _spawn(command: str, logs: Path) -> subprocess.Popen[bytes]:
    log = open(logs / f"{command}.log", "ab")  # noqa: SIM115 - owned by the child process
    _console.print(f"started herald {command} (log: {logs / f'{command}.log'})")
    return subprocess.Popen(
        [sys.executable, "-m", "herald.cli", command],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )


def _wait_for_api(host: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{host}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    _console.print(f"[red]error:[/] the API did not start; see {log}")
    raise typer.Exit(1)


def _replay(dataset: Path, host: str) -> None:
    command = [
        sys.executable,
        "-m",
        "herald.cli",
        "replay",
        str(dataset),
        "--format",
        "ecom-csv",
        "--host",
        host,
    ]
    if subprocess.run(command, check=False).returncode != 0:
        _console.print("[red]error:[/] the replay failed; see its output above")
        raise typer.Exit(1)


def _csv_counts(dataset: Path) -> dict[str, int]:
    frame = pl.read_csv(dataset).group_by("event").len()
    return dict(zip(frame["event"], frame["len"]))


def _landed_counts(data_dir: Path) -> dict[str, int]:
    for _attempt in range(5):
        try:
            with connect(data_dir) as connection:
                rows = connection.execute(
                    "SELECT event, count(*) FROM tracks GROUP BY 1"
                ).fetchall()
            return dict(rows)
        except duckdb.IOException:
            # A file listed by the glob was replaced between listing and reading.
            time.sleep(0.2)
    return {}


def _wait_for_landing(settings: HeraldSettings, expected: int, timeout_s: float) -> None:
    """Wait until the landing has committed every record of the events topic.

    Waiting on the committed offsets rather than on the count is what lets a second run
    show that nothing landed twice: its events are already counted before they land.
    """
    columns = (TextColumn("landing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_console) as progress:
        task = progress.add_task("landing", total=expected)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            landed = sum(_landed_counts(settings.landing.data_dir).values())
            progress.update(task, completed=min(landed, expected))
            if asyncio.run(_landing_lag(settings)) == 0:
                return
            time.sleep(0.5)


async def _landing_lag(settings: HeraldSettings) -> int:
    """Count the records of the events topic that the landing group has not committed.

    Returns -1 while the topic's partitions are not known yet, which callers must not
    read as "caught up".
    """
    topic = settings.kafka.events_topic
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    await consumer.start()
    try:
        [description] = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
        if not partitions:
            return -1
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(settings.landing.group_id)
        return sum(
            max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in partitions
        )
    finally:
        await consumer.stop()
        await admin.close()


def _print_comparison(expected: dict[str, int], landed: dict[str, int]) -> bool:
    table = Table("event", "rows in CSV", "landed", "", title="Track events by name")
    for event in sorted(expected.keys() | landed.keys()):
        want, got = expected.get(event, 0), landed.get(event, 0)
        table.add_row(event, f"{want:,}", f"{got:,}", "ok" if want == got else "[red]differs[/]")
    total_want, total_got = sum(expected.values()), sum(landed.values())
    table.add_row(
        "all",
        f"{total_want:,}",
        f"{total_got:,}",
        "ok" if total_want == total_got else "[red]differs[/]",
    )
    Console().print(table)
    return expected == landed


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
