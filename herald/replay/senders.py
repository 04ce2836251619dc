"""Senders that deliver a replay's messages to Herald's HTTP API.

Each sender takes messages in send order, sends them in batches, one batch in flight at a
time, and returns a `SendReport`. Failures of single batches are counted and the replay
goes on. A rejected credential or an unreachable API stops it with a `ReplayError`.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import httpx
import requests
from segment.analytics import Client  # type: ignore[import-untyped]
from segment.analytics import request as segment_request
from segment.analytics.request import APIError  # type: ignore[import-untyped]

from herald.config import CleverTapAccount
from herald.replay.errors import ApiUnreachableError, CredentialsRejectedError
from herald.replay.readers import Message

__all__ = [
    "MAX_UPLOAD_RECORDS",
    "CleverTapSender",
    "ProgressCallback",
    "ReplaySender",
    "SegmentSender",
    "SendOptions",
    "SendReport",
    "check_api",
]

logger = logging.getLogger(__name__)

MAX_UPLOAD_RECORDS = 1000
"""CleverTap's upload API takes at most this many records per call."""

ProgressCallback = Callable[[int], None]
"""Called after each batch with the number of messages it contained, sent or not."""

_MAX_ERRORS_KEPT = 10
_REJECTED_STATUSES = frozenset({401, 403})
# Statuses that mean the server did not process the request, so a retry stores nothing twice.
_RETRY_STATUSES = frozenset({429, 503})
_RETRY_BASE_DELAY_S = 0.5
_RETRY_MAX_DELAY_S = 10.0
# How long the Segment client's consumer waits for more messages before it sends a partial
# batch. The sender queues whole batches, so a longer wait only delays the last batch and
# the consumer's stop.
_UPLOAD_INTERVAL_S = 0.05


@dataclass(frozen=True)
class SendOptions:
    """Target and limits of a sender.

    Attributes:
        host: Base URL of the Herald API, for example `http://127.0.0.1:8080`.
        batch_size: Messages per request; CleverTap uploads are capped at 1,000.
        timeout_s: Time limit of one HTTP request.
        max_retries: Further attempts for a batch after a transient failure.
    """

    host: str
    batch_size: int = 100
    timeout_s: float = 15.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if not self.host.startswith(("http://", "https://")):
            raise ValueError(f"host {self.host!r} is not an http:// or https:// URL")
        if self.batch_size < 1:
            raise ValueError(f"batch_size {self.batch_size} is not positive")
        if self.max_retries < 0:
            raise ValueError(f"max_retries {self.max_retries} is negative")


@dataclass
class SendReport:
    """Outcome of one replay, counted per message.

    Attributes:
        accepted: Messages the API accepted.
        rejected: Messages the API received but did not store, because they were invalid.
        failed: Messages whose request failed, so the API did not confirm them.
        errors: Up to ten distinct error texts, in the order they first occurred.
        elapsed_s: Wall-clock time of the replay.
    """

    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def total(self) -> int:
        """Messages the replay handled."""
        return self.accepted + self.rejected + self.failed

    @property
    def succeeded(self) -> bool:
        """Whether the API accepted every message."""
        return self.rejected == 0 and self.failed == 0

    def add_error(self, text: str) -> None:
        """Keep `text` unless it is already kept or ten errors are kept."""
        if text not in self.errors and len(self.errors) < _MAX_ERRORS_KEPT:
            self.errors.append(text)


class ReplaySender(ABC):
    """Sends messages to Herald in the order given and reports what became of them."""

    @abstractmethod
    def send(
        self, messages: Iterable[Message], on_progress: ProgressCallback | None = None
    ) -> SendReport:
        """Send `messages` in order and return the report.

        Raises:
            CredentialsRejectedError: the API rejected the credentials; nothing more is sent.
            ApiUnreachableError: the API stopped accepting connections; nothing more is sent.
        """


def check_api(host: str, timeout_s: float = 5.0) -> None:
    """Check that the Herald API at `host` responds to `GET /health` with 200.

    Raises:
        ApiUnreachableError: the connection failed or timed out, or the status was not 200.
    """
    url = f"{host.rstrip('/')}/health"
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.TransportError as error:
        raise ApiUnreachableError(
            f"cannot reach the Herald API at {host} ({error or type(error).__name__}); "
            "start it with `herald api`, or pass its address with --host"
        ) from error
    if response.status_code != 200:
        raise ApiUnreachableError(
            f"GET {url} returned HTTP {response.status_code}, expected 200; "
            "check that --host points at a running Herald API"
        )


