"""Wiring of the control plane into the API: the store, the clock and the change feed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from control.clock import SystemClock
from control.db import ControlStore
from control.feed import FeedPublisher
from herald.config import HeraldSettings

__all__ = ["install_control_plane"]


def install_control_plane(app: FastAPI) -> None:
    """Open the control-plane store for `app` and run the change feed with the app.

    The store's schema is migrated here, before the app serves, so the first request
    never meets an old schema. The feed publisher starts and stops inside the app's
    existing lifespan.
    """
    settings: HeraldSettings = app.state.settings
    store = ControlStore.open(settings.control_db_url, feed_enabled=settings.control_feed)
    app.state.control_store = store
    app.state.clock = SystemClock()
    if settings.control_feed:
        publisher = FeedPublisher(store, settings.kafka)
        app.router.lifespan_context = _with_feed(app.router.lifespan_context, publisher)


def _with_feed(inner: Any, publisher: FeedPublisher) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        context: AbstractAsyncContextManager[Any] = inner(app)
        async with context as state:
            await publisher.start()
            try:
                yield state
            finally:
                await publisher.stop()

    return lifespan
