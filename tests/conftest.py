"""Fixtures shared by Herald's tests.

Tests that need Kafka take `kafka_settings` or `unique_topics` and carry
`@pytest.mark.kafka`, so `pytest -m "not kafka"` runs the rest without a JVM.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest

from herald.config import HeraldSettings, KafkaSettings
from herald.runtime import compiled_modules
from streams.broker import LocalBroker
from streams.topics import delete_topics, ensure_topics, herald_topics


def pytest_sessionstart(session: pytest.Session) -> None:
    # An extension built before the last edit of its source would be tested in its place.
    stale = compiled_modules().stale
    if stale:
        pytest.exit(
            f"compiled modules are older than their source: {', '.join(stale)}. "
            "Run `make compile` again, or `make clean-compiled` to test the source.",
            returncode=2,
        )


def pytest_report_header() -> str:
    return compiled_modules().describe()


@pytest.fixture(scope="session")
def kafka_settings() -> Iterator[KafkaSettings]:
    """Return settings for a reachable local broker, starting one if none responds.

    A broker that this fixture started is stopped at the end of the session, but one
    that was already running (`herald kafka start`, as in CI) is left running.
    """
    settings = HeraldSettings()
    broker = LocalBroker(settings.broker)
    started = False
    if not broker.status().reachable:
        started = broker.start()
    yield KafkaSettings.model_validate(
        settings.kafka.model_dump() | {"bootstrap_servers": broker.bootstrap_servers}
    )
    if started:
        broker.stop()


@pytest.fixture
def unique_topics(kafka_settings: KafkaSettings) -> Iterator[Callable[..., KafkaSettings]]:
    """Return a factory of settings whose Herald topics are new, created and unique.

    Each call makes topic names with a fresh prefix, so tests never see each other's
    records. The factory takes the events topic's partition count (default: the
    settings' `partitions`). The topics are deleted when the test ends.
    """
    created: list[str] = []

    def make(partitions: int | None = None) -> KafkaSettings:
        prefix = f"test-{uuid.uuid4().hex[:12]}"
        kafka = KafkaSettings.model_validate(
            kafka_settings.model_dump()
            | {
                "events_topic": f"{prefix}.events",
                "rejected_topic": f"{prefix}.events.rejected",
                "campaigns_topic": f"{prefix}.campaigns",
                "sends_topic_prefix": f"{prefix}.sends.",
                "engine_state_topic": f"{prefix}.engine.state",
                "engine_runs_topic": f"{prefix}.engine.runs",
                "partitions": partitions or kafka_settings.partitions,
            }
        )
        specs = herald_topics(kafka)
        created.extend(spec.name for spec in specs)
        asyncio.run(ensure_topics(kafka, specs))
        return kafka

    yield make
    if created:
        asyncio.run(delete_topics(kafka_settings, created))


@pytest.fixture
def herald_stack(unique_topics, tmp_path):  # type: ignore[no-untyped-def]
    """Return a factory of Herald deployments (worker and API processes) on fresh topics.

    Processes are started by the test (`start_worker`, `start_api`) and stopped at the end.
    """
    from tests.support.stack import HeraldStack

    stacks: list[HeraldStack] = []

    def make(partitions: int | None = None, **overrides: str) -> HeraldStack:
        root = tmp_path / f"stack{len(stacks)}"
        root.mkdir()
        stack = HeraldStack(unique_topics(partitions), root, **overrides)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
