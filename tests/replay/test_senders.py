from __future__ import annotations

import base64
from datetime import datetime

import pytest
from pydantic import SecretStr

from herald.config import CleverTapAccount
from herald.replay import (
    ApiUnreachableError,
    CleverTapSender,
    CredentialsRejectedError,
    SegmentSender,
    SendOptions,
    check_api,
)

from .conftest import ACCOUNT_ID, PASSCODE, WRITE_KEY

ACCOUNT = CleverTapAccount(account_id=ACCOUNT_ID, passcode=SecretStr(PASSCODE))


def _tracks(count: int) -> list[dict]:
    return [
        {
            "type": "track",
            "messageId": f"m-{i}",
            "userId": f"u{i % 7}",
            "event": "Viewed",
            "timestamp": f"2024-01-01T10:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
            "properties": {"n": i},
        }
        for i in range(count)
    ]


def _received(server) -> list[dict]:
    return [message for body in server.posted("/v1/batch") for message in body["batch"]]


def _records(count: int) -> list[dict]:
    return [
        {"identity": f"u{i}", "ts": 1_700_000_000 + i, "type": "event", "evtName": "Viewed"}
        for i in range(count)
    ]


# ----------------------------------------------------------------------------- check_api


def test_check_api_healthy(ingest_server):
    check_api(ingest_server.url)

    assert [r.path for r in ingest_server.requests] == ["/health"]


def test_check_api_connection_refused(closed_url):
    with pytest.raises(ApiUnreachableError) as raised:
        check_api(closed_url)

    message = str(raised.value)
    assert message.startswith(f"cannot reach the Herald API at {closed_url} (")
    assert message.endswith("); start it with `herald api`, or pass its address with --host")


def test_check_api_unhealthy(ingest_server):
    ingest_server.script("/health", 503, {"status": "starting"})

    with pytest.raises(ApiUnreachableError) as raised:
        check_api(ingest_server.url)

    assert str(raised.value) == (
        f"GET {ingest_server.url}/health returned HTTP 503, expected 200; "
        "check that --host points at a running Herald API"
    )


def test_send_options_reject_bare_host():
    with pytest.raises(
        ValueError, match=r"^host '127.0.0.1:8080' is not an http:// or https:// URL$"
    ):
        SendOptions(host="127.0.0.1:8080")


# ----------------------------------------------------------------------------- Segment


def test_segment_batches_in_order(ingest_server):
    messages = _tracks(250)
    progress: list[int] = []
    sender = SegmentSender(SendOptions(host=ingest_server.url, batch_size=100), WRITE_KEY)

    report = sender.send(messages, on_progress=progress.append)

    received = _received(ingest_server)
    assert [m["messageId"] for m in received] == [m["messageId"] for m in messages]
    assert [len(b["batch"]) for b in ingest_server.posted("/v1/batch")] == [100, 100, 50]
    assert progress == [100, 100, 50]
    assert report.accepted == 250
    assert report.succeeded


def test_segment_basic_auth_header(ingest_server):
    sender = SegmentSender(SendOptions(host=ingest_server.url), WRITE_KEY)

    sender.send(_tracks(1))

    expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert ingest_server.requests[0].headers["Authorization"] == expected


def test_segment_keeps_ids_and_fields(ingest_server):
    messages = [
        {
            "type": "identify",
            "messageId": "ecom-7-identify",
            "userId": "u1",
            "timestamp": "2024-03-13T10:21:14+00:00",
            "traits": {"email": "u1@example.com"},
            "context": {"timezone": "Europe/Berlin"},
        },
        {
            "type": "page",
            "messageId": "p-1",
            "anonymousId": "a1",
            "name": "Home",
            "timestamp": "2024-03-13T10:21:15.123456+02:00",
            "properties": {"path": "/"},
        },
        {"type": "alias", "messageId": "al-1", "userId": "u1", "previousId": "a1"},
        {"type": "group", "messageId": "g-1", "userId": "u1", "groupId": "acme", "traits": {}},
    ]
    sender = SegmentSender(SendOptions(host=ingest_server.url), WRITE_KEY)

    sender.send(messages)

    identify, page, alias, group = _received(ingest_server)
    assert identify["messageId"] == "ecom-7-identify"
    assert identify["traits"] == {"email": "u1@example.com"}
    assert identify["context"]["timezone"] == "Europe/Berlin"
    assert identify["timestamp"] == "2024-03-13T10:21:14.000+00:00"
    # The client keeps the offset but only millisecond precision.
    assert page["timestamp"] == "2024-03-13T10:21:15.123+02:00"
    assert page["anonymousId"] == "a1"
    assert page["name"] == "Home"
    assert alias["previousId"] == "a1"
    assert group["groupId"] == "acme"
    assert "library" not in messages[0]["context"]


