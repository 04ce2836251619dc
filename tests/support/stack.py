"""A real Herald deployment for tests: `herald worker` and `herald api` as subprocesses.

Each stack has its own topics, consumer groups, ports and data directory, so tests can run
against one shared broker without seeing each other's records.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import httpx

from herald.config import KafkaSettings
from queries.catalog import connect

__all__ = ["HeraldStack", "free_port"]

WRITE_KEY = "herald-test-write-key"
CLEVERTAP_ACCOUNT = "HERALD-TEST"
CLEVERTAP_PASSCODE = "herald-test-passcode"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class HeraldStack:
    """Starts, kills and inspects the worker and API processes of one test."""

    def __init__(self, kafka: KafkaSettings, root: Path, **overrides: str) -> None:
        self.kafka = kafka
        self.root = root
        self.data_dir = root / "data"
        self.api_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        name = f"test-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "HERALD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "HERALD_KAFKA__EVENTS_TOPIC": kafka.events_topic,
            "HERALD_KAFKA__REJECTED_TOPIC": kafka.rejected_topic,
            "HERALD_KAFKA__CAMPAIGNS_TOPIC": kafka.campaigns_topic,
            "HERALD_KAFKA__PARTITIONS": str(kafka.partitions),
            "HERALD_KAFKA__SENDS_TOPIC_PREFIX": kafka.sends_topic_prefix,
            "HERALD_KAFKA__ENGINE_STATE_TOPIC": kafka.engine_state_topic,
            "HERALD_KAFKA__ENGINE_RUNS_TOPIC": kafka.engine_runs_topic,
            "HERALD_ENGINE__GROUP_ID": f"{name}-engine",
            "HERALD_ENGINE__TRANSACTIONAL_ID": f"{name}-engine-0",
            "HERALD_WORKER_ID": f"{name}-worker",
            "HERALD_WORKER_WEB_PORT": str(free_port()),
            "HERALD_STORE": "memory://",
            "HERALD_STATE_DIR": str(root / "state"),
            "HERALD_LANDING__DATA_DIR": str(self.data_dir),
            "HERALD_LANDING__GROUP_ID": f"{name}-landing",
            "HERALD_LANDING__FLUSH_INTERVAL_S": "0.5",
            "HERALD_LANDING__PROFILE_SNAPSHOT_INTERVAL_S": "0.5",
            "HERALD_API__PORT": str(self.api_port),
            # A database of the stack's own, whatever the caller's environment names.
            "HERALD_CONTROL_DB_URL": f"sqlite:///{root / 'control.db'}",
            "HERALD_INGEST__WRITE_KEYS": f'["{WRITE_KEY}"]',
            "HERALD_INGEST__CLEVERTAP_ACCOUNTS": (
                f'[{{"account_id": "{CLEVERTAP_ACCOUNT}", "passcode": "{CLEVERTAP_PASSCODE}"}}]'
            ),
            **overrides,
        }
        self.worker: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None

    def _spawn(self, *args: str, log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.root / log_name, "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [sys.executable, "-m", "herald.cli", *args],
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_worker(self) -> None:
        self.worker = self._spawn("worker", log_name="worker.log")

    def start_api(self) -> None:
        self.api = self._spawn("api", log_name="api.log")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"API did not answer within 30 s; log:\n{self.log('api.log')}")

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(timeout=10)

    def stop(self) -> None:
        for process in (self.api, self.worker):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def query(self, sql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL over the landed data, retrying when a restarting worker removed a file
        between the listing and the read."""
        for attempt in range(5):
            try:
                with connect(self.data_dir) as connection:
                    return connection.execute(sql, parameters).fetchall()
            except duckdb.IOException:
                if attempt == 4:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def wait_for_events(self, count: int, timeout_s: float = 120) -> int:
        """Wait until `count` events have landed; return the count seen last."""
        deadline = time.monotonic() + timeout_s
        landed = -1
        while time.monotonic() < deadline:
            landed = self.query("SELECT count(*) FROM events")[0][0]
            if landed >= count:
                return landed
            time.sleep(0.5)
        return landed

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("auth", (WRITE_KEY, ""))
        kwargs.setdefault("timeout", 30)
        if body is not None:
            kwargs["json"] = body
        return httpx.post(f"{self.url}{path}", **kwargs)
