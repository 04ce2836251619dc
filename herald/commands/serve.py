"""`herald worker` and `herald api`: the two long-running processes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import faust
import typer
import uvicorn

from herald.config import HeraldSettings
from herald.logs import configure_logging
from herald.runtime import compiled_modules, tune_garbage_collector
from sinks.landing import ParquetLanding
from streams.app import create_faust_app
from streams.catalog import CampaignCatalog, follow_catalog
from streams.engine import StreamEngine
from streams.profiles import install_profiles
from streams.scheduler import RunScheduler
from streams.topics import TopicAdminError, ensure_topics, herald_topics

__all__ = ["api", "worker"]

logger = logging.getLogger(__name__)


def _create_topics(settings: HeraldSettings, *, required: bool) -> None:
    try:
        asyncio.run(ensure_topics(settings.kafka, herald_topics(settings.kafka)))
    except TopicAdminError as error:
        if required:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        # The API serves the control plane without Kafka and responds to ingest with 503.
        logger.warning("Kafka topics not checked: %s", error)


def build_worker_app(
    settings: HeraldSettings, *, landing: bool = True, profiles: bool = True, engine: bool = True
) -> faust.App:
    """Assemble the Faust app of a worker: profiles table, and as tasks the Parquet landing,
    the campaign catalog and the engine."""
    app = create_faust_app(settings)
    if profiles:
        install_profiles(app, settings)
    if landing:

        @app.task
        async def land_events() -> None:
            await _with_restarts(
                "landing", lambda: ParquetLanding(settings.kafka, settings.landing).run()
            )

    if engine and settings.engine.enabled:
        catalog = CampaignCatalog()
        ready = asyncio.Event()

        @app.task
        async def follow_campaigns() -> None:
            await _with_restarts("catalog", lambda: follow_catalog(settings.kafka, catalog, ready))

        @app.task
        async def run_engine() -> None:
            # A new engine each time: one that failed mid-transaction keeps state that
            # was never committed.
            await _with_restarts("engine", lambda: StreamEngine(settings, catalog, ready).run())

        scheduler = RunScheduler(settings)

        @app.timer(settings.engine.scheduler_interval_s, on_leader=True)
        async def start_due_runs() -> None:
            try:
                await scheduler.tick()
            except Exception:
                # The next tick tries again; a run that began is due again until it ends.
                logger.exception("scheduler tick failed")

    return app


async def _with_restarts(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a long-lived consumer, starting it again after an unexpected error.

    A restart resumes where the failed run stopped: the landing and the engine start
    again from their committed offsets, and the catalog reads its topic from the
    beginning. The delay doubles up to a minute while failures repeat.
    """
    delay_s = 1.0
    while True:
        started_s = time.monotonic()
        try:
            await run()
        except Exception:
            logger.exception("%s failed; restarting in %.0f s", name, delay_s)
        if time.monotonic() - started_s > 300:
            delay_s = 1.0
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, 60.0)


def _build() -> str:
    """Describe the build this process runs, and warn when it is older than the source."""
    build = compiled_modules()
    if build.stale:
        logger.warning(
            "compiled modules are older than their source, so this process runs the old "
            "code; run `make compile` again, or `make clean-compiled` to run the source",
            extra={"modules": list(build.stale)},
        )
    return build.describe()


def worker(
    landing: bool = typer.Option(True, help="Land events as Parquet in the data directory."),
    profiles: bool = typer.Option(True, help="Keep the profiles table and its snapshots."),
    engine: bool = typer.Option(True, help="Run the real-time engine that issues sends."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    settings = HeraldSettings()
    configure_logging(log_level, settings.log_format)
    tune_garbage_collector()
    _create_topics(settings, required=True)
    app = build_worker_app(settings, landing=landing, profiles=profiles, engine=engine)
    logger.info(
        "worker starting; %s",
        _build(),
        extra={"worker_id": settings.worker_id, "data_dir": str(settings.landing.data_dir)},
    )
    faust.Worker(
        app, loglevel=log_level.upper(), quiet=True, override_logging=False
    ).execute_from_commandline()


def api(
    host: str | None = typer.Option(
        None, help="Interface to listen on; default from settings (127.0.0.1)."
    ),
    port: int | None = typer.Option(None, help="TCP port; default from settings (8080)."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    from api.main import create_app

    settings = HeraldSettings()
    configure_logging(log_level, settings.log_format)
    logger.info("api starting; %s", _build())
    _create_topics(settings, required=False)
    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_level=log_level,
        log_config=None,
    )