def test_segment_ecom_timestamps_same_instant(ingest_server, write_ecom_csv):
    from herald.replay import read_ecom_csv

    path = write_ecom_csv(["u1,s1,home,2024-03-13 10:21:14,web,email,2024-01,new"])
    messages = list(read_ecom_csv(path))
    sender = SegmentSender(SendOptions(host=ingest_server.url), WRITE_KEY)

    sender.send(messages)

    received = _received(ingest_server)
    assert [m["messageId"] for m in received] == ["ecom-0-identify", "ecom-0-track"]
    for sent, got in zip(messages, received, strict=True):
        assert datetime.fromisoformat(got["timestamp"]) == datetime.fromisoformat(sent["timestamp"])


def test_segment_naive_timestamp_read_as_utc(ingest_server):
    message = {**_tracks(1)[0], "timestamp": datetime.now().isoformat()}
    sender = SegmentSender(SendOptions(host=ingest_server.url), WRITE_KEY)

    sender.send([message])

    assert _received(ingest_server)[0]["timestamp"].endswith("+00:00")


def test_segment_rejected_write_key(ingest_server):
    sender = SegmentSender(SendOptions(host=ingest_server.url), "wrong-key")

    with pytest.raises(CredentialsRejectedError) as raised:
        sender.send(_tracks(250))

    assert str(raised.value) == (
        f"the API at {ingest_server.url} rejected the write key (HTTP 401); "
        "pass one of HERALD_INGEST__WRITE_KEYS with --write-key"
    )
    assert len(ingest_server.posted("/v1/batch")) == 1


def test_segment_failed_batch_reported(ingest_server):
    ingest_server.script("/v1/batch", 400, {"detail": "batch too large"})
    sender = SegmentSender(SendOptions(host=ingest_server.url, batch_size=10), WRITE_KEY)

    report = sender.send(_tracks(25))

    assert report.failed == 10
    assert report.accepted == 15
    assert not report.succeeded
    assert report.errors == ['HTTP 400: {"detail": "batch too large"}']


def test_segment_rejected_events_counted(ingest_server):
    messages = _tracks(25)
    messages[3]["event"] = "bad"
    messages[17]["event"] = "bad"
    sender = SegmentSender(SendOptions(host=ingest_server.url, batch_size=10), WRITE_KEY)

    report = sender.send(messages)

    assert report.accepted == 23
    assert report.rejected == 2
    assert report.errors == [
        "message 'm-3' rejected: event: name 'bad' is reserved",
        "message 'm-17' rejected: event: name 'bad' is reserved",
    ]


def test_segment_retries_server_error(ingest_server):
    ingest_server.script("/v1/batch", 503, {"detail": "busy"})
    messages = _tracks(30)
    sender = SegmentSender(SendOptions(host=ingest_server.url, batch_size=10), WRITE_KEY)

    report = sender.send(messages)

    bodies = ingest_server.posted("/v1/batch")
    assert len(bodies) == 4
    assert bodies[0] == bodies[1] | {"sentAt": bodies[0]["sentAt"]}
    assert report.accepted == 30
    assert report.failed == 0


def test_segment_rate_limit_keeps_order(ingest_server):
    ingest_server.script("/v1/batch", 429, {"detail": "slow down"}, Retry_After="1")
    messages = _tracks(30)
    sender = SegmentSender(SendOptions(host=ingest_server.url, batch_size=10), WRITE_KEY)

    report = sender.send(messages)

    accepted = [
        m["messageId"] for body in ingest_server.posted("/v1/batch")[1:] for m in body["batch"]
    ]
    assert accepted == [m["messageId"] for m in messages]
    assert report.accepted == 30


def test_segment_lost_connection(closed_url):
    sender = SegmentSender(SendOptions(host=closed_url, max_retries=0), WRITE_KEY)

    with pytest.raises(ApiUnreachableError) as raised:
        sender.send(_tracks(5))

    assert str(raised.value).startswith(f"lost the connection to the Herald API at {closed_url} (")


