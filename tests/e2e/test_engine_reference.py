"""The example campaigns on the reference dataset: the engine's sends, read from Kafka,
against what DuckDB predicts from the CSV alone."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tests.e2e.reference_sends import predicted_sends
from tests.support.engine import (
    bootstrap_admin,
    publish,
    publish_examples,
    read_sends,
    wait_for_live_campaigns,
)
from tests.support.stack import WRITE_KEY, HeraldStack

pytestmark = pytest.mark.kafka

DATASET = Path(__file__).resolve().parents[2] / "examples" / "data" / "ecom.csv.gz"
DATASET_ROWS = 31_106


def _replay(stack: HeraldStack) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "herald.cli", "replay", str(DATASET), "--format", "ecom-csv"]
    command += ["--host", stack.url, "--write-key", WRITE_KEY, "--flush"]
    return subprocess.Popen(
        command, cwd=stack.root, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _finish(replay: subprocess.Popen[bytes]) -> None:
    output, _ = replay.communicate(timeout=600)
    assert replay.returncode == 0, output.decode(errors="replace")[-3000:]


def _by_campaign(
    commands: list[dict[str, Any]], ids: dict[str, str]
) -> dict[str, list[tuple[str, datetime]]]:
    names = {campaign_id: name for name, campaign_id in ids.items()}
    sends: dict[str, list[tuple[str, datetime]]] = {name: [] for name in ids}
    for command in commands:
        sends[names[command["campaign_id"]]].append(
            (command["user_id"], datetime.fromisoformat(command["send_at"]))
        )
    return {name: sorted(items) for name, items in sends.items()}


def _start(herald_stack: Any) -> tuple[HeraldStack, dict[str, str], str]:
    stack = herald_stack(
        HERALD_ENGINE__IDLE_WATERMARK_S="3600", HERALD_ENGINE__SCHEDULER_INTERVAL_S="1"
    )
    stack.start_api()
    token = bootstrap_admin(stack)
    ids = publish_examples(stack, token)
    wait_for_live_campaigns(stack.kafka, list(ids.values()))
    stack.start_worker()
    return stack, ids, token


def _wait_for_landed_tracks(stack: HeraldStack, count: int, timeout_s: float = 120) -> None:
    sql = "SELECT count(*) FROM tracks WHERE event NOT LIKE 'Notification %'"
    deadline = time.monotonic() + timeout_s
    while stack.query(sql)[0][0] < count:
        assert time.monotonic() < deadline, "the replayed tracks did not all land"
        time.sleep(0.5)


def _capped_candidates() -> dict[str, int]:
    """Count, from the CSV, the triggers that a per-user cap stops, for the two campaigns
    whose caps are simple counts: every qualifying row after a user's first one (Welcome)
    or after the first of the user's UTC day (Payment problem)."""
    welcome, payment = duckdb.execute(
        "SELECT"
        " count(*) FILTER (event = 'home' AND user_lifecycle = 'new')"
        "  - count(DISTINCT user_id) FILTER (event = 'home' AND user_lifecycle = 'new'),"
        " count(*) FILTER (event = 'payment_error')"
        "  - count(DISTINCT (user_id, timestamp[:10])) FILTER (event = 'payment_error')"
        " FROM read_csv(?, header = true, all_varchar = true)",
        [str(DATASET)],
    ).fetchone() or (0, 0)
    return {"Welcome": welcome, "Payment problem": payment}


