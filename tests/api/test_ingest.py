"""The ingest endpoints against a real API process, a real broker and the landing worker."""

from __future__ import annotations

import asyncio
import gzip

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from tests.support.stack import CLEVERTAP_ACCOUNT, CLEVERTAP_PASSCODE

pytestmark = pytest.mark.kafka

NOW = "2024-03-13T10:21:14Z"


def _track(user: str, event: str, message_id: str, **fields: object) -> dict[str, object]:
    return {
        "type": "track",
        "userId": user,
        "event": event,
        "messageId": message_id,
        "timestamp": NOW,
        **fields,
    }


def _rejections(stack, expected: int) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    async def read() -> list[dict[str, object]]:
        consumer = AIOKafkaConsumer(
            stack.kafka.rejected_topic,
            bootstrap_servers=stack.kafka.bootstrap_servers,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        found: list[dict[str, object]] = []
        try:
            for _ in range(20):
                batches = await consumer.getmany(timeout_ms=500)
                found += [orjson.loads(r.value) for rs in batches.values() for r in rs]
                if len(found) >= expected:
                    break
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


@pytest.fixture(scope="module")
def stack(request, kafka_settings, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One worker and API for the whole module; each test uses its own user ids."""
    import uuid

    from herald.config import KafkaSettings
    from streams.topics import ensure_topics, herald_topics
    from tests.support.stack import HeraldStack

    prefix = f"test-{uuid.uuid4().hex[:12]}"
    kafka = KafkaSettings.model_validate(
        kafka_settings.model_dump()
        | {
            "events_topic": f"{prefix}.events",
            "rejected_topic": f"{prefix}.rejected",
            "campaigns_topic": f"{prefix}.campaigns",
        }
    )
    asyncio.run(ensure_topics(kafka, herald_topics(kafka)))
    stack = HeraldStack(kafka, tmp_path_factory.mktemp("ingest"))
    stack.start_worker()
    stack.start_api()
    yield stack
    stack.stop()


def test_batch_lands_valid_and_reports_invalid(stack) -> None:  # type: ignore[no-untyped-def]
    batch = [
        _track("batch-a", "home", "batch-1"),
        {"type": "track", "event": "home", "messageId": "batch-2", "timestamp": NOW},
        _track("batch-a", "home", "batch-3", timestamp="2999-01-01T00:00:00Z"),
        _track("batch-a", "home", "batch-4", timestamp="yesterday"),
        _track("batch-a", "home", "batch-5", properties="not an object"),
        _track("batch-a", "cart", "batch-6"),
    ]
    response = stack.post("/v1/batch", {"batch": batch})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is False
    assert body["accepted"] == 2
    rejected = {item["index"]: item for item in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4]
    assert rejected[1]["field"] == "user_id"
    assert rejected[1]["reason"] == "missing: every event needs a user_id or an anonymous_id"
    assert rejected[2]["field"] == "timestamp"
    assert "in the future" in rejected[2]["reason"]
    assert (
        rejected[3]["reason"]
        == "'yesterday' is not an ISO-8601 timestamp such as 2024-03-13T10:21:14Z"
    )
    assert rejected[4]["reason"] == "expected a JSON object, got str"
    stack.wait_for_events(2)
    landed = stack.query("SELECT event FROM events WHERE user_id = 'batch-a' ORDER BY message_id")
    assert landed == [("home",), ("cart",)]
    dead = [r for r in _rejections(stack, 4) if r["source"] == "segment"]
    assert {r["payload"]["messageId"] for r in dead} >= {"batch-2", "batch-3", "batch-4", "batch-5"}
    assert all(r["reason"] for r in dead)


def _raw_track(user: str, event: str, message_id: str, raw_property: bytes) -> bytes:
    """Encode a track event whose property `value` is the raw JSON text `raw_property`."""
    encoded = orjson.dumps(_track(user, event, message_id, properties={"value": "RAW"}))
    return encoded.replace(b'"RAW"', raw_property)


def _wait_for_user_events(stack, user: str, count: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(240):
        if stack.query("SELECT count(*) FROM events WHERE user_id = ?", [user])[0][0] >= count:
            return
        asyncio.run(asyncio.sleep(0.5))


def test_batch_rejects_only_invalid_values(stack) -> None:  # type: ignore[no-untyped-def]
    events = [
        orjson.dumps(_track("values", "home", "values-1")),
        _raw_track("values", "home", "values-2", b"NaN"),
        _raw_track("values", "home", "values-3", b"1e400"),
        _raw_track("values", "home", "values-4", b'"caf\\ud800"'),
        # Parquet and DuckDB store NUL characters, so an event with them is valid.
        orjson.dumps(_track("values", "cart\x00x", "values-5", properties={"value": "a\x00b"})),
        _raw_track("values", "cart", "values-6", b"12.5"),
    ]
    body = b'{"batch": [' + b",".join(events) + b"]}"

    response = stack.post("/v1/batch", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3
    rejected = response.json()["rejected"]
    assert [(item["index"], item["field"]) for item in rejected] == [
        (1, "properties.value"),
        (2, "properties.value"),
        (3, "properties.value"),
    ]
    assert rejected[0]["reason"] == "NaN is not a valid JSON number; send a finite number or null"
    assert rejected[1]["reason"].startswith("Infinity is not a valid JSON number")
    assert rejected[2]["reason"].startswith("contains the unpaired surrogate U+D800")
    _wait_for_user_events(stack, "values", 3)
    landed = stack.query(
        "SELECT message_id, event, properties->>'value' FROM events "
        "WHERE user_id = 'values' ORDER BY message_id"
    )
    assert landed == [
        ("values-1", "home", None),
        ("values-5", "cart\x00x", "a\x00b"),
        ("values-6", "cart", "12.5"),
    ]
    dead: dict[str, str] = {}
    for _ in range(10):
        for record in _rejections(stack, 3):
            payload = record["payload"]
            # orjson cannot encode a surrogate, so that payload is kept as its text form.
            text = payload if isinstance(payload, str) else str(payload.get("messageId"))
            for message_id in ("values-2", "values-3", "values-4"):
                if message_id in text:
                    dead[message_id] = str(record["field"])
        if len(dead) == 3:
            break
    assert dead == {
        "values-2": "properties.value",
        "values-3": "properties.value",
        "values-4": "properties.value",
    }


def test_single_event_invalid_value_names_field(stack) -> None:  # type: ignore[no-untyped-def]
    body = b'{"userId": "values-single", "event": "home", "properties": {"a": [1, -Infinity]}}'

    response = stack.post("/v1/track", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json()["detail"] == {
        "field": "properties.a[1]",
        "reason": "-Infinity is not a valid JSON number, and numbers beyond ±1.8e308 read as "
        "-Infinity; send a finite number or null",
    }


def test_clevertap_record_with_nan(stack) -> None:  # type: ignore[no-untyped-def]
    headers = {
        "X-CleverTap-Account-Id": CLEVERTAP_ACCOUNT,
        "X-CleverTap-Passcode": CLEVERTAP_PASSCODE,
        "content-type": "application/json",
    }
    body = (
        b'{"d": [{"identity": "ct-nan", "ts": 1710325274, "type": "event", "evtName": "Charged",'
        b' "evtData": {"Amount": NaN}},'
        b' {"identity": "ct-nan", "ts": 1710325274, "type": "event", "evtName": "home"}]}'
    )

    response = stack.post("/1/upload", content=body, headers=headers, auth=None)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "partial"
    assert response.json()["processed"] == 1
    [unprocessed] = response.json()["unprocessed"]
    assert (unprocessed["index"], unprocessed["field"]) == (0, "evtData.Amount")
    assert unprocessed["error"] == "NaN is not a valid JSON number; send a finite number or null"
    assert unprocessed["record"] is None
    _wait_for_user_events(stack, "ct-nan", 1)
    assert stack.query("SELECT event FROM events WHERE user_id = 'ct-nan'") == [("home",)]


def test_same_batch_twice_lands_once(stack) -> None:  # type: ignore[no-untyped-def]
    batch = [_track("twice", "home", f"twice-{i}") for i in range(5)]
    first = stack.post("/v1/batch", {"batch": batch})
    retry = stack.post("/v1/batch", {"batch": batch}, headers={"X-Retry-Count": "1"})
    assert first.status_code == retry.status_code == 200
    deadline_rows = stack.query("SELECT count(*) FROM events WHERE user_id = 'twice'")
    for _ in range(40):
        if deadline_rows[0][0] >= 5:
            break
        asyncio.run(asyncio.sleep(0.25))
        deadline_rows = stack.query("SELECT count(*) FROM events WHERE user_id = 'twice'")
    # Give the landing time to write a copy, if it were going to.
    asyncio.run(asyncio.sleep(2))
    rows = stack.query(
        "SELECT message_id, count(*) FROM events WHERE user_id = 'twice' GROUP BY 1 ORDER BY 1"
    )
    assert rows == [(f"twice-{i}", 1) for i in range(5)]


def test_single_event_errors(stack) -> None:  # type: ignore[no-untyped-def]
    bad_json = stack.post(
        "/v1/track", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["detail"].startswith("request body is not valid JSON")

    not_utf8 = stack.post(
        "/v1/track",
        content=b'{"userId": "x", "event": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert not_utf8.status_code == 400
    assert not_utf8.json()["detail"].startswith(
        "request body is not valid UTF-8: byte 0xff at offset 26 (invalid start byte)"
    )

    no_identity = stack.post("/v1/track", {"event": "home", "timestamp": NOW})
    assert no_identity.status_code == 400
    assert no_identity.json()["detail"] == {
        "field": "user_id",
        "reason": "missing: every event needs a user_id or an anonymous_id",
    }

    wrong_type = stack.post("/v1/track", {"userId": "x", "event": 42, "timestamp": NOW})
    assert wrong_type.status_code == 400
    assert wrong_type.json()["detail"] == {"field": "event", "reason": "expected a string, got int"}

    naive = stack.post("/v1/identify", {"userId": "x", "timestamp": "2024-03-13T10:21:14"})
    assert naive.status_code == 400
    assert naive.json()["detail"]["reason"] == (
        "'2024-03-13T10:21:14' has no UTC offset; add 'Z' or an offset such as '+02:00'"
    )

    reserved = stack.post("/v1/track", {"userId": "x", "event": "Notification Clicked"})
    assert reserved.status_code == 400
    assert "reserved" in reserved.json()["detail"]["reason"]

    not_object = stack.post("/v1/track", [1, 2])
    assert not_object.status_code == 400
    assert not_object.json()["detail"] == {
        "field": "message",
        "reason": "expected a JSON object, got list",
    }


def test_oversized_event_and_batch(stack) -> None:  # type: ignore[no-untyped-def]
    big = _track(
        "big",
        "home",
        "big-1",
        properties={
            "blob": "x" * 8000,
            "more": "y" * 8000,
            "and": "z" * 8000,
            "last": "w" * 8000,
            "end": "v" * 2000,
        },
    )
    single = stack.post("/v1/track", big)
    assert single.status_code == 413
    assert "bytes allowed" in single.json()["detail"]

    in_batch = stack.post("/v1/batch", {"batch": [big, _track("big", "home", "big-2")]})
    assert in_batch.status_code == 200
    assert in_batch.json()["accepted"] == 1
    [rejection] = in_batch.json()["rejected"]
    assert rejection["field"] == "event"
    assert rejection["reason"].endswith("more than the 32768 bytes allowed")

    many = stack.post(
        "/v1/batch", {"batch": [_track("many", "home", f"m{i}") for i in range(1001)]}
    )
    assert many.status_code == 413
    assert many.json()["detail"] == "batch: 1001 messages, more than the 1000 allowed"

    heavy = stack.post(
        "/v1/batch",
        {
            "batch": [
                _track("heavy", "home", f"h{i}", properties={"p": "x" * 4000}) for i in range(200)
            ]
        },
    )
    assert heavy.status_code == 413
    assert "more than the 512000 bytes allowed" in heavy.json()["detail"]


def test_write_key_checks(stack) -> None:  # type: ignore[no-untyped-def]
    wrong = stack.post("/v1/track", _track("k", "home", "k1"), auth=("not-a-key", ""))
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "unknown write key"
    missing = stack.post("/v1/track", _track("k", "home", "k1"), auth=None)
    assert missing.status_code == 401


def test_gzip_batch_from_segment_client(stack) -> None:  # type: ignore[no-untyped-def]
    body = gzip.compress(orjson.dumps({"batch": [_track("gz", "home", "gz-1")]}))
    response = stack.post(
        "/v1/batch",
        content=body,
        headers={"content-encoding": "gzip", "content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json()["accepted"] == 1


def test_clevertap_upload(stack) -> None:  # type: ignore[no-untyped-def]
    headers = {
        "X-CleverTap-Account-Id": CLEVERTAP_ACCOUNT,
        "X-CleverTap-Passcode": CLEVERTAP_PASSCODE,
    }
    records = {
        "d": [
            {
                "identity": "ct-1",
                "ts": 1710325274,
                "type": "event",
                "evtName": "Charged",
                "evtData": {"Amount": 12.5},
            },
            {
                "identity": "ct-1",
                "ts": 1710325274000,
                "type": "profile",
                "profileData": {"Name": "Ada", "MSG-email": False},
            },
            {
                "identity": "ct-2",
                "objectId": "x",
                "ts": 1710325274,
                "type": "event",
                "evtName": "home",
            },
            {"identity": "ct-3", "type": "event", "evtName": "home"},
        ]
    }
    dry = stack.post("/1/upload?dryRun=1", records, headers=headers, auth=None)
    assert dry.status_code == 200
    assert dry.json()["processed"] == 2
    assert dry.json()["dry_run"] is True

    response = stack.post("/1/upload", records, headers=headers, auth=None)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "partial"
    assert body["processed"] == 2
    assert [(u["index"], u["field"]) for u in body["unprocessed"]] == [(2, "objectId"), (3, "ts")]

    stack.post("/1/upload", records, headers=headers, auth=None)  # a retry: lands once
    stack.wait_for_events(2)
    asyncio.run(asyncio.sleep(2))
    rows = stack.query(
        "SELECT type, event, timestamp::VARCHAR FROM events WHERE user_id = 'ct-1' ORDER BY type"
    )
    assert rows == [
        ("identify", None, "2024-03-13 10:21:14+00"),
        ("track", "Charged", "2024-03-13 10:21:14+00"),
    ]
    assert stack.query("SELECT count(*) FROM events WHERE user_id = 'ct-2'") == [(0,)]

    unauthorised = stack.post(
        "/1/upload", records, headers={**headers, "X-CleverTap-Passcode": "wrong"}, auth=None
    )
    assert unauthorised.status_code == 401


def test_out_of_range_timestamps(stack) -> None:  # type: ignore[no-untyped-def]
    year_one = stack.post(
        "/v1/track", _track("old", "home", "old-1", timestamp="0001-01-01T00:00:00Z")
    )
    assert year_one.status_code == 400
    assert year_one.json()["detail"] == {
        "field": "timestamp",
        "reason": "0001-01-01T00:00:00.000000Z is before 1970-01-01; check the sender's clock",
    }
    overflow = stack.post(
        "/v1/track", _track("old", "home", "old-2", timestamp="9999-12-31T23:59:59-01:00")
    )
    assert overflow.status_code == 400
    assert (
        overflow.json()["detail"]["reason"]
        == "'9999-12-31T23:59:59-01:00' is out of the range of timestamps"
    )


def test_deeply_nested_event_in_batch(stack) -> None:  # type: ignore[no-untyped-def]
    # Python's encoders stop short of this depth, so the body is written by hand.
    deep = orjson.dumps(_track("deep", "home", "deep-1", properties={"a": "NESTED"}))
    deep = deep.replace(b'"NESTED"', b"[" * 1000 + b"]" * 1000)
    body = b'{"batch": [' + deep + b"," + orjson.dumps(_track("deep", "home", "deep-2")) + b"]}"
    response = stack.post("/v1/batch", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"][0]["reason"] == "is nested deeper than the 5 levels allowed"


def test_body_limits_before_reading(stack) -> None:  # type: ignore[no-untyped-def]
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 65536

    streamed = stack.post(
        "/v1/batch", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert "more than the 512000 bytes allowed" in streamed.json()["detail"]


def test_truncated_gzip_rejected(stack) -> None:  # type: ignore[no-untyped-def]
    body = gzip.compress(orjson.dumps({"batch": [_track("gz", "home", "gz-2")]}))
    for broken in (body[:-8], body + b"garbage"):
        response = stack.post("/v1/batch", content=broken, headers={"content-encoding": "gzip"})
        assert response.status_code == 400
        assert response.json()["detail"].startswith("request body is not valid gzip")


def test_gzip_members_joined(stack) -> None:  # type: ignore[no-untyped-def]
    text = orjson.dumps({"batch": [_track("gz", "home", "gz-3"), _track("gz", "home", "gz-4")]})
    middle = len(text) // 2
    body = gzip.compress(text[:middle]) + gzip.compress(text[middle:])

    response = stack.post("/v1/batch", content=body, headers={"content-encoding": "gzip"})

    assert response.status_code == 200
    assert response.json()["accepted"] == 2


def test_gzip_bomb_names_sizes(stack) -> None:  # type: ignore[no-untyped-def]
    body = gzip.compress(b" " * (8 * 1024 * 1024))

    response = stack.post("/v1/batch", content=body, headers={"content-encoding": "gzip"})

    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"request body of {len(body)} bytes inflates to more than the 512000 bytes allowed"
    )


def test_kafka_down_gives_503(kafka_settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.support.stack import HeraldStack, free_port

    dead = kafka_settings.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    stack = HeraldStack(dead, tmp_path, HERALD_KAFKA__SEND_TIMEOUT_S="2")
    stack.start_api()
    try:
        response = stack.post("/v1/track", _track("down", "home", "down-1"), timeout=20)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert (
            response.json()["detail"]
            == "events were not stored because Kafka is unavailable; retry the request"
        )
    finally:
        stack.stop()