# ----------------------------------------------------------------------------- Segment


class SegmentSender(ReplaySender):
    """Sends Segment-spec messages to `POST {host}/v1/batch` through the official Segment client.

    The client (segment-analytics-python 2.4) authenticates with HTTP Basic, the write key
    being the user name. It keeps `messageId` as given and re-serialises `timestamp` with
    millisecond precision, so a finer timestamp loses its sub-millisecond part.

    Ordering: the sender queues one batch and waits until it is sent before queueing the
    next, and the client has one consumer thread, so batches reach the API in input order.

    Delivery: at least once per message that the report counts as accepted. The client
    retries a batch after a network error or a 5xx, so a batch whose response was lost may
    arrive twice, and Herald's dedup on `messageId` is what makes it count once. Events
    that a 2xx response lists under `rejected` are counted as rejected.
    """

    def __init__(self, options: SendOptions, write_key: str) -> None:
        self._options = options
        self._write_key = write_key

    def send(
        self, messages: Iterable[Message], on_progress: ProgressCallback | None = None
    ) -> SendReport:
        """Send `messages` in order as Segment batches; see `ReplaySender.send`."""
        started = time.monotonic()
        results = _BatchResults()
        client = self._client(results)
        report = SendReport()
        logger.info("replay to %s/v1/batch started", self._options.host)
        try:
            with results.listening():
                for chunk in _chunks(messages, self._options.batch_size):
                    self._send_chunk(client, chunk, results, report)
                    if on_progress:
                        on_progress(len(chunk))
        finally:
            client.join()
            report.elapsed_s = time.monotonic() - started
        logger.info("replay to %s/v1/batch finished: %s", self._options.host, report)
        return report

    def _client(self, results: _BatchResults) -> Client:
        # One consumer thread is what keeps batches in order; the host is always passed,
        # because the client's own default is Segment's public endpoint.
        return Client(
            write_key=self._write_key,
            host=self._options.host,
            on_error=results.record_error,
            thread=1,
            upload_size=self._options.batch_size,
            upload_interval=_UPLOAD_INTERVAL_S,
            timeout=self._options.timeout_s,
            max_retries=self._options.max_retries,
        )

    def _send_chunk(
        self,
        client: Client,
        chunk: list[Message],
        results: _BatchResults,
        report: SendReport,
    ) -> None:
        queued = sum(_enqueue(client, message, report) for message in chunk)
        # Waiting here keeps at most one batch in the client's queue: the client puts a
        # rate-limited batch back at the end of its queue, which with more queued would
        # send later batches first.
        # NOTE: the client may still split a chunk (above 475 KB, or when queueing outlasts
        # its upload interval). If the first part is then rate-limited, it is sent after
        # the rest of the chunk.
        client.flush()
        failures, rejections = results.take()
        failed = sum(size for _, size in failures)
        report.accepted += queued - failed - len(rejections)
        report.failed += failed
        report.rejected += len(rejections)
        for error, _ in failures:
            report.add_error(_describe_segment_error(error))
        for rejection in rejections:
            report.add_error(rejection)
        self._raise_if_fatal([error for error, _ in failures])
        for error, size in failures:
            logger.warning("batch of %s messages failed: %s", size, error)

    def _raise_if_fatal(self, errors: list[Exception]) -> None:
        for error in errors:
            if isinstance(error, APIError) and error.status in _REJECTED_STATUSES:
                raise CredentialsRejectedError(
                    f"the API at {self._options.host} rejected the write key "
                    f"(HTTP {error.status}); pass one of HERALD_INGEST__WRITE_KEYS "
                    "with --write-key"
                )
            if isinstance(error, requests.ConnectionError):
                raise ApiUnreachableError(
                    f"lost the connection to the Herald API at {self._options.host} "
                    f"({error}); check that it is still running"
                )


