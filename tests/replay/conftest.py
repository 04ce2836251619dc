"""A real HTTP server on loopback in place of Herald's ingest endpoints, and file factories."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

WRITE_KEY = "test-write-key"
ACCOUNT_ID = "TEST-ACCOUNT"
PASSCODE = "test-passcode"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ScriptedResponse:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class IngestServer:
    """Records every request and responds like Herald's `/health`, `/v1/batch` and `/1/upload`.

    `script(path, …)` queues responses that are returned, in order, before the default
    response for that path resumes.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, list[ScriptedResponse]] = {}
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def script(self, path: str, status: int, body: Any = None, **headers: str) -> None:
        with self._lock:
            self._scripts.setdefault(path, []).append(ScriptedResponse(status, body, headers))

    def posted(self, path: str) -> list[Any]:
        """Return the bodies of all POST requests to `path`, whatever the status, in order."""
        return [r.body for r in self.requests if r.method == "POST" and r.path == path]

    def respond(self, request: RecordedRequest) -> ScriptedResponse:
        with self._lock:
            self.requests.append(request)
            scripted = self._scripts.get(request.path)
            if scripted:
                return scripted.pop(0)
        return _default_response(request)


def _default_response(request: RecordedRequest) -> ScriptedResponse:
    if request.path == "/health":
        return ScriptedResponse(200, {"status": "ok"})
    if request.path == "/v1/batch":
        expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return ScriptedResponse(401, {"detail": "invalid write key"})
        return _batch_response(request)
    if request.path == "/1/upload":
        return _upload_response(request)
    return ScriptedResponse(404, {"detail": "not found"})


def _batch_response(request: RecordedRequest) -> ScriptedResponse:
    messages = request.body["batch"]
    # Tracks named "bad" stand for events that fail validation.
    rejected = [
        {
            "index": i,
            "field": "event",
            "reason": "name 'bad' is reserved",
            "message_id": m["messageId"],
        }
        for i, m in enumerate(messages)
        if m.get("event") == "bad"
    ]
    body = {
        "success": not rejected,
        "accepted": len(messages) - len(rejected),
        "rejected": rejected,
    }
    return ScriptedResponse(200, body)


def _upload_response(request: RecordedRequest) -> ScriptedResponse:
    headers = request.headers
    if (
        headers.get("X-CleverTap-Account-Id") != ACCOUNT_ID
        or headers.get("X-CleverTap-Passcode") != PASSCODE
    ):
        return ScriptedResponse(401, {"status": "fail", "error": "invalid credentials"})
    records = request.body["d"]
    # Records named "bad" stand for records that fail validation.
    unprocessed = [
        {"status": "fail", "error": "evtName 'bad' is not allowed", "record": record}
        for record in records
        if record.get("evtName") == "bad"
    ]
    processed = len(records) - len(unprocessed)
    body = {
        "status": "success" if not unprocessed else ("partial" if processed else "fail"),
        "processed": processed,
        "unprocessed": unprocessed,
    }
    return ScriptedResponse(200, body)


def _handler_for(server: IngestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._respond(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            self._respond(json.loads(self.rfile.read(length)))

        def _respond(self, body: Any) -> None:
            request = RecordedRequest(self.command, self.path, dict(self.headers), body)
            response = server.respond(request)
            payload = json.dumps(response.body).encode()
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def ingest_server() -> Iterator[IngestServer]:
    server = IngestServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def closed_url() -> str:
    """URL of a loopback port on which nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


ECOM_HEADER = (
    "user_id,session_id,event,timestamp,platform,acquisition_channel,user_cohort,user_lifecycle"
)


@pytest.fixture
def write_ecom_csv(tmp_path: Path) -> Callable[[list[str]], Path]:
    """Write data rows under the e-commerce header and return the file's path."""

    def write(rows: list[str], name: str = "events.csv", header: str = ECOM_HEADER) -> Path:
        path = tmp_path / name
        path.write_text("\n".join([header, *rows]) + "\n")
        return path

    return write


@pytest.fixture
def write_lines(tmp_path: Path) -> Callable[[list[Any]], Path]:
    """Write each item as one line (JSON-encoded unless it is a str) and return the path."""

    def write(lines: list[Any], name: str = "events.jsonl") -> Path:
        path = tmp_path / name
        text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
        path.write_text("\n".join(text) + "\n")
        return path

    return write
