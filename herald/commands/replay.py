"""`herald replay`: send a file of events through Herald's HTTP API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from pydantic import SecretStr
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from herald.config import CleverTapAccount, HeraldSettings
from herald.logs import configure_logging
from herald.replay import (
    CleverTapSender,
    Message,
    MessageIterator,
    ReplayError,
    ReplayFormat,
    ReplaySender,
    SegmentSender,
    SendOptions,
    SendReport,
    check_api,
    read_events,
)
from herald.urls import default_host

__all__ = ["replay"]


def replay(
    path: Annotated[
        Path,
        typer.Argument(
            help="File of events; a name ending in .gz is read through gzip.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    file_format: Annotated[
        ReplayFormat,
        typer.Option("--format", "-f", help="Format of the file.", case_sensitive=False),
    ],
    host: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the Herald API.",
            show_default="http://127.0.0.1:8080, or HERALD_API__HOST and HERALD_API__PORT",
        ),
    ] = None,
    write_key: Annotated[
        str | None,
        typer.Option(
            help="Write key for Segment messages.",
            show_default="the first of HERALD_INGEST__WRITE_KEYS",
        ),
    ] = None,
    account_id: Annotated[
        str | None,
        typer.Option(
            help="CleverTap account id for clevertap-json.",
            show_default="the first of HERALD_INGEST__CLEVERTAP_ACCOUNTS",
        ),
    ] = None,
    passcode: Annotated[
        str | None,
        typer.Option(
            help="CleverTap passcode.",
            show_default="the passcode configured for the account",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Send at most this many messages, identify messages included."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=1000, help="Messages or records per HTTP request.")
    ] = 100,
    timeout_s: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="Time limit of one HTTP request, in seconds."),
    ] = 15.0,
    flush: Annotated[
        bool,
        typer.Option(
            "--flush/--no-flush",
            help="Once every message is accepted, make the engine decide, on every "
            "partition, the pending sends whose time has passed by the wall clock. Written "
            "to the Kafka of the local settings, not through the API.",
        ),
    ] = False,
) -> None:
    """Send the events of PATH to Herald's HTTP API, in order, and print a summary.

    Exits with 1 when the file is invalid, the API cannot be reached or rejects the
    credentials, or any message was not accepted.
    """
    settings = HeraldSettings()
    configure_logging("WARNING", settings.log_format)
    # The Segment client logs every failed upload itself, and the sender already reports
    # each one once.
    logging.getLogger("segment").setLevel(logging.CRITICAL)

    target = host or default_host(settings.api)
    sent = _Counter()
    try:
        messages = read_events(path, file_format)
        options = _send_options(target, batch_size, timeout_s)
        sender = _sender(file_format, options, settings, write_key, account_id, passcode)
        check_api(target)
        total = _expected_total(messages, limit)
        report = _send_with_progress(sender, _limited(messages, limit), total, sent)
    except ReplayError as error:
        typer.echo(f"error: {error}", err=True)
        if sent.value:
            typer.echo(f"stopped after {sent.value:,} messages", err=True)
        raise typer.Exit(code=1) from error

    _print_summary(report, path, target)
    if not report.succeeded:
        raise typer.Exit(code=1)
    if flush:
        _flush_pending(settings)


def flush() -> None:
    """Make the engine decide, on every partition, the pending sends whose time has passed.

    The request is written to the Kafka of the local settings. Use it after a replay that
    ran without `--flush`, or after a worker restart at the end of a replay.
    """
    settings = HeraldSettings()
    configure_logging("WARNING", settings.log_format)
    _flush_pending(settings)


def _flush_pending(settings: HeraldSettings) -> None:
    from streams.engine import request_flush
    from streams.topics import TopicAdminError

    try:
        partitions = asyncio.run(request_flush(settings.kafka))
    except (KafkaError, TopicAdminError) as error:
        typer.echo(f"error: the flush request did not reach Kafka: {error}", err=True)
        raise typer.Exit(code=1) from error
    Console().print(f"asked the engine to flush pending sends on {partitions} partitions")


def _send_options(host: str, batch_size: int, timeout_s: float) -> SendOptions:
    try:
        return SendOptions(host=host, batch_size=batch_size, timeout_s=timeout_s)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--host") from error


def _sender(
    file_format: ReplayFormat,
    options: SendOptions,
    settings: HeraldSettings,
    write_key: str | None,
    account_id: str | None,
    passcode: str | None,
) -> ReplaySender:
    if file_format is ReplayFormat.CLEVERTAP_JSON:
        return CleverTapSender(options, _clevertap_account(settings, account_id, passcode))
    return SegmentSender(options, _write_key(settings, write_key))


def _write_key(settings: HeraldSettings, write_key: str | None) -> str:
    if write_key:
        return write_key
    if not settings.ingest.write_keys:
        raise typer.BadParameter(
            "no write key is configured; pass --write-key or set HERALD_INGEST__WRITE_KEYS",
            param_hint="--write-key",
        )
    return settings.ingest.write_keys[0].get_secret_value()


def _clevertap_account(
    settings: HeraldSettings, account_id: str | None, passcode: str | None
) -> CleverTapAccount:
    accounts = settings.ingest.clevertap_accounts
    if account_id is None and accounts:
        account_id = accounts[0].account_id
    if account_id is None:
        raise typer.BadParameter(
            "no CleverTap account is configured; pass --account-id and --passcode",
            param_hint="--account-id",
        )
    if passcode is not None:
        return CleverTapAccount(account_id=account_id, passcode=SecretStr(passcode))
    for account in accounts:
        if account.account_id == account_id:
            return account
    raise typer.BadParameter(
        f"account {account_id!r} is not in HERALD_INGEST__CLEVERTAP_ACCOUNTS; pass its --passcode",
        param_hint="--passcode",
    )


def _expected_total(messages: MessageIterator, limit: int | None) -> int | None:
    if messages.total is None:
        return limit
    if limit is None:
        return messages.total
    return min(messages.total, limit)


def _limited(messages: Iterator[Message], limit: int | None) -> Iterator[Message]:
    return messages if limit is None else islice(messages, limit)


class _Counter:
    """Messages handled so far, for the message printed when a replay stops early."""

    def __init__(self) -> None:
        self.value = 0


class _RateColumn(ProgressColumn):
    """Messages per second, averaged over the last half-minute by rich."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed or 0.0
        return Text(f"{speed:,.0f} events/s", style="progress.data.speed")


def _send_with_progress(
    sender: ReplaySender, messages: Iterator[Message], total: int | None, sent: _Counter
) -> SendReport:
    columns = (
        SpinnerColumn(),
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("replay", total=total)

        def advance(count: int) -> None:
            sent.value += count
            progress.advance(task, count)

        return sender.send(messages, on_progress=advance)


def _print_summary(report: SendReport, path: Path, host: str) -> None:
    rate = report.total / report.elapsed_s if report.elapsed_s else 0.0
    typer.echo(
        f"replayed {report.total:,} messages from {path.name} to {host} "
        f"in {report.elapsed_s:.1f} s ({rate:,.0f} events/s)"
    )
    typer.echo(f"  accepted: {report.accepted:,}")
    typer.echo(f"  rejected: {report.rejected:,}")
    typer.echo(f"  failed:   {report.failed:,}")
    for error in report.errors:
        typer.echo(f"  error: {error}")