class _BatchResults:
    """Collects what the client's consumer thread learns about each batch it posts.

    Failed batches arrive through the client's `on_error` hook. The client discards the
    body of a 2xx response, so the events that Herald lists there as rejected are read with
    a response hook on the `requests` session that the client posts with.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[tuple[Exception, int]] = []
        self._rejections: list[str] = []

    def record_error(self, error: Exception, batch: list[Message]) -> None:
        """Store `error` with the size of the batch it lost; the client's `on_error` hook."""
        with self._lock:
            self._failures.append((error, len(batch)))

    def record_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Store the rejected events that a 2xx `/v1/batch` response lists."""
        if not response.ok or not response.url.endswith("/v1/batch"):
            return
        try:
            body = response.json()
        except ValueError:
            return
        rejected = body.get("rejected") if isinstance(body, dict) else None
        if isinstance(rejected, list):
            with self._lock:
                self._rejections.extend(_describe_rejection(item) for item in rejected)

    @contextmanager
    def listening(self) -> Iterator[None]:
        """Install `record_response` on the client's session for the duration of the block."""
        # NOTE: `_session` is private to segment-analytics-python (checked with 2.4.0). If a
        # release drops it, events rejected inside a 2xx response are counted as accepted.
        session = getattr(segment_request, "_session", None)
        if not isinstance(session, requests.Session):
            logger.warning(
                "cannot read /v1/batch response bodies; rejected events count as accepted"
            )
            yield
            return
        session.hooks["response"].append(self.record_response)
        try:
            yield
        finally:
            session.hooks["response"].remove(self.record_response)

    def take(self) -> tuple[list[tuple[Exception, int]], list[str]]:
        """Return the failures and rejections recorded so far and forget them."""
        with self._lock:
            failures, self._failures = self._failures, []
            rejections, self._rejections = self._rejections, []
        return failures, rejections


def _describe_rejection(item: Any) -> str:
    if not isinstance(item, dict):
        return f"event rejected: {str(item)[:200]}"
    where = f"message {item.get('message_id')!r}" if item.get("message_id") else "event"
    field_name = f"{item['field']}: " if item.get("field") else ""
    return f"{where} rejected: {field_name}{str(item.get('reason'))[:200]}"


# Arguments of the client's method for each message type. The client has no parameter for
# other Segment fields (sentAt, originalTimestamp, version, channel), so those are dropped.
_SEGMENT_FIELDS: dict[str, tuple[str, ...]] = {
    "track": ("userId", "anonymousId", "event", "properties"),
    "identify": ("userId", "anonymousId", "traits"),
    "page": ("userId", "anonymousId", "name", "category", "properties"),
    "screen": ("userId", "anonymousId", "name", "category", "properties"),
    "group": ("userId", "anonymousId", "groupId", "traits"),
    "alias": ("userId", "previousId"),
}
_ARGUMENT_NAMES = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "groupId": "group_id",
    "previousId": "previous_id",
}


def _enqueue(client: Client, message: Message, report: SendReport) -> bool:
    """Queue `message` on the client; return False and count it as failed if the client refuses."""
    kind = message["type"]
    arguments = {
        _ARGUMENT_NAMES.get(name, name): message[name]
        for name in _SEGMENT_FIELDS[kind]
        if name in message
    }
    # The client adds its library name to `context` in place, so it gets a copy.
    arguments["context"] = dict(message.get("context") or {})
    arguments["integrations"] = message.get("integrations")
    arguments["timestamp"] = _parse_timestamp(message.get("timestamp"))
    arguments["message_id"] = message.get("messageId")
    try:
        queued, _ = getattr(client, kind)(**arguments)
    except (AssertionError, RuntimeError) as error:
        # The client checks field types with assert and raises RuntimeError above 32 KB.
        report.failed += 1
        report.add_error(f"message {message.get('messageId')!r} not sent: {error}")
        return False
    if not queued:
        report.failed += 1
        report.add_error(f"message {message.get('messageId')!r} not sent: client queue full")
    return bool(queued)


