"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.control_plane import install_control_plane
from api.errors import install_error_handlers
from api.routes import audit, campaigns, events, health, ingest, labels, segments, upload, users
from herald.config import HeraldSettings
from streams.producer import EventProducer, KafkaUnavailable

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def _include_routers(app: FastAPI) -> None:
    """Mount every resource router; each module owns one resource."""
    app.include_router(health.router)
    app.include_router(ingest.router)
    app.include_router(upload.router)
    install_control_plane(app)
    install_error_handlers(app)
    app.include_router(users.router)
    app.include_router(labels.router)
    app.include_router(segments.router)
    app.include_router(campaigns.router)
    app.include_router(audit.router)
    app.include_router(events.router)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    producer = EventProducer(app.state.settings.kafka)
    app.state.producer = producer
    try:
        await producer.start()
    except KafkaUnavailable as error:
        # The control-plane routes work without Kafka; ingest retries the connection.
        logger.warning("API started without Kafka: %s", error)
    try:
        yield
    finally:
        await producer.stop()


def create_app(settings: HeraldSettings | None = None) -> FastAPI:
    """Build the API for `settings` (read from the environment when omitted)."""
    settings = settings or HeraldSettings()
    app = FastAPI(title="Herald", version="0.1.0", lifespan=_lifespan)
    app.state.settings = settings
    _include_routers(app)
    return app
