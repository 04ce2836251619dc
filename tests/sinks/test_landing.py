"""The Parquet landing against a real broker, read back with DuckDB."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

import sinks.landing as landing_module
from herald.config import KafkaSettings, LandingSettings
from queries.catalog import connect
from schemas.wire import ENGINE_ORIGIN, ORIGIN_HEADER, decode_events
from sinks.files import TEMP_PREFIX, write_parquet_atomically
from sinks.landing import LandingStats, ParquetLanding
from sinks.parquet import LandedRow, event_tables_by_date, events_dir
from streams.producer import EventProducer, partition_for
from tests.sinks.conftest import Event

pytestmark = pytest.mark.kafka

_LAND_TIMEOUT_S = 30.0

Topics = Callable[..., KafkaSettings]
Settings = Callable[..., LandingSettings]


@pytest.fixture
def landing_settings(tmp_path: Path) -> Settings:
    """Return a factory of landing settings on `tmp_path`, each with a new consumer group."""

    def make(**overrides: Any) -> LandingSettings:
        return LandingSettings(
            data_dir=tmp_path,
            group_id=f"test-landing-{uuid.uuid4().hex[:12]}",
            flush_interval_s=0.2,
            **overrides,
        )

    return make


async def _send(kafka: KafkaSettings, *calls: list[dict[str, Any]]) -> None:
    """Send each list of envelopes with one `send_events` call, as the API does."""
    producer = EventProducer(kafka)
    try:
        for envelopes in calls:
            await producer.send_events([(e, orjson.dumps(e)) for e in envelopes])
    finally:
        await producer.stop()


async def _send_raw(
    kafka: KafkaSettings, values: list[bytes | None], key: bytes | None = None
) -> None:
    """Send each value as a record of its own to partition 0 of the events topic."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(kafka.events_topic, value=value, key=key, partition=0)
    finally:
        await producer.stop()


