"""Engine, sessions and schema migrations of the control-plane database.

The URL comes from `HeraldSettings.control_db_url`: a SQLite file by default, PostgreSQL
(`postgresql+psycopg://…`) in production. Alembic migrations run when a store opens, so a
new or old database always has the current schema.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from control.outbox import FEED_ENABLED

__all__ = ["ControlStore", "migrate"]

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # SQLite ignores foreign keys unless told per connection; WAL lets readers run
    # while the API writes.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Upgrade the database behind `engine` to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    logger.info("control-plane schema is current", extra={"db": engine.url.render_as_string()})


class ControlStore:
    """The control-plane database: an engine, a session factory and commit listeners."""

    def __init__(self, url: str, feed_enabled: bool = True) -> None:
        self.engine = _create_engine(url)
        self.sessions = sessionmaker(
            self.engine, expire_on_commit=False, info={FEED_ENABLED: feed_enabled}
        )
        self._commit_listeners: list[Callable[[], None]] = []
        event.listen(self.sessions, "after_commit", self._after_commit)

    @classmethod
    def open(cls, url: str, feed_enabled: bool = True) -> ControlStore:
        """Connect to `url` and bring its schema up to date.

        Args:
            url: A SQLAlchemy URL.
            feed_enabled: False to skip queueing changes for the `campaigns` topic.
        """
        store = cls(url, feed_enabled)
        migrate(store.engine)
        return store

    def session(self) -> Session:
        return self.sessions()

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every commit, for example to wake the feed publisher."""
        self._commit_listeners.append(listener)

    def close(self) -> None:
        self.engine.dispose()

    def _after_commit(self, _session: Session) -> None:
        for listener in self._commit_listeners:
            listener()
