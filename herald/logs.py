"""Logging set-up for Herald's entry points; library modules only call `getLogger`."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import orjson

__all__ = ["RepeatFilter", "configure_logging"]

# Attributes every record has, plus those formatters add and uvicorn's colour variant.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _TextFormatter(logging.Formatter):
    """Plain text that appends the `extra=` ids, so a log line names what it is about."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


class RepeatFilter(logging.Filter):
    """Pass a message at most once per `interval_s`, then report how many were dropped.

    While a broker is down, aiokafka logs the same connection error many times a second;
    one line per interval says as much and keeps the log readable.
    """

    def __init__(
        self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        dropped = last[1] if last is not None else 0
        self._last[key] = (now, 0)
        if dropped:
            record.msg = (
                f"{record.msg} (and {dropped} more like it in the last {self._interval_s:g} s)"
            )
        return True


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send Herald's logs to stderr as text lines or, with `fmt="json"`, JSON objects."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every coordinator step at INFO; keep its warnings only.
    kafka_logger = logging.getLogger("aiokafka")
    kafka_logger.setLevel(logging.WARNING)
    if not any(isinstance(f, RepeatFilter) for f in kafka_logger.filters):
        kafka_logger.addFilter(RepeatFilter())