def test_segment_oversized_message_counted(ingest_server):
    big = {**_tracks(1)[0], "messageId": "big", "properties": {"blob": "x" * 40_000}}
    sender = SegmentSender(SendOptions(host=ingest_server.url), WRITE_KEY)

    report = sender.send([big, *_tracks(2)])

    assert report.failed == 1
    assert report.accepted == 2
    assert report.errors[0].startswith("message 'big' not sent: ")


# --------------------------------------------------------------------------- CleverTap


def test_clevertap_chunks_of_1000(ingest_server):
    records = _records(2500)
    progress: list[int] = []
    sender = CleverTapSender(SendOptions(host=ingest_server.url, batch_size=5000), ACCOUNT)

    report = sender.send(records, on_progress=progress.append)

    bodies = ingest_server.posted("/1/upload")
    assert [len(b["d"]) for b in bodies] == [1000, 1000, 500]
    assert [r for b in bodies for r in b["d"]] == records
    assert progress == [1000, 1000, 500]
    assert report.accepted == 2500
    assert report.succeeded


def test_clevertap_headers(ingest_server):
    sender = CleverTapSender(SendOptions(host=ingest_server.url), ACCOUNT)

    sender.send(_records(1))

    headers = ingest_server.requests[0].headers
    assert headers["X-CleverTap-Account-Id"] == ACCOUNT_ID
    assert headers["X-CleverTap-Passcode"] == PASSCODE
    assert headers["Content-Type"] == "application/json"


def test_clevertap_unprocessed_counted(ingest_server):
    records = _records(5)
    records[2]["evtName"] = "bad"
    sender = CleverTapSender(SendOptions(host=ingest_server.url), ACCOUNT)

    report = sender.send(records)

    assert report.accepted == 4
    assert report.rejected == 1
    assert report.errors == ["record not processed: evtName 'bad' is not allowed"]


def test_clevertap_whole_upload_failed(ingest_server):
    ingest_server.script("/1/upload", 200, {"status": "fail", "error": "Payload is malformed"})
    sender = CleverTapSender(SendOptions(host=ingest_server.url), ACCOUNT)

    report = sender.send(_records(3))

    assert report.rejected == 3
    assert report.accepted == 0
    assert report.errors == ["upload rejected: Payload is malformed"]


def test_clevertap_all_records_unprocessed(ingest_server):
    records = _records(2)
    for record in records:
        record["evtName"] = "bad"
    sender = CleverTapSender(SendOptions(host=ingest_server.url), ACCOUNT)

    report = sender.send(records)

    assert report.rejected == 2
    assert report.accepted == 0
    assert report.errors == ["record not processed: evtName 'bad' is not allowed"]


def test_clevertap_rejected_credentials(ingest_server):
    account = CleverTapAccount(account_id=ACCOUNT_ID, passcode=SecretStr("wrong"))
    sender = CleverTapSender(SendOptions(host=ingest_server.url), account)

    with pytest.raises(CredentialsRejectedError) as raised:
        sender.send(_records(3))

    assert str(raised.value) == (
        f"the API at {ingest_server.url} rejected CleverTap account 'TEST-ACCOUNT' (HTTP 401); "
        "pass an account of HERALD_INGEST__CLEVERTAP_ACCOUNTS with --account-id and --passcode"
    )


def test_clevertap_retries_unavailable(ingest_server):
    ingest_server.script("/1/upload", 503, {"detail": "busy"})
    sender = CleverTapSender(SendOptions(host=ingest_server.url), ACCOUNT)

    report = sender.send(_records(3))

    assert len(ingest_server.posted("/1/upload")) == 2
    assert report.accepted == 3


def test_clevertap_server_error_not_retried(ingest_server):
    ingest_server.script("/1/upload", 500, {"detail": "boom"})
    sender = CleverTapSender(SendOptions(host=ingest_server.url, batch_size=2), ACCOUNT)

    report = sender.send(_records(3))

    assert len(ingest_server.posted("/1/upload")) == 2
    assert report.failed == 2
    assert report.accepted == 1
    assert report.errors == ['HTTP 500: {"detail": "boom"}']


def test_clevertap_lost_connection(closed_url):
    sender = CleverTapSender(SendOptions(host=closed_url, max_retries=0), ACCOUNT)

    with pytest.raises(ApiUnreachableError) as raised:
        sender.send(_records(3))

    assert str(raised.value).startswith(f"lost the connection to the Herald API at {closed_url} (")
