"""Herald's Kafka topics and their idempotent creation.

Herald creates its own topics with explicit partition counts and configs instead of
relying on the broker's automatic creation, which would give every topic the broker's
`num.partitions` and no compaction. Faust still creates its internal topics (changelogs,
repartition topics) itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from herald.config import KafkaSettings
from herald.errors import HeraldError
from schemas.campaign_message import Channel

__all__ = [
    "TopicAdminError",
    "TopicSpec",
    "delete_topics",
    "ensure_topics",
    "existing_topics",
    "herald_topics",
    "sends_topics",
]

logger = logging.getLogger(__name__)

_LEADER_POLL_INTERVAL_S = 0.1


class TopicAdminError(HeraldError):
    """Kafka was unreachable, or rejected creating or deleting a topic."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic as Herald wants it to exist.

    Attributes:
        name: The topic name.
        partitions: The partition count used when the topic is created.
        configs: Topic-level configs, such as `cleanup.policy`.
    """

    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)


def herald_topics(kafka: KafkaSettings) -> tuple[TopicSpec, ...]:
    """Return the topics Herald's processes read and write.

    Events get `kafka.partitions` partitions, the unit of parallelism of the workers.
    Rejected events and campaigns are small and have no ordering that spans keys, so one
    partition each suffices. The campaigns topic is compacted because its consumers need
    only the latest definition of each campaign key.
    """
    return (
        TopicSpec(kafka.events_topic, kafka.partitions),
        TopicSpec(kafka.rejected_topic, 1),
        TopicSpec(kafka.campaigns_topic, 1, {"cleanup.policy": "compact"}),
        TopicSpec(kafka.engine_state_topic, kafka.partitions, {"cleanup.policy": "compact"}),
        TopicSpec(kafka.engine_runs_topic, kafka.partitions),
        *(TopicSpec(name, kafka.partitions) for name in sends_topics(kafka)),
    )


def sends_topics(kafka: KafkaSettings) -> list[str]:
    """Return the send-command topic of every channel."""
    return [kafka.sends_topic_prefix + channel for channel in get_args(Channel)]


async def ensure_topics(kafka: KafkaSettings, topics: Iterable[TopicSpec]) -> list[str]:
    """Create each topic that does not exist yet.

    A topic that already exists is left as it is, even when its partition count or
    configs differ from `topics`. A differing partition count is logged as a warning:
    Kafka cannot lower it, and raising it would move keys between partitions. Returns
    once every new partition has a leader, so clients can use the topics at once.

    Args:
        kafka: Where the broker is, and the replication factor of new topics.
        topics: The topics to create.

    Returns:
        The names of the topics this call created.

    Raises:
        TopicAdminError: Kafka was unreachable or rejected a topic.
    """
    specs = list(topics)
    admin = _admin_client(kafka)
    try:
        await admin.start()
        response = await admin.create_topics(
            [_new_topic(spec, kafka.replication_factor) for spec in specs]
        )
        created, existing = _check_create_response(response.topic_errors)
        await _wait_for_leaders(admin, [s for s in specs if s.name in created], kafka)
        await _warn_on_partition_mismatch(admin, [s for s in specs if s.name in existing])
    except KafkaError as exc:
        raise TopicAdminError(
            f"could not create topics on Kafka at {kafka.bootstrap_servers}: {exc!r}. "
            "Check that the broker runs (`herald kafka status`)."
        ) from exc
    finally:
        await admin.close()
    if created:
        logger.info("Created Kafka topics", extra={"topics": created})
    return created


async def delete_topics(kafka: KafkaSettings, names: Iterable[str]) -> None:
    """Delete topics. A topic that does not exist is ignored.

    Raises:
        TopicAdminError: Kafka was unreachable.
    """
    admin = _admin_client(kafka)
    try:
        await admin.start()
        await admin.delete_topics(list(names))
    except KafkaError as exc:
        raise TopicAdminError(
            f"could not delete topics on Kafka at {kafka.bootstrap_servers}: {exc!r}"
        ) from exc
    finally:
        await admin.close()


async def existing_topics(kafka: KafkaSettings) -> set[str]:
    """Return the names of the topics on the broker, without creating any.

    Raises:
        TopicAdminError: the broker could not be reached.
    """
    admin = _admin_client(kafka)
    try:
        await admin.start()
        return set(await admin.list_topics())
    except KafkaError as exc:
        raise TopicAdminError(
            f"could not list topics on Kafka at {kafka.bootstrap_servers}: {exc!r}"
        ) from exc
    finally:
        await admin.close()


def _admin_client(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers,
        request_timeout_ms=int(kafka.request_timeout_s * 1000),
    )


def _new_topic(spec: TopicSpec, replication_factor: int) -> NewTopic:
    return NewTopic(
        name=spec.name,
        num_partitions=spec.partitions,
        replication_factor=replication_factor,
        topic_configs=dict(spec.configs),
    )


def _check_create_response(
    topic_errors: Iterable[tuple[Any, ...]],
) -> tuple[list[str], list[str]]:
    created: list[str] = []
    existing: list[str] = []
    # Each entry is (name, error_code) in CreateTopics v0 and has an error message from v1 on.
    for name, error_code, *details in topic_errors:
        if error_code == 0:
            created.append(name)
        elif error_code == TopicAlreadyExistsError.errno:
            existing.append(name)
        else:
            error = for_code(error_code)
            raise TopicAdminError(
                f"Kafka rejected topic {name!r}: {error.__name__} {' '.join(map(str, details))}"
            )
    return created, existing


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], kafka: KafkaSettings
) -> None:
    # The broker responds to CreateTopics before its metadata shows a leader for each new
    # partition, and until then producers and consumers get errors for the topic.
    deadline = time.monotonic() + kafka.request_timeout_s
    pending = {spec.name: spec.partitions for spec in specs}
    while pending:
        described = await admin.describe_topics(list(pending))
        for topic in described:
            if _has_leaders(topic, pending[topic["topic"]]):
                del pending[topic["topic"]]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TopicAdminError(
                f"Kafka at {kafka.bootstrap_servers} created topics {sorted(pending)} but "
                f"elected no leader for all their partitions within {kafka.request_timeout_s:g} s"
            )
        await asyncio.sleep(_LEADER_POLL_INTERVAL_S)


def _has_leaders(topic: dict[str, Any], partitions: int) -> bool:
    if topic["error_code"] != 0 or len(topic["partitions"]) != partitions:
        return False
    return all(p["error_code"] == 0 and p["leader"] >= 0 for p in topic["partitions"])


async def _warn_on_partition_mismatch(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    if not specs:
        return
    described = await admin.describe_topics([spec.name for spec in specs])
    partition_counts = {topic["topic"]: len(topic["partitions"]) for topic in described}
    for spec in specs:
        actual = partition_counts.get(spec.name)
        if actual is not None and actual != spec.partitions:
            logger.warning(
                "Kafka topic %s has %s partitions, not the configured %s, and is kept as it is",
                spec.name,
                actual,
                spec.partitions,
                extra={"topic": spec.name},
            )