async def _read_topic(kafka: KafkaSettings, topic: str, partitions: int) -> list[ConsumerRecord]:
    """Read every record of `topic` up to its current end offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        expected = sum((await consumer.end_offsets(assigned)).values())
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + _LAND_TIMEOUT_S
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            records += [record for batch in batches.values() for record in batch]
    finally:
        await consumer.stop()
    assert len(records) == expected, f"read {len(records)} of the {expected} records of {topic}"
    return records


async def _end_offsets(kafka: KafkaSettings) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    await consumer.start()
    try:
        assigned = [TopicPartition(kafka.events_topic, p) for p in range(kafka.partitions)]
        ends = await consumer.end_offsets(assigned)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def _land(kafka: KafkaSettings, settings: LandingSettings) -> LandingStats:
    """Run a landing until it has committed every record now in the events topic, then stop it."""
    landing = ParquetLanding(kafka, settings)
    task = asyncio.create_task(landing.run())
    try:
        await _wait_committed(kafka, settings.group_id, [task], landing.stats)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return landing.stats


async def _wait_committed(
    kafka: KafkaSettings, group_id: str, tasks: list[asyncio.Task[None]], stats: LandingStats
) -> None:
    """Wait until `group_id` has committed every record now in the events topic."""
    ends = await _end_offsets(kafka)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    deadline = time.monotonic() + _LAND_TIMEOUT_S
    try:
        while True:
            offsets = await admin.list_consumer_group_offsets(group_id)
            committed = {p: 0 for p in ends} | {
                tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0
            }
            if committed == ends:
                return
            for task in tasks:
                if task.done():
                    task.result()
                    raise AssertionError("the landing stopped before committing every record")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"committed {committed}, expected {ends} after {_LAND_TIMEOUT_S} s; "
                    f"stats {stats}"
                )
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


async def _land_after_send(
    kafka: KafkaSettings, settings: LandingSettings, *calls: list[dict[str, Any]]
) -> LandingStats:
    await _send(kafka, *calls)
    return await _land(kafka, settings)


async def _land_after_raw(
    kafka: KafkaSettings, settings: LandingSettings, values: list[bytes | None]
) -> LandingStats:
    await _send_raw(kafka, values)
    return await _land(kafka, settings)


def _landed(data_dir: Path) -> list[tuple[Any, ...]]:
    """Return (message_id, user_id, partition, offset, index) of every landed event."""
    with connect(data_dir) as connection:
        return connection.execute(
            "SELECT message_id, user_id, _kafka_partition, _kafka_offset, _kafka_index "
            "FROM events ORDER BY _kafka_partition, _kafka_offset, _kafka_index"
        ).fetchall()


def _positions(records: list[ConsumerRecord]) -> list[tuple[Any, ...]]:
    """Return (message_id, user_id, partition, offset, index) of every event in `records`."""
    found = [
        (envelope["message_id"], envelope["user_id"], record.partition, record.offset, index)
        for record in records
        for index, envelope in enumerate(decode_events(record.value))
    ]
    return sorted(found, key=lambda row: row[2:])


def _file_names(data_dir: Path) -> set[str]:
    return {
        str(path.relative_to(events_dir(data_dir)))
        for path in events_dir(data_dir).glob("date=*/*")
    }


def test_land_every_event_once(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(3)
    users = [f"u-{n}" for n in range(6)]
    first_call = [event(user) for user in users for _ in range(2)]
    second_call = [event(user, timestamp="2024-03-14T00:00:01Z") for user in users[:3]]

    async def scenario() -> tuple[LandingStats, list[ConsumerRecord]]:
        await _send(kafka, first_call, second_call)
        stats = await _land(kafka, landing_settings())
        return stats, await _read_topic(kafka, kafka.events_topic, 3)

    stats, records = asyncio.run(scenario())
    landed = _landed(tmp_path)

    assert len(landed) == 15
    assert landed == _positions(records)
    assert {row[0] for row in landed} == {e["message_id"] for e in first_call + second_call}
    assert stats == LandingStats(landed=15, duplicates=0, rejected=0, files=stats.files)
    for message_id, user_id, partition, _offset, _index in landed:
        assert partition == partition_for(user_id, 3), message_id


def test_land_dates_and_file_names(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    envelopes = [
        event(message_id="m-13", timestamp="2024-03-13T23:59:59Z"),
        event(message_id="m-14", timestamp="2024-03-14T01:00:00+02:00"),
        event(message_id="m-15", timestamp="2024-03-15T00:00:00Z"),
    ]

    stats = asyncio.run(_land_after_send(kafka, landing_settings(), envelopes))

    # One record at offset 0, split over the UTC dates of its events.
    assert _file_names(tmp_path) == {
        "date=2024-03-13/part-0-0-0.parquet",
        "date=2024-03-15/part-0-0-0.parquet",
    }
    assert stats.files == 2
    with connect(tmp_path) as connection:
        dates = connection.execute(
            "SELECT message_id, CAST(date AS VARCHAR), strftime(timestamp, '%Y-%m-%dT%H:%M:%S') "
            "FROM events ORDER BY message_id"
        ).fetchall()
    assert dates == [
        ("m-13", "2024-03-13", "2024-03-13T23:59:59"),
        ("m-14", "2024-03-13", "2024-03-13T23:00:00"),
        ("m-15", "2024-03-15", "2024-03-15T00:00:00"),
    ]


def test_land_content(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    envelope = event(
        message_id="m-1",
        properties={"Amount": 300, "Items": [{"sku": "A1"}]},
        context={"timezone": "Europe/Berlin"},
    ) | {"campaign_id": "c-1", "variant": "B", "channel": "push", "labels": ["Spring Sale"]}

    asyncio.run(_land_after_send(kafka, landing_settings(), [envelope]))

    with connect(tmp_path) as connection:
        row = connection.execute(
            "SELECT type, event, properties->>'Amount', properties->'Items'->0->>'sku', "
            "context->>'timezone', campaign_id, variant, channel, labels FROM events"
        ).fetchall()
    assert row == [
        (
            "track",
            "Product Viewed",
            "300",
            "A1",
            "Europe/Berlin",
            "c-1",
            "B",
            "push",
            ["Spring Sale"],
        )
    ]


def test_land_flush_records_boundary(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    # One call per event, so that every event is a record of its own.
    calls = [[event(message_id=f"m-{n}")] for n in range(7)]

    stats = asyncio.run(_land_after_send(kafka, landing_settings(flush_records=3), *calls))

    assert stats.landed == 7
    assert _file_names(tmp_path) >= {
        "date=2024-03-13/part-0-0-2.parquet",
        "date=2024-03-13/part-0-3-5.parquet",
    }
    assert len(_landed(tmp_path)) == 7


def test_stray_file_removed(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    envelopes = [event(message_id=f"m-{n}") for n in range(4)]
    # A complete file of these very events, as a landing that crashed before its offset
    # commit leaves it.
    stray = events_dir(tmp_path) / "date=2024-03-13" / "part-0-0-999.parquet"
    rows = [LandedRow(e, 0, n) for n, e in enumerate(envelopes)]
    write_parquet_atomically(event_tables_by_date(rows, 0)["2024-03-13"], stray)
    # Files of a partition this topic does not have belong to no one here.
    other = events_dir(tmp_path) / "date=2024-03-13" / "part-7-0-999.parquet"
    write_parquet_atomically(event_tables_by_date(rows, 7)["2024-03-13"], other)

    stats = asyncio.run(_land_after_send(kafka, landing_settings(), envelopes))

    assert not stray.exists()
    assert other.exists()
    assert stats.landed == 4
    assert stats.duplicates == 0
    landed = [row for row in _landed(tmp_path) if row[2] == 0]
    assert sorted(row[0] for row in landed) == ["m-0", "m-1", "m-2", "m-3"]
    assert _file_names(tmp_path) == {
        "date=2024-03-13/part-0-0-0.parquet",
        "date=2024-03-13/part-7-0-999.parquet",
    }


def test_stray_file_after_commit_removed(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    settings = landing_settings()
    first = [event(message_id=f"first-{n}") for n in range(3)]
    second = [event(message_id=f"second-{n}") for n in range(3)]

    asyncio.run(_land_after_send(kafka, settings, first))
    # Offset 0 is committed; a crash after writing offset 1 left this file behind.
    stray = events_dir(tmp_path) / "date=2024-03-13" / "part-0-1-1.parquet"
    rows = [LandedRow(e, 1, n) for n, e in enumerate(second)]
    write_parquet_atomically(event_tables_by_date(rows, 0)["2024-03-13"], stray)
    stats = asyncio.run(_land_after_send(kafka, settings, second))

    assert stats.landed == 3
    assert stats.duplicates == 0
    assert _file_names(tmp_path) == {
        "date=2024-03-13/part-0-0-0.parquet",
        "date=2024-03-13/part-0-1-1.parquet",
    }
    assert sorted(row[0] for row in _landed(tmp_path)) == [
        "first-0", "first-1", "first-2", "second-0", "second-1", "second-2"
    ]  # fmt: skip


def test_temp_leftover_removed(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    directory = events_dir(tmp_path) / "date=2024-03-01"
    directory.mkdir(parents=True)
    leftover = directory / f"{TEMP_PREFIX}part-0-3-7.parquet.tmp"
    leftover.write_bytes(b"PAR1 half written")
    other = directory / f"{TEMP_PREFIX}part-5-3-7.parquet.tmp"
    other.write_bytes(b"PAR1 half written")

    stats = asyncio.run(_land_after_send(kafka, landing_settings(), [event(message_id="m-1")]))

    assert not leftover.exists()
    assert other.exists()
    assert stats.landed == 1
    assert [row[0] for row in _landed(tmp_path)] == ["m-1"]


def test_rejected_records(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    valid = [event(message_id=f"valid-{n}") for n in range(4)]
    lacking = {"message_id": "lacking", "type": "track", "user_id": "u-1"}
    anonymous = event(message_id="no-identity") | {"user_id": None}
    local_time = event(message_id="local-time") | {"timestamp": "2024-03-13T12:21:14+02:00"}
    values = [
        orjson.dumps(valid[0]),
        b"not json",
        b"42",
        b"\x00\xff\x10garbage",
        orjson.dumps([valid[1], lacking, valid[2]]),
        orjson.dumps([anonymous, "text", local_time]),
        orjson.dumps(valid[3]),
    ]

    async def scenario() -> tuple[LandingStats, list[ConsumerRecord]]:
        await _send_raw(kafka, values)
        stats = await _land(kafka, landing_settings())
        return stats, await _read_topic(kafka, kafka.rejected_topic, 1)

    stats, records = asyncio.run(scenario())
    rejections = [orjson.loads(record.value) for record in records]

    assert [(r["reason"], r["payload"]) for r in rejections] == [
        (
            "record value is not an event or an array of events: "
            "invalid literal, expected 'null': line 1 column 1 (char 0)",
            "not json",
        ),
        (
            "record value is not an event or an array of events: "
            "record value is a JSON int, not an object or array",
            "42",
        ),
        (
            "record value is not UTF-8: byte 0xff at offset 1 (invalid start byte)",
            "\x00\\xff\x10garbage",
        ),
        ("timestamp 'None' is not a UTC timestamp such as 2024-03-13T10:21:14Z", lacking),
        ("event has neither user_id nor anonymous_id", anonymous),
        ("expected an event object, got str", "text"),
        (
            "timestamp '2024-03-13T12:21:14+02:00' is not a UTC timestamp "
            "such as 2024-03-13T10:21:14Z",
            local_time,
        ),
    ]
    for rejection in rejections:
        assert rejection["source"] == "landing"
        assert rejection["field"] is None
        assert rejection["index"] is None
    assert stats.rejected == 7
    assert stats.landed == 4
    assert [(row[0], row[3], row[4]) for row in _landed(tmp_path)] == [
        ("valid-0", 0, 0),
        ("valid-1", 4, 0),
        ("valid-2", 4, 2),
        ("valid-3", 6, 0),
    ]


def test_null_value_rejected(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)

    async def scenario() -> tuple[LandingStats, list[ConsumerRecord]]:
        await _send_raw(kafka, [None, orjson.dumps(event(message_id="after-null"))], key=b"u-1")
        stats = await _land(kafka, landing_settings())
        return stats, await _read_topic(kafka, kafka.rejected_topic, 1)

    stats, records = asyncio.run(scenario())

    assert stats.rejected == 1
    assert len(records) == 1
    assert [row[0] for row in _landed(tmp_path)] == ["after-null"]


def test_wrong_field_type_rejected(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    numeric_user = event(message_id="numeric-user") | {"user_id": 42}
    values = [orjson.dumps(numeric_user), orjson.dumps(event(message_id="valid"))]

    stats = asyncio.run(_land_after_raw(kafka, landing_settings(), values))

    assert stats.rejected == 1
    assert [row[0] for row in _landed(tmp_path)] == ["valid"]


def test_forged_notification_rejected(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    forged = event(message_id="forged") | {"event": "Notification Sent"}
    engine_written = event(message_id="from-engine") | {"event": "Notification Sent"}
    hidden = event(message_id="hidden") | {"event": "payment_error"}

    async def scenario() -> tuple[LandingStats, list[ConsumerRecord]]:
        await _send_raw(kafka, [orjson.dumps([forged, event(message_id="valid")])])
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                kafka.events_topic,
                value=orjson.dumps([engine_written, hidden]),
                partition=0,
                headers=[(ORIGIN_HEADER, ENGINE_ORIGIN)],
            )
        finally:
            await producer.stop()
        stats = await _land(kafka, landing_settings())
        return stats, await _read_topic(kafka, kafka.rejected_topic, 1)

    stats, records = asyncio.run(scenario())
    reasons = [orjson.loads(record.value)["reason"] for record in records]

    assert stats.rejected == 2
    assert reasons == [
        "event 'Notification Sent' is written by Herald's engine only, and this record lacks "
        "its header herald-origin: engine",
        "a record with the header herald-origin: engine holds only the engine's Notification "
        "events, not track event 'payment_error'",
    ]
    assert sorted(row[0] for row in _landed(tmp_path)) == ["from-engine", "valid"]


def test_restart_lands_nothing_twice(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(2)
    settings = landing_settings()
    first = [event(f"u-{n}", message_id=f"first-{n}") for n in range(6)]
    second = [event(f"u-{n}", message_id=f"second-{n}") for n in range(4)]

    first_stats = asyncio.run(_land_after_send(kafka, settings, first))
    first_files = _file_names(tmp_path)
    idle_stats = asyncio.run(_land(kafka, settings))
    second_stats = asyncio.run(_land_after_send(kafka, settings, second))

    assert first_stats.landed == 6
    assert idle_stats == LandingStats()
    assert second_stats.landed == 4
    assert second_stats.duplicates == 0
    assert first_files < _file_names(tmp_path)
    message_ids = [row[0] for row in _landed(tmp_path)]
    assert sorted(message_ids) == sorted(e["message_id"] for e in first + second)


def test_duplicates_land_once(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    settings = landing_settings()
    original = event("u-1", message_id="m-1", properties={"copy": 0})
    retried = event("u-1", message_id="m-1", properties={"copy": 1})
    other_user = event("u-2", message_id="m-1")
    again = event("u-1", message_id="m-1", properties={"copy": 2})

    first_stats = asyncio.run(_land_after_send(kafka, settings, [original, other_user], [retried]))
    # A new landing rebuilds its index of seen ids from the landed files.
    second_stats = asyncio.run(
        _land_after_send(kafka, settings, [again, event("u-1", message_id="m-2")])
    )

    assert (first_stats.landed, first_stats.duplicates) == (2, 1)
    assert (second_stats.landed, second_stats.duplicates) == (1, 1)
    with connect(tmp_path) as connection:
        rows = connection.execute(
            "SELECT user_id, message_id, properties->>'copy' FROM events ORDER BY user_id, message_id"
        ).fetchall()
    assert rows == [("u-1", "m-1", "0"), ("u-1", "m-2", None), ("u-2", "m-1", None)]


def test_duplicates_in_one_record(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    copies = [event("u-1", message_id="m-1") for _ in range(3)]

    stats = asyncio.run(_land_after_send(kafka, landing_settings(), copies))

    assert (stats.landed, stats.duplicates) == (1, 2)
    assert [row[:2] for row in _landed(tmp_path)] == [("m-1", "u-1")]


def test_copy_after_window_lands(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    kafka = unique_topics(1)
    received = datetime.now(UTC) - timedelta(seconds=200)
    first = event(message_id="m-1", received_at=received)
    late = event(message_id="m-1", received_at=received + timedelta(seconds=120))

    stats = asyncio.run(
        _land_after_send(kafka, landing_settings(dedup_window_s=60), [first], [late])
    )

    assert (stats.landed, stats.duplicates) == (2, 0)
    assert [row[0] for row in _landed(tmp_path)] == ["m-1", "m-1"]


def test_second_landing_joins_exactly_once(
    unique_topics: Topics, landing_settings: Settings, event: Event, tmp_path: Path
) -> None:
    """A landing that joins mid-stream takes partitions over without a duplicate or a crash."""
    kafka = unique_topics(4)
    settings = landing_settings(flush_records=5)
    batches = [
        [event(f"u-{n % 40}") for n in range(start, start + 40)] for start in range(0, 4000, 40)
    ]

    async def scenario() -> tuple[LandingStats, LandingStats]:
        first, second = ParquetLanding(kafka, settings), ParquetLanding(kafka, settings)
        first_task = asyncio.create_task(first.run())
        producer = EventProducer(kafka)
        try:
            for number, batch in enumerate(batches):
                await producer.send_events([(e, orjson.dumps(e)) for e in batch])
                if number == len(batches) // 4:
                    second_task = asyncio.create_task(second.run())
                await asyncio.sleep(0.03)
        finally:
            await producer.stop()
        tasks = [first_task, second_task]
        await _wait_committed(kafka, settings.group_id, tasks, first.stats)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return first.stats, second.stats

    first_stats, second_stats = asyncio.run(scenario())
    landed = _landed(tmp_path)

    assert len(landed) == 4000
    assert len({row[0] for row in landed}) == 4000
    assert first_stats.landed > 0
    assert second_stats.landed > 0


async def _send_numbered(producer: EventProducer, event: Event, first: int, last: int) -> None:
    """Send events `late-<first>` to `late-<last - 1>`, one record each."""
    for number in range(first, last):
        envelope = event(message_id=f"late-{number}")
        await producer.send_events([(envelope, orjson.dumps(envelope))])


def _copy_flush(tmp_path: Path) -> Path:
    """Copy the landed file of offsets 0 to 4 as a late flush of offsets 0 to 2."""
    [landed] = list(tmp_path.rglob("part-0-0-4.parquet"))
    copy = landed.with_name("part-0-0-2.parquet")
    shutil.copyfile(landed, copy)
    return copy


async def _send_until_gone(producer: EventProducer, event: Event, copy: Path) -> None:
    """Send events until `copy` is deleted, because the landing looks after a commit."""
    deadline = time.monotonic() + 10
    number = 10
    while copy.exists() and time.monotonic() < deadline:
        await _send_numbered(producer, event, number, number + 1)
        number += 1
        await asyncio.sleep(0.3)


def test_late_copy_removed(
    unique_topics: Topics,
    landing_settings: Settings,
    event: Event,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file that a stalled worker writes after the takeover goes; its events stay once."""
    monkeypatch.setattr(landing_module, "_SWEEP_INTERVAL_S", 0.2, raising=False)
    kafka = unique_topics(1)
    settings = landing_settings(flush_records=5)

    async def scenario() -> Path:
        landing = ParquetLanding(kafka, settings)
        task = asyncio.create_task(landing.run())
        producer = EventProducer(kafka)
        try:
            await _send_numbered(producer, event, 0, 10)
            await _wait_committed(kafka, settings.group_id, [task], landing.stats)
            # The stalled worker's flush, renamed into place after this landing took over.
            copy = _copy_flush(tmp_path)
            await _send_until_gone(producer, event, copy)
            await _wait_committed(kafka, settings.group_id, [task], landing.stats)
        finally:
            await producer.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return copy

    copy = asyncio.run(scenario())
    landed = _landed(tmp_path)

    assert not copy.exists()
    assert len(landed) == len({row[0] for row in landed})


def test_copy_before_takeover_removed(
    unique_topics: Topics,
    landing_settings: Settings,
    event: Event,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A late copy of offsets before the owner's start goes when another file contains them."""
    monkeypatch.setattr(landing_module, "_SWEEP_INTERVAL_S", 0.2, raising=False)
    kafka = unique_topics(1)
    settings = landing_settings(flush_records=5)

    async def scenario() -> Path:
        producer = EventProducer(kafka)
        try:
            await _send_numbered(producer, event, 0, 10)
            await _land(kafka, settings)
            # A stalled worker's flush, renamed into place after the partition had moved
            # on twice: the next owner starts at offset 10.
            copy = _copy_flush(tmp_path)
            landing = ParquetLanding(kafka, settings)
            task = asyncio.create_task(landing.run())
            try:
                await _send_until_gone(producer, event, copy)
                await _wait_committed(kafka, settings.group_id, [task], landing.stats)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await producer.stop()
        return copy

    copy = asyncio.run(scenario())
    landed = _landed(tmp_path)

    assert not copy.exists()
    assert len(landed) == len({row[0] for row in landed})
    assert {f"late-{number}" for number in range(10)} <= {row[0] for row in landed}