def _delivery_report(
    stack: HeraldStack, token: str, unchecked_reasons_of: str
) -> dict[tuple[str, str, str | None], int]:
    response = httpx.get(
        f"{stack.url}/reports/deliveries",
        params={"start": "2024-01-01", "end": "2024-12-31"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {
        (row["campaign_id"], row["outcome"], row["reason"]): row["messages"]
        for row in response.json()
        if row["outcome"] == "sent" or row["campaign_id"] != unchecked_reasons_of
    }


def _loyal_users() -> list[str]:
    """Users whose latest row in the CSV has `loyal`, by DuckDB alone."""
    rows = duckdb.execute(
        "SELECT user_id FROM ("
        " SELECT user_id, user_lifecycle, row_number() OVER () AS row"
        " FROM read_csv(?, header = true, all_varchar = true)) "
        "GROUP BY user_id HAVING arg_max(user_lifecycle, row) = 'loyal' ORDER BY user_id",
        [str(DATASET)],
    ).fetchall()
    return [row[0] for row in rows]


LOYAL_USERS_NOW = {
    "name": "Thank you",
    "channel": "push",
    "labels": ["Loyalty"],
    "who": {
        "type": "inline_segment",
        "definition": {"type": "trait", "trait": "user_lifecycle", "op": "eq", "value": "loyal"},
    },
    "what": {
        "variants": [
            {
                "name": "A",
                "weight": 100,
                "message": {"channel": "push", "title": "Thank you", "body": "A gift for you"},
            }
        ]
    },
    "when": {"type": "now"},
}


def test_sends_equal_the_duckdb_prediction(herald_stack) -> None:  # type: ignore[no-untyped-def]
    expected = predicted_sends(DATASET)
    stack, ids, token = _start(herald_stack)
    _finish(_replay(stack))

    commands = read_sends(stack.kafka, sum(len(sends) for sends in expected.values()))
    loyal = _loyal_users()
    _wait_for_landed_tracks(stack, DATASET_ROWS)

    got = _by_campaign(commands, ids)
    for name, sends in expected.items():
        assert got[name] == sends, f"{name}: {len(got[name])} sent, {len(sends)} predicted"
    channels = {command["campaign_id"]: command["channel"] for command in commands}
    assert channels == {
        ids["Abandoned cart"]: "push",
        ids["Payment problem"]: "sms",
        ids["Welcome"]: "email",
    }
    # The decisions land as events; the report counts sends and each reason not to send.
    capped = _capped_candidates()
    expected_report = {(ids[name], "sent", None): len(sends) for name, sends in expected.items()}
    expected_report[(ids["Welcome"], "not_sent", "campaign_cap")] = capped["Welcome"]
    expected_report[(ids["Payment problem"], "not_sent", "campaign_cap")] = capped[
        "Payment problem"
    ]
    deadline = time.monotonic() + 60
    # How many cart windows the 24-hour cap stops depends on the greedy order, which the
    # sends above already check.
    while (report := _delivery_report(stack, token, ids["Abandoned cart"])) != expected_report:
        assert time.monotonic() < deadline, report
        time.sleep(0.5)

    # A one-time campaign run by the scheduler over the landed data.
    run_campaign = publish(stack, token, LOYAL_USERS_NOW)
    commands = read_sends(stack.kafka, len(commands) + len(loyal))
    run_sends = [c for c in commands if c["campaign_id"] == run_campaign]
    assert sorted(c["user_id"] for c in run_sends) == loyal
    assert len({c["run_id"] for c in run_sends}) == 1


def test_worker_killed_mid_replay_issues_no_send_twice(herald_stack) -> None:  # type: ignore[no-untyped-def]
    expected = predicted_sends(DATASET)
    stack, ids, _token = _start(herald_stack)
    replay = _replay(stack)
    # Killed once sends are committed, so the restarted engine must find them in its ledger.
    assert len(read_sends(stack.kafka, 50, timeout_s=120, settle_s=0)) >= 50
    stack.kill_worker()
    assert replay.poll() is None, "the replay should still be running"
    stack.start_worker()
    _finish(replay)

    commands = read_sends(stack.kafka, sum(len(sends) for sends in expected.values()))

    repeated = [sid for sid, count in Counter(c["send_id"] for c in commands).items() if count > 1]
    assert repeated == []
    got = _by_campaign(commands, ids)
    for name, sends in expected.items():
        assert got[name] == sends, f"{name}: {len(got[name])} sent, {len(sends)} predicted"