def _parse_timestamp(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    # The client reads a naive time close to now as local time; Segment times are UTC.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _describe_segment_error(error: Exception) -> str:
    if isinstance(error, APIError):
        return f"HTTP {error.status}: {str(error.message)[:200]}"
    return f"{type(error).__name__}: {error}"


# --------------------------------------------------------------------------- CleverTap


class CleverTapSender(ReplaySender):
    """Sends CleverTap upload records to `POST {host}/1/upload` in chunks of at most 1,000.

    Each chunk carries the account's `X-CleverTap-Account-Id` and `X-CleverTap-Passcode`
    headers, and the response's `processed` and `unprocessed` fields are counted per record.

    Delivery: at most once per record. A chunk is retried only when the server did not
    take it (connection refused, HTTP 429 or 503). After a timeout or any other error the
    chunk is counted as failed and not retried, because the server may have stored it.
    """

    def __init__(self, options: SendOptions, account: CleverTapAccount) -> None:
        self._options = options
        self._account = account

    def send(
        self, messages: Iterable[Message], on_progress: ProgressCallback | None = None
    ) -> SendReport:
        """Upload `messages` in order, in chunks; see `ReplaySender.send`."""
        started = time.monotonic()
        report = SendReport()
        chunk_size = min(self._options.batch_size, MAX_UPLOAD_RECORDS)
        logger.info("replay to %s/1/upload started", self._options.host)
        with self._http() as http:
            for chunk in _chunks(messages, chunk_size):
                self._upload(http, chunk, report)
                if on_progress:
                    on_progress(len(chunk))
        report.elapsed_s = time.monotonic() - started
        logger.info("replay to %s/1/upload finished: %s", self._options.host, report)
        return report

    def _http(self) -> httpx.Client:
        headers = {
            "X-CleverTap-Account-Id": self._account.account_id,
            "X-CleverTap-Passcode": self._account.passcode.get_secret_value(),
        }
        return httpx.Client(
            base_url=self._options.host, headers=headers, timeout=self._options.timeout_s
        )

    def _upload(self, http: httpx.Client, chunk: list[Message], report: SendReport) -> None:
        try:
            response = self._post_with_retries(http, chunk)
        except httpx.TransportError as error:
            report.failed += len(chunk)
            report.add_error(f"{type(error).__name__}: {error}")
            logger.warning("upload of %s records failed: %r", len(chunk), error)
            return
        if response.status_code in _REJECTED_STATUSES:
            raise CredentialsRejectedError(
                f"the API at {self._options.host} rejected CleverTap account "
                f"{self._account.account_id!r} (HTTP {response.status_code}); pass an account "
                "of HERALD_INGEST__CLEVERTAP_ACCOUNTS with --account-id and --passcode"
            )
        if response.is_success:
            _count_upload_response(response, len(chunk), report)
        else:
            report.failed += len(chunk)
            report.add_error(f"HTTP {response.status_code}: {response.text[:200]}")
            logger.warning("upload of %s records failed: HTTP %s", len(chunk), response.status_code)

    def _post_with_retries(self, http: httpx.Client, chunk: list[Message]) -> httpx.Response:
        attempt = 0
        while True:
            last = attempt == self._options.max_retries
            try:
                response = http.post("/1/upload", json={"d": chunk})
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                if last:
                    raise ApiUnreachableError(
                        f"lost the connection to the Herald API at {self._options.host} "
                        f"({error}); check that it is still running"
                    ) from error
            else:
                if last or response.status_code not in _RETRY_STATUSES:
                    return response
            time.sleep(min(_RETRY_BASE_DELAY_S * 2**attempt, _RETRY_MAX_DELAY_S))
            attempt += 1


def _count_upload_response(response: httpx.Response, size: int, report: SendReport) -> None:
    """Add a 2xx upload response's processed and unprocessed records to `report`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        report.accepted += size
        return
    processed = body.get("processed")
    if body.get("status") == "fail" and not isinstance(processed, int):
        # CleverTap's response when it rejects the whole request, for example a malformed body.
        report.rejected += size
        report.add_error(f"upload rejected: {str(body.get('error') or body)[:200]}")
        return
    unprocessed = body.get("unprocessed") or []
    for item in unprocessed:
        report.add_error(f"record not processed: {_unprocessed_reason(item)}")
    if not isinstance(processed, int):
        processed = size - len(unprocessed)
    report.accepted += processed
    report.rejected += size - processed


def _unprocessed_reason(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("error") or item.get("reason") or item)[:200]
    return str(item)[:200]


# ----------------------------------------------------------------------------- helpers


def _chunks(messages: Iterable[Message], size: int) -> Iterator[list[Message]]:
    iterator = iter(messages)
    while chunk := list(islice(iterator, size)):
        yield chunk
