"""The scheduler: starts the runs of one-time and recurring campaigns on the leader worker.

It also moves triggered campaigns to `running` at their start and to `completed` once
their end has passed.

Each tick reads the due runs from the control-plane database, selects each run's audience
with SQL over the landed Parquet, and writes the members to the runs topic, in batches,
in the partition of each user. The engine that owns the partition decides every member
with the same delivery controls as a triggered send. Members arrive in batches of at most
`RUN_BATCH_USERS`, between the partition's events, so a large run delays a triggered
send by one batch's decisions at most.

The audience is the landed data as of the run: events still in flight to Parquet (at most
the landing's flush interval) are not seen.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiokafka import AIOKafkaProducer
from pydantic import TypeAdapter

from control.db import ControlStore
from control.models import Segment
from control.runs import DueRun, begin_run, complete_ended, due_runs, end_run, start_triggered
from domain.delivery import too_many_qualified
from herald.config import HeraldSettings
from queries.catalog import connect
from queries.reports import date_property_members
from queries.segments import segment_members
from schemas.campaign import (
    CampaignDelivery,
    DatePropertyTrigger,
    InlineSegmentAudience,
    SavedSegmentAudience,
    When,
    Who,
)
from schemas.envelope import format_timestamp
from schemas.segment_rules import parse_segment_rule
from streams.producer import partition_for

__all__ = ["RUN_BATCH_USERS", "RunScheduler"]

logger = logging.getLogger(__name__)

RUN_BATCH_USERS = 1000
_WHO: TypeAdapter[Any] = TypeAdapter(Who)
_WHEN: TypeAdapter[Any] = TypeAdapter(When)
_ALL_USERS_SQL = (
    "SELECT DISTINCT coalesce(user_id, anonymous_id) AS user_id FROM events "
    "WHERE coalesce(user_id, anonymous_id) IS NOT NULL ORDER BY user_id"
)


class RunScheduler:
    """Starts due runs; `tick` is called periodically on the leader worker."""

    def __init__(self, settings: HeraldSettings) -> None:
        self._settings = settings
        self._store: ControlStore | None = None

    async def tick(self, now: datetime | None = None) -> list[str]:
        """Start every run due at `now` (default: the wall clock); return their run ids."""
        now = now or datetime.now(UTC)
        store = await self._open_store()
        with store.session() as session:
            for campaign_id in await asyncio.to_thread(start_triggered, session, now):
                logger.info("campaign started", extra={"campaign_id": campaign_id})
            grace = timedelta(seconds=self._settings.engine.max_lateness_s)
            for campaign_id in await asyncio.to_thread(complete_ended, session, now, grace):
                logger.info("campaign completed at its end", extra={"campaign_id": campaign_id})
            due = await asyncio.to_thread(due_runs, session, now)
        started = []
        for run in due:
            await self._run(store, run, now)
            started.append(run.run_id)
        return started

    async def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    async def _open_store(self) -> ControlStore:
        if self._store is None:
            settings = self._settings
            self._store = await asyncio.to_thread(
                ControlStore.open, settings.control_db_url, settings.control_feed
            )
        return self._store

    async def _run(self, store: ControlStore, run: DueRun, now: datetime) -> None:
        logger.info("run starting", extra={"campaign_id": run.campaign_id, "run_id": run.run_id})
        with store.session() as session:
            await asyncio.to_thread(begin_run, session, run, now)
            members = await asyncio.to_thread(self._members, session, run)
        limits = CampaignDelivery.model_validate(run.definition["delivery"]).limits
        rejection = None
        if too_many_qualified(limits, len(members)):
            rejection = (
                f"{len(members):,} users qualify, more than the campaign's limit of "
                f"{limits.max_qualified_users:,}; nothing was sent"
            )
            logger.warning(rejection, extra={"campaign_id": run.campaign_id, "run_id": run.run_id})
        else:
            await self._write(run, members)
        with store.session() as session:
            next_at = await asyncio.to_thread(end_run, session, run, now, len(members), rejection)
        logger.info(
            "run issued",
            extra={
                "campaign_id": run.campaign_id,
                "run_id": run.run_id,
                "members": len(members),
                "next_run_at": next_at.isoformat() if next_at else None,
            },
        )

    def _members(self, session: Any, run: DueRun) -> list[str]:
        when = _WHEN.validate_python(run.definition["when"])
        if isinstance(when, DatePropertyTrigger):
            local_day = run.run_at.astimezone(ZoneInfo(run.timezone)).date()
            target = local_day + timedelta(days=when.days_before)
            with connect(self._settings.landing.data_dir) as connection:
                dated = date_property_members(connection, when.property, target)
            return self._audience(session, run, dated)
        return self._audience(session, run, None)

    def _audience(self, session: Any, run: DueRun, within: list[str] | None) -> list[str]:
        """Return the members of the run's audience, among `within` when it is given."""
        who = _WHO.validate_python(run.definition["who"])
        definition: dict[str, Any] | None = None
        if isinstance(who, InlineSegmentAudience):
            definition = who.definition
        elif isinstance(who, SavedSegmentAudience):
            segment = session.get(Segment, who.segment_id)
            if segment is None:
                raise LookupError(f"saved segment {who.segment_id!r} no longer exists")
            definition = segment.definition
        if definition is None and within is not None:
            return within
        with connect(self._settings.landing.data_dir) as connection:
            if definition is None:
                return [row[0] for row in connection.execute(_ALL_USERS_SQL).fetchall()]
            rule = parse_segment_rule(definition)
            members = segment_members(
                connection, rule, now=run.run_at, tz=run.timezone, account_id=run.account_id
            )
        if within is None:
            return members
        dated = set(within)
        return [member for member in members if member in dated]

    async def _write(self, run: DueRun, members: list[str]) -> None:
        # A producer per run: runs are rare, and nothing stays open between them.
        kafka = self._settings.kafka
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=int(kafka.request_timeout_s * 1000),
            client_id="herald-scheduler",
        )
        await producer.start()
        try:
            await self._send_batches(producer, run, members)
        finally:
            await producer.stop()

    async def _send_batches(
        self, producer: AIOKafkaProducer, run: DueRun, members: list[str]
    ) -> None:
        partitions = len(await producer.partitions_for(self._settings.kafka.events_topic))
        by_partition: dict[int, list[str]] = {}
        for member in members:
            by_partition.setdefault(partition_for(member, partitions), []).append(member)
        topic = self._settings.kafka.engine_runs_topic
        futures = []
        for partition, users in sorted(by_partition.items()):
            for start in range(0, len(users), RUN_BATCH_USERS):
                request = {
                    "campaign_id": run.campaign_id,
                    "run_id": run.run_id,
                    "run_at": format_timestamp(run.run_at),
                    "users": users[start : start + RUN_BATCH_USERS],
                }
                futures.append(
                    await producer.send(topic, value=orjson.dumps(request), partition=partition)
                )
        await asyncio.gather(*futures)
