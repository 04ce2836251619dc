"""The development broker and Herald's topics, against a real Kafka."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from herald.config import BrokerSettings, HeraldSettings, KafkaSettings
from streams.broker import BrokerError, LocalBroker
from streams.topics import TopicAdminError, TopicSpec, delete_topics, ensure_topics


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _partition_counts(kafka: KafkaSettings, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {topic["topic"]: len(topic["partitions"]) for topic in described}


async def _topic_config(kafka: KafkaSettings, name: str, key: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, {key: None})]
        )
    finally:
        await admin.close()
    [resource] = response.resources
    entries = {entry[0]: entry[1] for entry in resource[4]}
    return str(entries[key])


@pytest.fixture
def scratch_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """Return a broker with its own home and free ports, stopped after the test."""
    settings = BrokerSettings(
        home=tmp_path / "kafka",
        port=_free_port(),
        controller_port=_free_port(),
        heap_mb=256,
        start_timeout_s=60,
    )
    broker = LocalBroker(settings)
    yield broker
    broker.stop()


@pytest.mark.kafka
def test_status_reachable(kafka_settings: KafkaSettings) -> None:
    status = LocalBroker(HeraldSettings().broker).status()

    assert status.reachable
    assert status.bootstrap_servers == kafka_settings.bootstrap_servers


@pytest.mark.kafka
def test_ensure_topics_partitions_and_idempotence(kafka_settings: KafkaSettings) -> None:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    specs = [TopicSpec(f"{prefix}.three", 3), TopicSpec(f"{prefix}.one", 1)]
    names = [spec.name for spec in specs]

    try:
        first = asyncio.run(ensure_topics(kafka_settings, specs))
        second = asyncio.run(ensure_topics(kafka_settings, specs))
        counts = asyncio.run(_partition_counts(kafka_settings, names))
    finally:
        asyncio.run(delete_topics(kafka_settings, names))

    assert sorted(first) == sorted(names)
    assert second == []
    assert counts == {f"{prefix}.three": 3, f"{prefix}.one": 1}


@pytest.mark.kafka
def test_herald_topics_configs(unique_topics: Callable[..., KafkaSettings]) -> None:
    kafka = unique_topics(partitions=2)

    counts = asyncio.run(
        _partition_counts(kafka, [kafka.events_topic, kafka.rejected_topic, kafka.campaigns_topic])
    )
    campaigns_policy = asyncio.run(_topic_config(kafka, kafka.campaigns_topic, "cleanup.policy"))
    events_policy = asyncio.run(_topic_config(kafka, kafka.events_topic, "cleanup.policy"))

    assert counts[kafka.events_topic] == 2
    assert counts[kafka.rejected_topic] == 1
    assert counts[kafka.campaigns_topic] == 1
    assert campaigns_policy == "compact"
    assert events_policy == "delete"


def test_ensure_topics_unreachable() -> None:
    address = f"127.0.0.1:{_free_port()}"
    kafka = KafkaSettings(bootstrap_servers=address, request_timeout_s=2)

    with pytest.raises(TopicAdminError) as raised:
        asyncio.run(ensure_topics(kafka, [TopicSpec("unused", 1)]))

    message = str(raised.value)
    assert message.startswith(f"could not create topics on Kafka at {address}: ")
    assert message.endswith(". Check that the broker runs (`herald kafka status`).")


@pytest.mark.kafka
def test_start_stop_scratch_broker(scratch_broker: LocalBroker) -> None:
    assert scratch_broker.start() is True
    running = scratch_broker.status()
    assert running.running
    assert running.reachable
    command = Path(f"/proc/{running.pid}/cmdline").read_bytes().split(b"\0")
    # Kafka's own start script sets this pause goal. G1's default is ten times longer.
    assert b"-XX:MaxGCPauseMillis=20" in command

    assert scratch_broker.start() is False

    assert scratch_broker.stop() is True
    stopped = scratch_broker.status()
    assert not stopped.running
    assert not stopped.reachable
    assert scratch_broker.stop() is False


@pytest.mark.kafka
def test_start_names_other_home(scratch_broker: LocalBroker, tmp_path: Path) -> None:
    scratch_broker.start()
    settings = scratch_broker.settings
    env = {
        "HERALD_BROKER__HOME": str(tmp_path / "other"),
        "HERALD_BROKER__PORT": str(settings.port),
        "HERALD_BROKER__CONTROLLER_PORT": str(settings.controller_port),
    }
    result = subprocess.run(
        [sys.executable, "-m", "herald.cli", "kafka", "start"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0
    assert "not started from this home" in result.stdout
    assert "broker.log" not in result.stdout


@pytest.mark.kafka
def test_start_port_taken_shows_log(scratch_broker: LocalBroker) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", scratch_broker.settings.controller_port))
        taken.listen()

        with pytest.raises(BrokerError) as raised:
            scratch_broker.start()

    message = str(raised.value)
    assert "exited during start-up" in message
    assert "Address already in use" in message
