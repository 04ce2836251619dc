"""The broker the benchmark runs against, the names of its topics, and their deletion."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterator

import typer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.measurement import console
from herald.config import HeraldSettings, KafkaSettings
from streams.broker import LocalBroker
from streams.topics import delete_topics


def require_loopback(bootstrap: str) -> None:
    """Raise `typer.BadParameter` unless the host of `bootstrap` is a loopback address."""
    host = bootstrap.rpartition(":")[0].strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise typer.BadParameter(
            f"{bootstrap!r} is not a loopback address; this benchmark measures one machine, "
            "so pass a broker on 127.0.0.1"
        )


def _broker_responds(bootstrap: str) -> bool:
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            pass
    except OSError:
        return False
    return asyncio.run(_admin_lists_topics(bootstrap))


async def _admin_lists_topics(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
    except (KafkaError, OSError):
        return False
    finally:
        await admin.close()
    return True


@contextlib.contextmanager
def running_broker(settings: HeraldSettings, bootstrap: str) -> Iterator[str]:
    """Yield the address of a broker that responds, starting the local one when none does."""
    if _broker_responds(bootstrap):
        yield bootstrap
        return
    broker = LocalBroker(settings.broker)
    with console.status(f"No broker at {bootstrap}; starting one on {broker.bootstrap_servers}"):
        started = broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        if started:
            broker.stop()


def bench_kafka(bootstrap: str, partitions: int, prefix: str) -> KafkaSettings:
    """Return settings whose Herald topics all start with `prefix`."""
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        events_topic=f"{prefix}.events",
        rejected_topic=f"{prefix}.events.rejected",
        campaigns_topic=f"{prefix}.campaigns",
        partitions=partitions,
    )


async def delete_prefixed_topics(kafka: KafkaSettings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix`, Faust's internal ones included."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        await admin.start()
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
    finally:
        await admin.close()
    if names:
        await delete_topics(kafka, names)
    return names
