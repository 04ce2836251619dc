"""End to end: `herald api` and `herald worker` as subprocesses, timed from HTTP to Parquet."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson

from bench.events import Workload, request_bodies, synthetic_messages
from bench.measurement import BenchError, Measurement, progress_bar, timeout_s
from herald.config import KafkaSettings
from queries.catalog import connect

_WRITE_KEY = "herald-bench-write-key"
_LANDED_POLL_INTERVAL_S = 0.25
_PROCESS_START_TIMEOUT_S = 60.0
_PROCESS_STOP_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class _Stack:
    """The directory, URL and environment of the end-to-end run's API and worker."""

    root: Path
    url: str
    env: dict[str, str]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"


def _stack(kafka: KafkaSettings, root: Path, prefix: str) -> _Stack:
    api_port = _free_port()
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HERALD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "HERALD_KAFKA__EVENTS_TOPIC": kafka.events_topic,
        "HERALD_KAFKA__REJECTED_TOPIC": kafka.rejected_topic,
        "HERALD_KAFKA__CAMPAIGNS_TOPIC": kafka.campaigns_topic,
        "HERALD_KAFKA__PARTITIONS": str(kafka.partitions),
        # Faust names its internal topics after the app id, so they share the prefix too.
        "HERALD_WORKER_ID": f"{prefix}-worker",
        "HERALD_WORKER_WEB_PORT": str(_free_port()),
        "HERALD_STORE": "memory://",
        "HERALD_STATE_DIR": str(root / "state"),
        "HERALD_CONTROL_DB_URL": f"sqlite:///{root / 'control.db'}",
        "HERALD_LANDING__DATA_DIR": str(root / "data"),
        "HERALD_LANDING__GROUP_ID": f"{prefix}-landing",
        "HERALD_API__HOST": "127.0.0.1",
        "HERALD_API__PORT": str(api_port),
        "HERALD_INGEST__WRITE_KEYS": orjson.dumps([_WRITE_KEY]).decode(),
    }
    return _Stack(root=root, url=f"http://127.0.0.1:{api_port}", env=env)


