"""`herald kafka …`: the single-node development broker and Herald's topics."""

from __future__ import annotations

import asyncio
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from herald.config import HeraldSettings
from streams.broker import BrokerError, LocalBroker
from streams.topics import TopicAdminError, ensure_topics, herald_topics

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)

_stdout = Console(soft_wrap=True)
# Spinners and errors go to stderr, so stdout carries only results.
_stderr = Console(stderr=True, soft_wrap=True)


def _broker(settings: HeraldSettings) -> LocalBroker:
    return LocalBroker(settings.broker)


def _abort(message: str) -> NoReturn:
    # The message may quote broker log lines, whose brackets rich would read as markup.
    _stderr.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


@app.command("install")
def install() -> None:
    """Download the Kafka broker's jars with Maven, unless they are already current."""
    broker = _broker(HeraldSettings())
    try:
        with _stderr.status("Resolving Kafka jars with Maven…"):
            ran = broker.install()
    except BrokerError as exc:
        _abort(str(exc))
    _stdout.print("Kafka jars installed." if ran else "Kafka jars are already current.")


@app.command("start")
def start() -> None:
    """Start the broker in the background (installing it first if needed) and wait for it."""
    broker = _broker(HeraldSettings())
    try:
        with _stderr.status(f"Starting Kafka on {broker.bootstrap_servers}…"):
            launched = broker.start()
    except BrokerError as exc:
        _abort(str(exc))
    if not launched and not broker.status().running:
        # Its log is elsewhere: naming this home's log would send the reader to the wrong file.
        _stdout.print(
            f"Kafka already responds on {broker.bootstrap_servers}, from a broker not started "
            f"from this home ({broker.settings.home})."
        )
        return
    state = "started" if launched else "already running"
    _stdout.print(f"Kafka {state} on {broker.bootstrap_servers} (log: {broker.log_path}).")


@app.command("stop")
def stop() -> None:
    """Stop the broker: SIGTERM, then SIGKILL after the stop timeout."""
    broker = _broker(HeraldSettings())
    with _stderr.status("Stopping Kafka…"):
        stopped = broker.stop()
    _stdout.print("Kafka stopped." if stopped else "Kafka was not running from this home.")


@app.command("status")
def status() -> None:
    """Show whether the broker runs and responds. Exits 1 when it does not respond."""
    broker = _broker(HeraldSettings())
    current = broker.status()
    process = f"pid {current.pid}" if current.running else "no process from this home"
    if not current.reachable:
        _abort(f"Kafka does not respond on {current.bootstrap_servers} ({process}).")
    _stdout.print(f"Kafka responds on {current.bootstrap_servers} ({process}).")


@app.command("topics")
def topics() -> None:
    """Create Herald's topics on the configured Kafka. Existing topics are left as they are."""
    kafka = HeraldSettings().kafka
    specs = herald_topics(kafka)
    try:
        created = asyncio.run(ensure_topics(kafka, specs))
    except TopicAdminError as exc:
        _abort(str(exc))
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        _stdout.print(f"{spec.name}: {state}")
