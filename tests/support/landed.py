"""Track events landed as Parquet and an API app over them, for report and segment tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from starlette.testclient import TestClient

from api.main import create_app
from control.accounts import bootstrap_account
from control.clock import ManualClock
from herald.config import HeraldSettings, LandingSettings
from schemas.envelope import EventLimits
from schemas.segment import envelope_from_segment
from sinks.files import write_parquet_atomically
from sinks.parquet import LandedRow, event_tables_by_date

__all__ = ["api_over", "land_tracks"]

_RECEIVED = datetime(2024, 6, 1, tzinfo=UTC)


def land_tracks(data_dir: Path, tracks: Sequence[tuple[str, str, str]]) -> None:
    """Land (user id, event name, ISO timestamp) track events as partition 0's files."""
    rows = [
        LandedRow(
            envelope_from_segment(
                {
                    "type": "track",
                    "userId": user,
                    "event": event,
                    "timestamp": at,
                    "messageId": f"m{n}",
                },
                _RECEIVED,
                EventLimits(),
            ),
            n,
            0,
        )
        for n, (user, event, at) in enumerate(tracks)
    ]
    name = f"part-0-0-{len(rows) - 1}.parquet"
    for date, table in event_tables_by_date(rows, 0).items():
        write_parquet_atomically(table, data_dir / "events" / f"date={date}" / name)


@contextmanager
def api_over(
    root: Path, database_url: str, now: datetime
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """Yield a client of an API reading `root / "data"`, and an admin's auth header."""
    settings = HeraldSettings(
        control_db_url=database_url,
        control_feed=False,
        landing=LandingSettings(data_dir=root / "data"),
    )
    app = create_app(settings)
    app.state.clock = ManualClock(now)
    with app.state.control_store.session() as session:
        _admin, token = bootstrap_account(session, "Shop", "admin@shop.test", now)
    client = TestClient(app)
    try:
        yield client, {"Authorization": f"Bearer {token}"}
    finally:
        client.close()
        app.state.control_store.close()
