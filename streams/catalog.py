"""The campaigns topic as an in-memory catalog that every worker keeps.

The control plane publishes each campaign, segment and label to the compacted `campaigns`
topic: key = id, value = `{"kind", "id", "definition"}`, a tombstone on delete. Every
worker reads the whole topic from the beginning and then follows it, so the hot path never
queries the control-plane database.

Guarantee: after `ready` is set, the catalog contains every record that was in the topic
when following started; later records are applied in topic order. A campaign sends from
its `live_definition`, the version last published, so an edit awaiting approval does not
change what goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from domain.engine.campaigns import LIVE_STATES, CampaignSet, compile_campaigns
from domain.triggers import CompiledTrigger
from herald.config import KafkaSettings

__all__ = ["LIVE_STATES", "CampaignCatalog", "follow_catalog", "wait_for_live"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class CampaignCatalog:
    """Current definitions by kind and id."""

    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Counts applied records, so that a reader can tell when to compile again.
    version: int = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of the topic; a tombstone removes the key from every kind."""
        if key is None:
            return
        resource_id = key.decode(errors="replace")
        self.version += 1
        if value is None:
            for table in (self.campaigns, self.segments, self.labels):
                table.pop(resource_id, None)
            return
        # Any producer can write to the topic. A record that is not one of ours is passed
        # over, and the resource keeps its last readable definition.
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("definition"), dict):
            logger.warning(
                "campaigns topic record skipped: not an object with a definition object",
                extra={"key": resource_id},
            )
            return
        table = {"campaign": self.campaigns, "segment": self.segments, "label": self.labels}.get(
            record.get("kind")
        )
        if table is None:
            logger.warning("unknown record kind in the campaigns topic", extra={"key": resource_id})
            return
        table[resource_id] = record["definition"]

    def live_campaigns(self) -> CampaignSet:
        """Compile the campaigns that may send now, indexed for the engine.

        A campaign counts when it was published (it has a `live_definition`) and its state
        allows sending: a triggered one while live, a scheduled one in any published
        state, for the runs the scheduler starts. A definition that does not parse is
        skipped with a warning rather than stopping the worker.
        """
        return compile_campaigns(self.campaigns, self.segments)

    def live_triggers(self) -> list[CompiledTrigger]:
        """Return the triggers of `live_campaigns`, in campaign id order."""
        campaigns = self.live_campaigns().by_id.values()
        return [campaign.trigger for campaign in campaigns if campaign.trigger is not None]


async def follow_catalog(
    kafka: KafkaSettings, catalog: CampaignCatalog, ready: asyncio.Event
) -> None:
    """Read the campaigns topic into `catalog` from the beginning, then follow it.

    Sets `ready` once every record present at the start has been applied. Runs until
    cancelled. No consumer group: every worker needs every record.
    """
    # Without a group id, a subscription is given every partition and starts at the
    # earliest offset, which is what a catalog needs.
    consumer = AIOKafkaConsumer(
        kafka.campaigns_topic,
        bootstrap_servers=kafka.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="herald-catalog",
    )
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] | None = None
        logger.info("catalog following", extra={"topic": kafka.campaigns_topic})
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    catalog.apply(record.key, record.value)
            if ready.is_set():
                continue
            partitions = consumer.assignment()
            if ends is None and partitions:
                ends = await consumer.end_offsets(list(partitions))
            if ends is not None and await _caught_up(consumer, ends):
                ready.set()
                logger.info("catalog ready", extra={"campaigns": len(catalog.campaigns)})
    finally:
        await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for topic_partition, end in ends.items():
        if await consumer.position(topic_partition) < end:
            return False
    return True


async def wait_for_live(kafka: KafkaSettings, campaign_ids: list[str], timeout_s: float) -> None:
    """Return once the campaigns topic shows every campaign of `campaign_ids` able to send.

    Raises:
        TimeoutError: some campaign was still missing after `timeout_s`.
    """
    catalog = CampaignCatalog()
    ready = asyncio.Event()
    follower = asyncio.create_task(follow_catalog(kafka, catalog, ready))
    try:
        async with asyncio.timeout(timeout_s):
            while set(campaign_ids) - set(catalog.live_campaigns().by_id):
                await asyncio.sleep(0.2)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
