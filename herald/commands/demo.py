"""`herald demo`: the reference dataset through the whole pipeline, checked against the CSV.

Starts the development broker, a worker and the API, and publishes the example campaigns.
Replays the dataset through the HTTP API with the Segment client and waits until every
event has landed. Prints the landed count of each event name next to the CSV's, then each
campaign's sends and reasons not to send.

Running it again lands nothing twice and sends nothing twice. The replay sends the same
message ids, and the landing drops copies. The engine does not trigger on events two hours
behind its watermark, and never repeats a send id.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import polars as pl
import typer
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from control.accounts import bootstrap_account, issue_token
from control.db import ControlStore
from control.models import User
from domain.engine.campaigns import LIVE_STATES
from herald.config import HeraldSettings
from herald.urls import default_host
from queries.catalog import connect
from streams.broker import BrokerError, LocalBroker
from streams.catalog import wait_for_live
from streams.topics import TopicAdminError, ensure_topics, herald_topics

__all__ = ["demo"]

_DEFAULT_DATASET = Path("examples/data/ecom.csv.gz")
_EXAMPLES = Path("examples/campaigns")
_DEMO_ADMIN = "demo@herald.example"
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
        campaigns = _publish_examples(settings, host)
        _replay(dataset, host)
        expected = _csv_counts(dataset)
        _wait_for_landing(settings, sum(expected.values()), timeout_s)
        matched = _print_comparison(expected, _landed_counts(settings.landing.data_dir))
        _print_deliveries(settings.landing.data_dir, campaigns)
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
        # The cart windows still open at the end of the data close at once.
        "--flush",
    ]
    if subprocess.run(command, check=False).returncode != 0:
        _console.print("[red]error:[/] the replay failed; see its output above")
        raise typer.Exit(1)


def _publish_examples(settings: HeraldSettings, host: str) -> dict[str, str]:
    """Publish the example campaigns unless they are already live; return id -> name."""
    client = httpx.Client(
        base_url=host, headers={"Authorization": f"Bearer {_demo_token(settings)}"}, timeout=30
    )
    names: dict[str, str] = {}
    with client:
        live = {
            campaign["name"]: campaign["id"]
            for campaign in _checked(client.get("/campaigns"))
            if campaign["state"] in LIVE_STATES and not campaign["archived"]
        }
        for path in sorted(_EXAMPLES.glob("*.yaml")):
            body = yaml.safe_load(path.read_text())
            campaign_id = live.get(body["name"])
            if campaign_id is None:
                _checked(client.post("/labels", json={"names": body.get("labels", [])}))
                campaign_id = _checked(client.post("/campaigns", json=body))["id"]
                _checked(client.post(f"/campaigns/{campaign_id}/publish", json={}))
                _console.print(f"published the example campaign {body['name']!r}")
            names[campaign_id] = body["name"]
    with _console.status("waiting for the campaigns to reach the workers…"):
        try:
            asyncio.run(wait_for_live(settings.kafka, list(names), timeout_s=60))
        except TimeoutError:
            _console.print("[red]error:[/] the campaigns did not reach the campaigns topic")
            raise typer.Exit(1) from None
    return names


def _demo_token(settings: HeraldSettings) -> str:
    """Return a new token of the demo account's admin, creating the account on first use."""
    store = ControlStore.open(settings.control_db_url, feed_enabled=settings.control_feed)
    try:
        with store.session() as session:
            now = datetime.now(UTC)
            admin = session.scalar(select(User).where(User.email == _DEMO_ADMIN))
            if admin is None:
                _admin, token = bootstrap_account(session, "Herald demo", _DEMO_ADMIN, now)
            else:
                _admin, token = issue_token(session, admin, admin.id, now)
            return token
    finally:
        store.close()


def _checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        _console.print(f"[red]error:[/] {response.request.url.path}: {response.text}")
        raise typer.Exit(1)
    return response.json()


def _print_deliveries(data_dir: Path, campaigns: dict[str, str]) -> None:
    rows = _query(
        data_dir,
        "SELECT campaign_id, outcome, reason, count(*) FROM deliveries GROUP BY ALL",
    )
    sent: dict[str, int] = {}
    not_sent: dict[str, dict[str, int]] = {}
    for campaign_id, outcome, reason, count in rows:
        if outcome == "sent":
            sent[campaign_id] = count
        else:
            not_sent.setdefault(campaign_id, {})[reason] = count
    table = Table("campaign", "sent", "not sent, by reason", title="Example campaigns")
    for campaign_id, name in sorted(campaigns.items(), key=lambda item: item[1]):
        reasons = ", ".join(
            f"{reason} {count:,}" for reason, count in sorted(not_sent.get(campaign_id, {}).items())
        )
        table.add_row(name, f"{sent.get(campaign_id, 0):,}", reasons or "-")
    Console().print(table)


def _csv_counts(dataset: Path) -> dict[str, int]:
    frame = pl.read_csv(dataset).group_by("event").len()
    return dict(zip(frame["event"], frame["len"]))


def _landed_counts(data_dir: Path) -> dict[str, int]:
    rows = _query(
        data_dir,
        "SELECT event, count(*) FROM tracks"
        " WHERE event NOT IN ('Notification Sent', 'Notification Not Sent') GROUP BY 1",
    )
    return dict(rows)


def _query(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    for _attempt in range(5):
        try:
            with connect(data_dir) as connection:
                return connection.execute(sql).fetchall()
        except duckdb.IOException:
            # A file listed by the glob was replaced between listing and reading.
            time.sleep(0.2)
    return []


def _wait_for_landing(settings: HeraldSettings, expected: int, timeout_s: float) -> None:
    """Wait until the engine and then the landing have committed every record of the
    events topic, the engine's own Notification events included.

    Waiting on the committed offsets rather than on the count is what lets a second run
    show that nothing landed twice: its events are already counted before they land.
    """
    groups = [settings.engine.group_id, settings.landing.group_id]
    columns = (TextColumn("landing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_console) as progress:
        task = progress.add_task("landing", total=expected)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            landed = sum(_landed_counts(settings.landing.data_dir).values())
            progress.update(task, completed=min(landed, expected))
            if all(asyncio.run(_records_behind(settings, group)) == 0 for group in groups):
                return
            time.sleep(0.5)


async def _records_behind(settings: HeraldSettings, group_id: str) -> int:
    """Count the committed records of the events topic past the group's committed offsets.

    Records are read rather than offsets subtracted, because the engine writes to the
    topic in transactions, whose commit markers take offsets but are no records. Returns
    -1 while the topic's partitions are not known yet, which callers must not read as
    "caught up".
    """
    topic = settings.kafka.events_topic
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await admin.start()
    await consumer.start()
    try:
        [description] = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
        if not partitions:
            return -1
        committed = await admin.list_consumer_group_offsets(group_id)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, max(0, committed[tp].offset) if tp in committed else 0)
        ends = await consumer.end_offsets(partitions)
        behind = 0
        for _attempt in range(100):
            pending = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not pending:
                return behind
            batches = await consumer.getmany(*pending, timeout_ms=500)
            behind += sum(len(records) for records in batches.values())
        return max(behind, 1)
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
