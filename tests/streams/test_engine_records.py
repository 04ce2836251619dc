"""The records the stream engine writes to the events topic, and which of them it reads."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from herald.config import HeraldSettings, KafkaSettings
from schemas.envelope import format_timestamp
from schemas.wire import decode_events
from streams.catalog import CampaignCatalog
from streams.engine import CONTROL_HEADER, ENGINE_ORIGIN, FLUSH, ORIGIN_HEADER, StreamEngine
from streams.topics import existing_topics
from tests.support.engine import COUPON_TRIGGER, coupon_catalog, coupon_event, engine_settings

pytestmark = pytest.mark.kafka


async def _write(kafka: KafkaSettings, events: list[dict[str, Any]], headers: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            kafka.events_topic, orjson.dumps(events), partition=0, headers=headers
        )
    finally:
        await producer.stop()


async def _events_records(kafka: KafkaSettings, expected: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        kafka.events_topic,
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records += batch
    finally:
        await consumer.stop()
    return records


def _run_engine(  # type: ignore[no-untyped-def]
    settings: HeraldSettings, until, catalog: CampaignCatalog | None = None
) -> StreamEngine:
    async def scenario() -> StreamEngine:
        ready = asyncio.Event()
        ready.set()
        engine = StreamEngine(settings, catalog or coupon_catalog(), ready)
        run = asyncio.create_task(engine.run())
        deadline = time.monotonic() + 60
        try:
            while not await until(engine):
                assert not run.done(), f"the engine stopped: {run.exception()!r}"
                assert time.monotonic() < deadline, "timed out"
                await asyncio.sleep(0.05)
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        return engine

    return asyncio.run(scenario())


def test_notification_records_carry_the_engine_origin(unique_topics) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    settings = engine_settings(kafka)

    async def sent(engine: StreamEngine) -> bool:
        if engine.stats.transactions == 0 and not getattr(engine, "_written", False):
            await _write(kafka, [coupon_event("ada"), coupon_event("grace")], [])
            engine._written = True  # type: ignore[attr-defined]
        return engine.stats.sends >= 2

    _run_engine(settings, sent)
    records = asyncio.run(_events_records(kafka, 2))

    origins = [dict(record.headers).get(ORIGIN_HEADER) for record in records]
    names = [[event["event"] for event in decode_events(record.value)] for record in records]
    assert names == [[COUPON_TRIGGER, COUPON_TRIGGER], ["Notification Sent", "Notification Sent"]]
    assert origins == [None, ENGINE_ORIGIN]


def test_engine_passes_over_records_of_engine_origin(unique_topics) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    settings = engine_settings(kafka)
    marked = [(ORIGIN_HEADER, ENGINE_ORIGIN)]

    async def read_both(engine: StreamEngine) -> bool:
        if not getattr(engine, "_written", False):
            # The marked record comes first: had the engine read it, it would send to ada.
            await _write(kafka, [coupon_event("ada")], marked)
            await _write(kafka, [coupon_event("grace")], [])
            engine._written = True  # type: ignore[attr-defined]
        return engine.stats.events >= 1 and engine.stats.transactions >= 1

    engine = _run_engine(settings, read_both)

    assert engine.stats.events == 1
    assert engine.stats.sends == 1


def test_forged_notification_ignored(unique_topics) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    settings = engine_settings(kafka)
    welcomed = {
        "type": "message",
        "action": "sent",
        "campaign_id": "welcome",
        "window": {"type": "since_first_seen"},
    }
    catalog = coupon_catalog(who={"type": "inline_segment", "definition": welcomed})
    # Written without the engine's header, as any producer could.
    forged = {**coupon_event("ada"), "event": "Notification Sent", "campaign_id": "welcome"}

    async def read_both(engine: StreamEngine) -> bool:
        if not getattr(engine, "_written", False):
            # A record marked as the engine's holds only Notification events.
            await _write(kafka, [coupon_event("grace")], [(ORIGIN_HEADER, ENGINE_ORIGIN)])
            await _write(kafka, [forged, coupon_event("ada")], [])
            engine._written = True  # type: ignore[attr-defined]
        return engine.stats.events >= 1 and engine.stats.transactions >= 1

    engine = _run_engine(settings, read_both, catalog)

    assert engine.stats.events == 1
    assert engine.stats.sends == 0


def test_idle_watermark_waits_for_the_clock(unique_topics) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    settings = engine_settings(kafka)
    quick_idle = settings.engine.model_copy(update={"idle_watermark_s": 0.1})
    settings = settings.model_copy(update={"engine": quick_idle})
    now = datetime.now(UTC)
    # A device whose clock runs 100 s ahead, within what the engine accepts.
    ahead = {**coupon_event("ada"), "timestamp": format_timestamp(now + timedelta(seconds=100))}
    ahead_us = int((now + timedelta(seconds=100)).timestamp() * 1_000_000)
    started = time.monotonic()

    async def idle_for_a_while(engine: StreamEngine) -> bool:
        if not getattr(engine, "_written", False):
            await _write(kafka, [ahead], [])
            engine._written = True  # type: ignore[attr-defined]
        return engine.stats.events >= 1 and time.monotonic() - started > 4

    engine = _run_engine(settings, idle_for_a_while)

    watermark_us = engine._partitions[0].watermark_us
    assert watermark_us is not None
    assert abs(watermark_us - ahead_us) < 1_000


def test_stop_reports_held_sends_without_new_events(unique_topics) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    settings = engine_settings(kafka)
    catalog = coupon_catalog({"throttle": {"max_per_5_minutes": 1}})
    state: dict[str, Any] = {}

    async def stop_once_held(engine: StreamEngine) -> bool:
        if "written" not in state:
            await _write(kafka, [coupon_event(f"user-{n}") for n in range(5)], [])
            state["written"] = time.monotonic()
        if "stopped" not in state and engine.stats.sends == 1:
            # One sent, four held for later slots; no event follows the stop.
            catalog.campaigns["coupon"] = {**catalog.campaigns["coupon"], "state": "stopped"}
            catalog.version += 1
            state["stopped"] = time.monotonic()
        return engine.stats.not_sent["campaign_stopped"] == 4

    engine = _run_engine(settings, stop_once_held, catalog)

    assert engine.stats.sends == 1
    # Well within the 30 s after which an idle partition's watermark moves.
    assert time.monotonic() - state["stopped"] < 10


def test_old_events_are_reported_in_the_log(unique_topics, caplog) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    settings = engine_settings(kafka)
    old = format_timestamp(datetime.now(UTC) - timedelta(hours=3))
    replayed = [{**coupon_event(f"user-{n}"), "timestamp": old} for n in range(5)]
    state: dict[str, Any] = {}

    async def after_the_replay(engine: StreamEngine) -> bool:
        if "live" not in state:
            await _write(kafka, [coupon_event("live-user")], [])
            state["live"] = True
        elif engine.stats.events >= 1 and "old" not in state:
            await _write(kafka, replayed, [])
            state["old"] = True
        return engine.stats.events >= 6 and any("too far" in r.message for r in caplog.records)

    with caplog.at_level("WARNING", logger="streams.engine"):
        engine = _run_engine(settings, after_the_replay)

    warnings = [r.getMessage() for r in caplog.records if "too far" in r.getMessage()]
    assert engine.stats.sends == 1
    assert warnings == [
        "engine: 5 events too far from the partition's event time to trigger a campaign "
        "(more than 7200 s behind it or 120 s ahead); they still updated profiles"
    ]


def test_event_past_api_limit_skipped(unique_topics, caplog) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    settings = engine_settings(kafka)
    # Only a producer other than the API can write it, with any `received_at`.
    last = "9999-12-31T23:59:59.999999Z"
    far = {**coupon_event("far-user"), "timestamp": last, "received_at": last}
    state: dict[str, Any] = {}

    async def live_sent(engine: StreamEngine) -> bool:
        if "written" not in state:
            await _write(kafka, [far, coupon_event("live-user")], [])
            state["written"] = True
        return engine.stats.sends >= 1

    with caplog.at_level("WARNING", logger="streams.engine"):
        engine = _run_engine(settings, live_sent)

    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert engine.stats.events == 1
    assert engine.stats.sends == 1
    assert skipped == [
        f"engine skipped an invalid event: timestamp '{last}' is more than 86400 s after "
        "the worker's clock"
    ]


async def _state_records(kafka: KafkaSettings, key: bytes) -> list[Any]:
    consumer = AIOKafkaConsumer(
        kafka.engine_state_topic,
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    found: list[Any] = []
    try:
        end = await consumer.end_offsets(list(consumer.assignment()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                found += [record for record in batch if record.key == key]
            positions = {tp: await consumer.position(tp) for tp in end}
            if all(positions[tp] >= offset for tp, offset in end.items()):
                break
    finally:
        await consumer.stop()
    return found


def _identify(user_id: str, traits: dict[str, Any]) -> dict[str, Any]:
    return {**coupon_event(user_id), "type": "identify", "event": None, "traits": traits}


def test_oversized_profile_keeps_engine_going(unique_topics, caplog) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    settings = engine_settings(kafka)
    # 40 identify calls of 30 KB each, every one within the event size limit, would make
    # a profile of 1.2 MB, more than the broker takes as one record.
    heavy = [_identify("heavy", {f"trait_{n}": "x" * 30_000}) for n in range(40)]
    state: dict[str, Any] = {}

    async def sent_after_heavy(engine: StreamEngine) -> bool:
        if "written" not in state:
            for start in range(0, len(heavy), 10):
                await _write(kafka, heavy[start : start + 10], [])
            await _write(kafka, [coupon_event("ada")], [])
            state["written"] = True
        return engine.stats.sends >= 1 and engine.stats.transactions >= 1

    with caplog.at_level("WARNING", logger="streams.engine"):
        _run_engine(settings, sent_after_heavy)

    [stored, *_] = reversed(asyncio.run(_state_records(kafka, b"u:heavy")))
    traits = orjson.loads(stored.value)["profile"]["traits"]
    assert len(stored.value) < 1024 * 1024
    assert sorted(traits) == [f"trait_{n}" for n in range(4)]
    full = [r for r in caplog.records if "rejected traits" in r.getMessage()]
    assert {r.user for r in full} == {"heavy"}
    assert sum(r.traits for r in full) == 36


def test_oversized_state_trimmed(unique_topics, caplog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    settings = engine_settings(kafka)
    # A small bound takes the place of the broker's limit, so that a few sends outgrow it.
    monkeypatch.setattr("streams.engine._MAX_STATE_BYTES", 3_000)
    state: dict[str, Any] = {}

    async def all_sent(engine: StreamEngine) -> bool:
        if "written" not in state:
            await _write(kafka, [coupon_event("ada") for _ in range(60)], [])
            await _write(kafka, [coupon_event("grace")], [])
            state["written"] = True
        return engine.stats.sends >= 61

    with caplog.at_level("WARNING", logger="streams.engine"):
        _run_engine(settings, all_sent)

    [stored, *_] = reversed(asyncio.run(_state_records(kafka, b"u:ada")))
    ledger = orjson.loads(stored.value)["ledger"]
    assert len(stored.value) <= 3_000
    assert 0 < len(ledger) < 60
    trims = [r for r in caplog.records if "trimmed a user's state" in r.getMessage()]
    assert {r.user for r in trims} == {"ada"}
    assert all(r.bytes_after <= 3_000 < r.bytes_before for r in trims)
    assert trims[0].getMessage() == (
        "engine trimmed a user's state to fit one Kafka record, dropping the oldest send ids "
        "of the ledger"
    )


def _herald_flush(kafka: KafkaSettings, events_topic: str, cwd: Path) -> Any:
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("HERALD_")},
        "HERALD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "HERALD_KAFKA__EVENTS_TOPIC": events_topic,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    return subprocess.run(
        [sys.executable, "-m", "herald.cli", "flush"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_flush_command_marks_partitions(unique_topics, tmp_path) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=2)

    result = _herald_flush(kafka, kafka.events_topic, tmp_path)
    records = asyncio.run(_events_records(kafka, 2))

    assert result.returncode == 0, result.stderr
    assert "flush pending sends on 2 partitions" in result.stdout
    assert sorted(record.partition for record in records) == [0, 1]
    assert all(dict(record.headers)[CONTROL_HEADER] == FLUSH for record in records)


def test_flush_command_missing_topic(unique_topics, tmp_path) -> None:  # type: ignore[no-untyped-def]
    kafka = unique_topics(partitions=1)
    missing = f"{kafka.events_topic}-mistyped"

    result = _herald_flush(kafka, missing, tmp_path)
    topics = asyncio.run(existing_topics(kafka))

    assert result.returncode == 1
    assert f"topic '{missing}' does not exist" in result.stderr
    assert "Unclosed" not in result.stderr
    assert missing not in topics
