from __future__ import annotations

import json
import os
import re

import pytest
import typer
from typer.testing import CliRunner

from herald.commands.replay import replay
from herald.config import ApiSettings
from herald.urls import default_host

from .conftest import ACCOUNT_ID, PASSCODE, WRITE_KEY

app = typer.Typer()
app.command()(replay)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """Run each command outside the repository, so no `.env` or HERALD_ variable leaks in."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("HERALD_")]:
        monkeypatch.delenv(name)


def _run(path, file_format: str, host: str, *options: str):
    arguments = [str(path), "--format", file_format, "--host", host, *options]
    return CliRunner().invoke(app, arguments)


def _last_line(text: str) -> str:
    return text.splitlines()[-1]


def _usage_error(text: str) -> str:
    """The text of a usage error, without the box that rich draws around it."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _tracks(count: int) -> list[dict]:
    return [
        {"type": "track", "userId": "u1", "event": "Viewed", "messageId": f"m-{i}"}
        for i in range(count)
    ]


def test_replay_segment_jsonl(ingest_server, write_lines):
    path = write_lines(_tracks(12))

    result = _run(
        path,
        "segment-jsonl",
        ingest_server.url,
        "--write-key",
        WRITE_KEY,
        "--batch-size",
        "5",
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        f"replayed 12 messages from events.jsonl to {ingest_server.url}"
    )
    assert "  accepted: 12\n  rejected: 0\n  failed:   0\n" in result.stdout
    assert [len(b["batch"]) for b in ingest_server.posted("/v1/batch")] == [5, 5, 2]


def test_replay_limit(ingest_server, write_lines):
    path = write_lines(_tracks(12))

    result = _run(
        path,
        "segment-jsonl",
        ingest_server.url,
        "--write-key",
        WRITE_KEY,
        "--limit",
        "3",
    )

    assert result.exit_code == 0, result.output
    assert [m["messageId"] for m in ingest_server.posted("/v1/batch")[0]["batch"]] == [
        "m-0",
        "m-1",
        "m-2",
    ]


def test_replay_ecom_csv(ingest_server, write_ecom_csv):
    path = write_ecom_csv(["u1,s1,home,2024-01-01 10:00:00,web,email,2024-01,new"])

    result = _run(path, "ecom-csv", ingest_server.url, "--write-key", WRITE_KEY)

    assert result.exit_code == 0, result.output
    assert "  accepted: 2\n" in result.stdout


def test_replay_clevertap_json(ingest_server, tmp_path):
    path = tmp_path / "upload.json"
    records = [{"identity": "u1", "ts": 1_700_000_000, "type": "event", "evtName": "Viewed"}]
    path.write_text(json.dumps({"d": records}))

    result = _run(
        path,
        "clevertap-json",
        ingest_server.url,
        "--account-id",
        ACCOUNT_ID,
        "--passcode",
        PASSCODE,
    )

    assert result.exit_code == 0, result.output
    assert ingest_server.posted("/1/upload") == [{"d": records}]


def test_replay_api_unreachable(closed_url, write_lines):
    path = write_lines(_tracks(1))

    result = _run(path, "segment-jsonl", closed_url)

    assert result.exit_code == 1
    assert _last_line(result.stderr).startswith(
        f"error: cannot reach the Herald API at {closed_url} ("
    )


def test_replay_rejected_write_key(ingest_server, write_lines):
    path = write_lines(_tracks(3))

    result = _run(path, "segment-jsonl", ingest_server.url)

    assert result.exit_code == 1
    assert _last_line(result.stderr) == (
        f"error: the API at {ingest_server.url} rejected the write key (HTTP 401); "
        "pass one of HERALD_INGEST__WRITE_KEYS with --write-key"
    )


def test_replay_failed_batch_exits_1(ingest_server, write_lines):
    ingest_server.script("/v1/batch", 400, {"detail": "invalid batch"})
    path = write_lines(_tracks(3))

    result = _run(path, "segment-jsonl", ingest_server.url, "--write-key", WRITE_KEY)

    assert result.exit_code == 1
    assert "  failed:   3\n" in result.stdout
    assert '  error: HTTP 400: {"detail": "invalid batch"}\n' in result.stdout


def test_replay_invalid_file(ingest_server, write_lines):
    path = write_lines(["{broken"])

    result = _run(path, "segment-jsonl", ingest_server.url, "--write-key", WRITE_KEY)

    assert result.exit_code == 1
    assert _last_line(result.stderr).startswith(f"error: {path}, line 1: invalid JSON")


def test_replay_host_without_scheme(write_lines):
    path = write_lines(_tracks(1))

    result = _run(path, "segment-jsonl", "127.0.0.1:8080")

    assert result.exit_code == 2
    assert "host '127.0.0.1:8080' is not an http:// or https:// URL" in _usage_error(result.stderr)


def test_replay_unknown_clevertap_account(ingest_server, tmp_path):
    path = tmp_path / "upload.json"
    path.write_text(json.dumps({"d": []}))

    result = _run(path, "clevertap-json", ingest_server.url, "--account-id", "OTHER")

    assert result.exit_code == 2
    assert (
        "account 'OTHER' is not in HERALD_INGEST__CLEVERTAP_ACCOUNTS; pass its --passcode"
        in _usage_error(result.stderr)
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("::", "http://127.0.0.1:8080"),
        ("::1", "http://[::1]:8080"),
        ("[::1]", "http://[::1]:8080"),
    ],
)
def test_default_host(host, expected):
    assert default_host(ApiSettings(host=host)) == expected


def test_replay_stops_when_key_revoked(ingest_server, write_lines):
    path = write_lines(_tracks(30))
    ingest_server.script("/v1/batch", 200, {"success": True})
    ingest_server.script("/v1/batch", 401, {"detail": "key revoked"})

    result = _run(
        path,
        "segment-jsonl",
        ingest_server.url,
        "--write-key",
        WRITE_KEY,
        "--batch-size",
        "10",
    )

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-2:] == [
        (
            f"error: the API at {ingest_server.url} rejected the write key (HTTP 401); "
            "pass one of HERALD_INGEST__WRITE_KEYS with --write-key"
        ),
        "stopped after 10 messages",
    ]
