"""The campaigns topic as an in-memory catalog that every worker keeps.

The control plane publishes each campaign, segment and label to the compacted `campaigns`
topic: key = id, value = `{"kind", "id", "definition"}`, a tombstone on delete. Every
worker reads the whole topic from the beginning and then follows it, so the hot path never
queries the control-plane database.

Guarantee: after `ready` is set, the catalog contains every record that was in the topic
when following started; later records are applied in topic order. A campaign sends from
its `live_definition`, the version last published, so an edit awaiting approval does not
change what goes out.

NOTE: `herald worker` does not start `follow_catalog` yet; the engine agent will.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import TypeAdapter, ValidationError

from domain.triggers import CompiledTrigger, compile_trigger
from herald.config import KafkaSettings
from schemas.campaign import When

__all__ = ["LIVE_STATES", "CampaignCatalog", "follow_catalog"]

logger = logging.getLogger(__name__)

# States in which a published, triggered campaign reacts to events. An edit waiting for
# approval (or rejected) leaves the published version sending.
LIVE_STATES = frozenset({"running", "pending_approval", "rejected"})
_WHEN = TypeAdapter(When)


@dataclass(slots=True)
class CampaignCatalog:
    """Current definitions by kind and id."""

    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of the topic; a tombstone removes the key from every kind."""
        if key is None:
            return
        resource_id = key.decode()
        if value is None:
            for table in (self.campaigns, self.segments, self.labels):
                table.pop(resource_id, None)
            return
        record = orjson.loads(value)
        table = {"campaign": self.campaigns, "segment": self.segments, "label": self.labels}.get(
            record.get("kind")
        )
        if table is None:
            logger.warning("unknown record kind in the campaigns topic", extra={"key": resource_id})
            return
        table[resource_id] = record["definition"]

    def live_triggers(self) -> list[CompiledTrigger]:
        """Compile the triggers of the triggered campaigns that may send now.

        A campaign counts when it was published (it has a `live_definition`) and its state
        is live; a stopped or completed one does not. A definition that does not parse is
        skipped with a warning rather than stopping the worker.
        """
        triggers = []
        for campaign_id, definition in sorted(self.campaigns.items()):
            live = definition.get("live_definition")
            if not live or definition.get("state") not in LIVE_STATES:
                continue
            try:
                when = _WHEN.validate_python(live["when"])
            except (KeyError, ValidationError) as error:
                logger.warning("campaign skipped: %s", error, extra={"campaign_id": campaign_id})
                continue
            trigger = compile_trigger(campaign_id, when)
            if trigger is not None:
                triggers.append(trigger)
        return triggers


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
