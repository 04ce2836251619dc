"""User profiles: a Faust table fed by the events topic, snapshotted to Parquet.

Delivery guarantee: at least once, with idempotent effects. The table lives in the store
(RocksDB in production) and is backed by a changelog topic, so it survives restarts and
moves with its partition. After a crash the events since the last committed offset are
applied again, which changes nothing: traits merge by event time, and first and last seen
are a minimum and a maximum.

Snapshots: every `profile_snapshot_interval_s`, each partition that changed is written to
`data/profiles/part-<partition>.parquet`, replacing the previous snapshot atomically.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

import faust
import orjson
import pyarrow as pa

from domain.profiles import MAX_TRAITS_BYTES, apply_event, list_traits, new_profile
from herald.config import HeraldSettings
from schemas.wire import decode_events, envelope_problem, partition_key
from sinks.files import write_parquet_atomically
from sinks.parquet import profiles_dir
from streams.app import events_topic

__all__ = ["PROFILES_SCHEMA", "install_profiles"]

logger = logging.getLogger(__name__)

PROFILES_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("traits", pa.string()),
        ("first_seen", pa.timestamp("us", tz="UTC")),
        ("last_seen", pa.timestamp("us", tz="UTC")),
        ("traits_updated_at", pa.timestamp("us", tz="UTC")),
        ("_kafka_partition", pa.int32()),
    ]
)


def install_profiles(app: faust.App, settings: HeraldSettings) -> faust.Table:
    """Add the profiles table, its agent and its snapshot timer to `app`."""
    # With no key or value type, Faust writes the changelog as JSON: user id to profile.
    table = app.Table("profiles", default=None, partitions=settings.kafka.partitions)
    dirty: set[int] = set()
    topic = events_topic(app, settings)

    @app.agent(topic, name="profiles")
    async def update_profiles(stream: AsyncIterable[faust.EventT]) -> None:
        async for event in stream.events():  # type: ignore[attr-defined]
            partition = event.message.partition
            try:
                envelopes = decode_events(event.value)
            except ValueError:
                # Not Herald's format; the landing rejects it with the reason.
                continue
            _apply_record(table, envelopes, partition)
            dirty.add(partition)

    @app.timer(settings.landing.profile_snapshot_interval_s)
    async def snapshot_profiles() -> None:
        changed = sorted(dirty)
        dirty.clear()
        if changed:
            await _snapshot(table, changed, profiles_dir(settings.landing.data_dir))

    return table


def _apply_record(table: faust.Table, envelopes: list[dict[str, Any]], partition: int) -> None:
    # One table write per user and record: each write is a changelog message.
    touched: dict[str, dict[str, Any]] = {}
    # One log line per user and record, however many of its events a full profile meets.
    rejected: dict[str, list[str]] = {}
    for envelope in envelopes:
        if envelope_problem(envelope) is not None:
            # The landing sends it to the rejected topic with the reason.
            continue
        key = partition_key(envelope)
        profile = touched.get(key) or table.get(key) or new_profile(envelope, partition)
        touched[key] = apply_event(profile, envelope, rejected.setdefault(key, []))
    for key, profile in touched.items():
        table[key] = profile
    for key, names in rejected.items():
        if names:
            logger.warning(
                "profiles rejected traits that would take the profile past %d bytes of JSON: %s",
                MAX_TRAITS_BYTES,
                list_traits(names),
                extra={"user": key, "partition": partition, "traits": len(names)},
            )


async def _snapshot(table: faust.Table, partitions: list[int], directory: Path) -> None:
    by_partition: dict[int, list[dict[str, Any]]] = {partition: [] for partition in partitions}
    for profile in table.values():
        rows = by_partition.get(profile["partition"])
        if rows is not None:
            rows.append(profile)
    for partition, rows in by_partition.items():
        path = directory / f"part-{partition}.parquet"
        await asyncio.to_thread(write_parquet_atomically, _profiles_table(rows), path)
        logger.debug(
            "profile snapshot written", extra={"partition": partition, "profiles": len(rows)}
        )


def _profiles_table(rows: list[dict[str, Any]]) -> pa.Table:
    def times(name: str) -> pa.Array:
        return pa.array([row[name] for row in rows], pa.string()).cast(pa.timestamp("us", tz="UTC"))

    columns = [
        pa.array([row["user_id"] for row in rows], pa.string()),
        pa.array([row["anonymous_id"] for row in rows], pa.string()),
        pa.array([orjson.dumps(row["traits"]).decode() for row in rows], pa.string()),
        times("first_seen"),
        times("last_seen"),
        times("traits_updated_at"),
        pa.array([row["partition"] for row in rows], pa.int32()),
    ]
    return pa.table(columns, schema=PROFILES_SCHEMA)
