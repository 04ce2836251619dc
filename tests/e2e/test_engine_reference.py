"""The example campaigns on the reference dataset: the engine's sends, read from Kafka,
against what DuckDB predicts from the CSV alone."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.reference_sends import predicted_sends
from tests.support.engine import (
    bootstrap_admin,
    publish_examples,
    read_sends,
    wait_for_live_campaigns,
)
from tests.support.stack import WRITE_KEY, HeraldStack

pytestmark = pytest.mark.kafka

DATASET = Path(__file__).resolve().parents[2] / "examples" / "data" / "ecom.csv.gz"


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


def _start(herald_stack: Any) -> tuple[HeraldStack, dict[str, str]]:
    stack = herald_stack(HERALD_ENGINE__IDLE_WATERMARK_S="3600")
    stack.start_api()
    ids = publish_examples(stack, bootstrap_admin(stack))
    wait_for_live_campaigns(stack.kafka, list(ids.values()))
    stack.start_worker()
    return stack, ids


def test_sends_equal_the_duckdb_prediction(herald_stack) -> None:  # type: ignore[no-untyped-def]
    expected = predicted_sends(DATASET)
    stack, ids = _start(herald_stack)
    _finish(_replay(stack))

    commands = read_sends(stack.kafka, sum(len(sends) for sends in expected.values()))

    got = _by_campaign(commands, ids)
    for name, sends in expected.items():
        assert got[name] == sends, f"{name}: {len(got[name])} sent, {len(sends)} predicted"
    channels = {command["campaign_id"]: command["channel"] for command in commands}
    assert channels == {
        ids["Abandoned cart"]: "push",
        ids["Payment problem"]: "sms",
        ids["Welcome"]: "email",
    }
    landed = dict(
        stack.query(
            "SELECT campaign_id, count(*) FROM events WHERE event = 'Notification Sent' "
            "GROUP BY campaign_id"
        )
    )
    assert landed == {ids[name]: len(sends) for name, sends in expected.items()}


def test_worker_killed_mid_replay_issues_no_send_twice(herald_stack) -> None:  # type: ignore[no-untyped-def]
    expected = predicted_sends(DATASET)
    stack, ids = _start(herald_stack)
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