@contextlib.contextmanager
def _herald_process(stack: _Stack, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run `herald ARGS` with the stack's settings; SIGTERM it (then SIGKILL) on exit."""
    log_path = stack.root / f"{args[0]}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "herald.cli", *args],
            cwd=stack.root,
            env=stack.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_PROCESS_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log_tail(stack: _Stack, name: str) -> str:
    path = stack.root / f"{name}.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _wait_for_api(stack: _Stack, api: subprocess.Popen[bytes]) -> None:
    deadline_s = time.monotonic() + _PROCESS_START_TIMEOUT_S
    while time.monotonic() < deadline_s:
        if api.poll() is not None:
            raise BenchError(f"herald api exited with {api.returncode}:\n{_log_tail(stack, 'api')}")
        try:
            response = httpx.get(f"{stack.url}/health", timeout=1, trust_env=False)
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise BenchError(f"herald api did not respond within {_PROCESS_START_TIMEOUT_S:.0f} s")


def landed_counts(data_dir: Path) -> tuple[int, int]:
    """Count landed events and distinct message ids; (-1, -1) while a file is unreadable."""
    try:
        with connect(data_dir) as connection:
            row = connection.execute(
                "SELECT count(*), count(DISTINCT message_id) FROM events"
            ).fetchone()
    except duckdb.IOException:
        return -1, -1
    assert row is not None
    return int(row[0]), int(row[1])


def _wait_until_landed(
    stack: _Stack, worker: subprocess.Popen[bytes], expected: int, name: str
) -> float:
    """Poll DuckDB until `expected` events have landed; return the time of that count."""
    deadline_s = time.perf_counter() + timeout_s(expected)
    with progress_bar(name, expected) as advance:
        while True:
            landed, _distinct = landed_counts(stack.data_dir)
            advance(max(landed, 0))
            if landed >= expected:
                return time.perf_counter()
            if worker.poll() is not None:
                raise BenchError(
                    f"herald worker exited with {worker.returncode}:\n{_log_tail(stack, 'worker')}"
                )
            if time.perf_counter() > deadline_s:
                raise BenchError(f"{name}: {landed} of {expected} events landed in time")
            time.sleep(_LANDED_POLL_INTERVAL_S)


async def post_batches(
    url: str, bodies: Sequence[bytes], events: int, clients: int, name: str
) -> int:
    """Post every body to `/v1/batch` from `clients` concurrent connections; return events."""
    pending = iter(bodies)
    accepted = 0

    async def run_client(advance: Any) -> None:
        nonlocal accepted
        # trust_env=False keeps proxy variables from routing loopback requests elsewhere.
        async with httpx.AsyncClient(
            base_url=url,
            trust_env=False,
            auth=(_WRITE_KEY, ""),
            headers={"content-type": "application/json"},
            timeout=60,
        ) as client:
            # Every client draws from one iterator, so each body is sent once.
            for body in pending:
                response = await client.post("/v1/batch", content=body)
                if response.status_code != 200:
                    raise BenchError(
                        f"POST /v1/batch returned {response.status_code}: {response.text[:500]}"
                    )
                accepted += orjson.loads(response.content)["accepted"]
                advance(accepted)

    with progress_bar(name, events) as advance:
        await asyncio.gather(*(run_client(advance) for _ in range(clients)))
    return accepted


def measure_end_to_end(
    kafka: KafkaSettings, workload: Workload, root: Path, prefix: str, worker_profiles: bool
) -> list[Measurement]:
    """Post the workload through `herald api` and time it until `herald worker` landed it."""
    stack = _stack(kafka, root, prefix)
    warm_up = request_bodies(
        synthetic_messages(
            Workload(workload.batch_size, workload.users, workload.batch_size, 1, workload.seed),
            offset=1,
        ),
        workload.batch_size,
    )
    bodies = request_bodies(synthetic_messages(workload), workload.batch_size)
    worker_args = ["worker", "--log-level", "warning"]
    if not worker_profiles:
        worker_args.append("--no-profiles")
    with (
        _herald_process(stack, "api", "--log-level", "warning") as api,
        _herald_process(stack, *worker_args) as worker,
    ):
        _wait_for_api(stack, api)
        warm_up_events = asyncio.run(
            post_batches(stack.url, warm_up, workload.batch_size, 1, "Warm-up batch")
        )
        _wait_until_landed(stack, worker, warm_up_events, "Warm-up landing")

        started_s = time.perf_counter()
        api_cpu_s, worker_cpu_s = _cpu_s(api.pid), _cpu_s(worker.pid)
        accepted = asyncio.run(
            post_batches(stack.url, bodies, workload.events, workload.clients, "HTTP posts")
        )
        accepted_s = time.perf_counter()
        api_cpu_s = _cpu_s(api.pid) - api_cpu_s
        landed_s = _wait_until_landed(stack, worker, warm_up_events + accepted, "Landing")
        worker_cpu_s = _cpu_s(worker.pid) - worker_cpu_s
    _check_landed_once(stack, warm_up_events + accepted)
    clients = f"{workload.clients} clients, batches of {workload.batch_size}; CPU of the API"
    return [
        Measurement(
            "HTTP accept (POST /v1/batch)",
            accepted,
            accepted_s - started_s,
            cpu_s=api_cpu_s,
            note=clients,
        ),
        Measurement(
            "End to end (HTTP to landed Parquet)",
            accepted,
            landed_s - started_s,
            cpu_s=api_cpu_s + worker_cpu_s,
            note=f"DuckDB polled every {_LANDED_POLL_INTERVAL_S:g} s; CPU of API and worker",
        ),
    ]


def _check_landed_once(stack: _Stack, expected: int) -> None:
    landed, distinct = landed_counts(stack.data_dir)
    if landed != distinct or landed != expected:
        raise BenchError(
            f"end to end: {landed} events landed with {distinct} distinct ids, "
            f"expected {expected} of each"
        )


def _cpu_s(pid: int) -> float:
    """Return the user and system CPU seconds a process has used, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name in parentheses may contain spaces; utime and stime are the 12th
    # and 13th fields after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
