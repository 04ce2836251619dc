"""Readers that turn a file of events into the messages a replay sends, in send order.

Readers never touch the network. `ecom-csv` and `segment-jsonl` files become Segment-spec
messages (`type`, `userId`, `messageId`, ISO-8601 `timestamp`, …); `clevertap-json` files
become CleverTap upload records. Files whose name ends in `.gz` are read through gzip.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import orjson
import polars as pl

from herald.replay.errors import ReplayFileError

__all__ = [
    "ECOM_TRAITS",
    "SEGMENT_TYPES",
    "Message",
    "MessageIterator",
    "ReplayFormat",
    "contact_traits",
    "read_clevertap_records",
    "read_ecom_csv",
    "read_events",
    "read_segment_jsonl",
]

Message = dict[str, Any]
"""One Segment-spec message or one CleverTap upload record, as decoded JSON."""


class MessageIterator(Iterator[Message]):
    """Messages in send order, with their count when the reader knows it before sending.

    Attributes:
        total: Number of messages the iterator yields in all, or None when unknown.
    """

    def __init__(self, messages: Iterator[Message], total: int | None = None) -> None:
        self._messages = messages
        self.total = total

    def __next__(self) -> Message:
        return next(self._messages)


class ReplayFormat(StrEnum):
    """File formats that `herald replay` reads."""

    ECOM_CSV = "ecom-csv"
    SEGMENT_JSONL = "segment-jsonl"
    CLEVERTAP_JSON = "clevertap-json"


ECOM_TRAITS = ("platform", "acquisition_channel", "user_cohort", "user_lifecycle")
"""Columns of the e-commerce CSV that describe the user's state at that row."""

SEGMENT_TYPES = frozenset({"alias", "group", "identify", "page", "screen", "track"})

_ECOM_COLUMNS = ("user_id", "session_id", "event", "timestamp", *ECOM_TRAITS)
_ECOM_REQUIRED = ("user_id", "event", "timestamp")
_ECOM_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_PHONE_PREFIX = "+1555"
_PHONE_DIGITS = 7
_ID_TYPES = (str, int)
# Epoch values at or above this are milliseconds: as seconds it is the year 5138.
_EPOCH_MS_THRESHOLD = 100_000_000_000


def read_events(path: Path, file_format: ReplayFormat) -> MessageIterator:
    """Read `path` in `file_format` and return its messages in send order.

    Raises:
        ReplayFileError: the file is missing or not valid in that format. The e-commerce
            CSV is checked as a whole before this returns; the line formats are checked
            line by line while the iterator runs.
    """
    readers: dict[ReplayFormat, Callable[[Path], MessageIterator]] = {
        ReplayFormat.ECOM_CSV: read_ecom_csv,
        ReplayFormat.SEGMENT_JSONL: read_segment_jsonl,
        ReplayFormat.CLEVERTAP_JSON: read_clevertap_records,
    }
    return readers[file_format](path)


# ---------------------------------------------------------------------------- ecom-csv


def read_ecom_csv(path: Path) -> MessageIterator:
    """Read the e-commerce clickstream CSV as Segment `track` and `identify` messages.

    Every row becomes one `track` of its `event` column, identical rows included. Rows are
    sent in timestamp order (naive times read as UTC), and rows with equal timestamps keep
    their file order. An `identify` comes right before a user's first row, carrying the four
    trait columns and `contact_traits`, and again right before any row whose trait columns
    differ from the same user's previous row.

    Message ids are `ecom-<row>-track` and `ecom-<row>-identify`, where `<row>` counts the
    file's data rows from 0, so replaying the same file again sends the same ids.

    The whole file is loaded into memory, because sending in time order needs a global sort.

    Raises:
        ReplayFileError: the file cannot be read, lacks a column, has a row without
            `user_id`, `event` or `timestamp`, or has a timestamp in another form.
    """
    frame = _load_ecom_frame(path)
    identifies = frame.filter(pl.col("first_of_user") | pl.col("traits_changed")).height
    return MessageIterator(_iter_ecom_messages(frame), total=frame.height + identifies)


def contact_traits(user_id: str) -> dict[str, str]:
    """Derive a user's email address, E.164 phone number and push token from the user id.

    The values are made up but stable, so the channels have an address for every user of a
    replayed dataset and a second replay yields the same profile.
    """
    return {
        "email": f"{user_id}@example.com",
        "phone": _phone_number(user_id),
        "push_token": f"push-{user_id}",
    }


def _phone_number(user_id: str) -> str:
    # Digits of the id keep numbers readable (user_0042 gets +15550000042); ids without a
    # usable number fall back to a hash, which two users may share.
    digits = re.sub(r"\D", "", user_id)
    if not 0 < len(digits) <= _PHONE_DIGITS:
        hashed = int(hashlib.sha256(user_id.encode()).hexdigest(), 16)
        digits = str(hashed % 10**_PHONE_DIGITS)
    return _PHONE_PREFIX + digits.zfill(_PHONE_DIGITS)


def _load_ecom_frame(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as error:
        raise ReplayFileError(f"cannot read {path} as CSV: {error}") from error

    _check_ecom_columns(frame, path)
    frame = frame.with_row_index("row").with_columns(
        time=pl.col("timestamp").str.to_datetime(_ECOM_TIME_FORMAT, time_zone="UTC", strict=False)
    )
    _check_ecom_values(frame, path)
    return _mark_identifies(frame.sort("time", maintain_order=True))


def _check_ecom_columns(frame: pl.DataFrame, path: Path) -> None:
    missing = [column for column in _ECOM_COLUMNS if column not in frame.columns]
    if missing:
        raise ReplayFileError(
            f"{path} has no column {', '.join(missing)}; "
            f"an ecom-csv file needs the columns {', '.join(_ECOM_COLUMNS)}"
        )


def _check_ecom_values(frame: pl.DataFrame, path: Path) -> None:
    for column in _ECOM_REQUIRED:
        empty = frame.filter(pl.col(column).is_null())
        if empty.height:
            row = empty["row"][0]
            raise ReplayFileError(f"{path}, data row {row}: {column} is empty; every row needs one")

    unparsed = frame.filter(pl.col("time").is_null())
    if unparsed.height:
        row, value = unparsed["row"][0], unparsed["timestamp"][0]
        raise ReplayFileError(
            f"{path}, data row {row}: timestamp {value!r} is not in the form "
            "YYYY-MM-DD HH:MM:SS (UTC)"
        )


def _mark_identifies(frame: pl.DataFrame) -> pl.DataFrame:
    # The frame is already in send order, so shifting within each user compares a row with
    # the same user's previous row.
    changed = [pl.col(t).ne_missing(pl.col(t).shift(1).over("user_id")) for t in ECOM_TRAITS]
    return frame.with_columns(
        first_of_user=pl.col("user_id").is_first_distinct(),
        traits_changed=pl.any_horizontal(changed),
    )


def _iter_ecom_messages(frame: pl.DataFrame) -> Iterator[Message]:
    for row in frame.iter_rows(named=True):
        if row["first_of_user"] or row["traits_changed"]:
            yield _ecom_identify(row)
        yield _ecom_track(row)


def _ecom_identify(row: dict[str, Any]) -> Message:
    traits = {trait: row[trait] for trait in ECOM_TRAITS}
    if row["first_of_user"]:
        traits |= contact_traits(row["user_id"])
    return {
        "type": "identify",
        "messageId": f"ecom-{row['row']}-identify",
        "userId": row["user_id"],
        "timestamp": row["time"].isoformat(),
        "traits": traits,
    }


def _ecom_track(row: dict[str, Any]) -> Message:
    return {
        "type": "track",
        "messageId": f"ecom-{row['row']}-track",
        "userId": row["user_id"],
        "event": row["event"],
        "timestamp": row["time"].isoformat(),
        "properties": {"session_id": row["session_id"], "platform": row["platform"]},
    }


# ----------------------------------------------------------------------- segment-jsonl


def read_segment_jsonl(path: Path) -> MessageIterator:
    """Read one Segment-spec message per line; blank lines are skipped.

    Messages are sent in timestamp order, as live traffic would arrive. Messages without a
    timestamp go last, because the API stamps them on arrival. Equal times keep their file
    order. The whole file is read and checked before this returns, so a bad
    line stops the replay before anything is sent.

    A message without `messageId` gets `jsonl-<line number>-<hash of the line>`, so a
    second replay of the same file sends the same ids. Fields are passed on as written.

    Raises:
        ReplayFileError: the file cannot be opened, or a line is not a JSON object or not
            a valid Segment message.
    """
    with _open_text(path) as stream:
        messages = list(_iter_segment_messages(stream, path))
    ordered = _in_time_order(messages, _segment_seconds)
    return MessageIterator(iter(ordered), total=len(ordered))


def _in_time_order(
    messages: list[Message], seconds: Callable[[Message], float | None]
) -> list[Message]:
    def key(message: Message) -> tuple[bool, float]:
        at = seconds(message)
        return (at is None, at or 0.0)

    return sorted(messages, key=key)


def _segment_seconds(message: Message) -> float | None:
    timestamp = message.get("timestamp")
    if not isinstance(timestamp, str):
        return None
    moment = datetime.fromisoformat(timestamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _clevertap_seconds(record: Message) -> float | None:
    value = record.get("ts")
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    # The upload API reads values this large as milliseconds.
    return seconds / 1000 if seconds >= _EPOCH_MS_THRESHOLD else seconds


def _iter_segment_messages(stream: IO[str], path: Path) -> Iterator[Message]:
    for number, line in _numbered_lines(stream, path):
        message = _parse_object(line, f"{path}, line {number}")
        problem = _segment_problem(message)
        if problem:
            raise ReplayFileError(f"{path}, line {number}: {problem}")
        if "messageId" not in message:
            message["messageId"] = _line_message_id(number, line)
        yield message


def _segment_problem(message: Message) -> str | None:
    """Return why `message` is not a valid Segment message, or None when it is."""
    kind = message.get("type")
    if kind not in SEGMENT_TYPES:
        return f"type {kind!r} is not one of {', '.join(sorted(SEGMENT_TYPES))}"
    return (
        _identity_problem(message)
        or _required_field_problem(message)
        or _field_type_problem(message)
        or _timestamp_problem(message.get("timestamp"))
    )


def _identity_problem(message: Message) -> str | None:
    if message["type"] == "alias":
        if not (_is_id(message.get("userId")) and _is_id(message.get("previousId"))):
            return "an alias needs userId and previousId"
        return None
    if not (_is_id(message.get("userId")) or _is_id(message.get("anonymousId"))):
        return f"a {message['type']} needs userId or anonymousId"
    return None


def _required_field_problem(message: Message) -> str | None:
    if message["type"] == "track" and not _is_id(message.get("event")):
        return "a track needs a non-empty event name"
    if message["type"] == "group" and not _is_id(message.get("groupId")):
        return "a group needs a groupId"
    return None


def _is_id(value: object) -> bool:
    return isinstance(value, _ID_TYPES) and value != ""


def _field_type_problem(message: Message) -> str | None:
    for field in ("properties", "traits", "context", "integrations"):
        if field in message and not isinstance(message[field], dict):
            return f"{field} must be a JSON object, got {message[field]!r}"
    for field in ("name", "category"):
        if message.get(field) is not None and not isinstance(message[field], str):
            return f"{field} must be a string, got {message[field]!r}"
    if "messageId" in message and not isinstance(message["messageId"], _ID_TYPES):
        return f"messageId must be a string, got {message['messageId']!r}"
    return None


def _timestamp_problem(timestamp: object) -> str | None:
    if timestamp is None:
        return None
    if isinstance(timestamp, str):
        try:
            datetime.fromisoformat(timestamp)
            return None
        except ValueError:
            pass
    return f"timestamp {timestamp!r} is not an ISO-8601 date-time"


def _line_message_id(number: int, line: str) -> str:
    # The line number keeps identical lines distinct; the hash changes the id when the
    # line's content changes.
    digest = hashlib.sha256(line.strip().encode()).hexdigest()[:16]
    return f"jsonl-{number}-{digest}"


# ---------------------------------------------------------------------- clevertap-json


def read_clevertap_records(path: Path) -> MessageIterator:
    """Read CleverTap upload records from `{"d": [...]}` or from one record per line.

    Records are passed on unchanged, in the order of their `ts`: epoch seconds, or
    milliseconds for values of 10^11 and more. Records without a usable `ts` go last, and
    equal times keep their file order. The API validates their fields. The whole file is read
    and parsed before this returns.

    Raises:
        ReplayFileError: the file cannot be read, or is neither an upload body nor JSON
            lines of objects.
    """
    records = _in_time_order(_load_records(path), _clevertap_seconds)
    return MessageIterator(iter(records), total=len(records))


def _load_records(path: Path) -> list[Message]:
    with _open_text(path) as stream:
        text = _read_all(stream, path)
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _parse_record_lines(text, path)
    if isinstance(body, dict) and "d" in body:
        return _upload_records(body["d"], path)
    if isinstance(body, dict):
        # A JSON-lines file holding a single record also parses as one document.
        return [body]
    raise ReplayFileError(
        f"{path} contains a JSON {type(body).__name__}; a clevertap-json file is an upload "
        'body {"d": [records]} or one record object per line'
    )


def _upload_records(records: object, path: Path) -> list[Message]:
    if not isinstance(records, list):
        raise ReplayFileError(f'{path}: "d" must be a list of records, got {records!r:.80}')
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ReplayFileError(f'{path}: record {index} of "d" is not an object: {record!r:.80}')
    return records


def _parse_record_lines(text: str, path: Path) -> list[Message]:
    return [
        _parse_object(line, f"{path}, line {number}")
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


# ---------------------------------------------------------------------------- helpers


def _open_text(path: Path) -> IO[str]:
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rt", encoding="utf-8")
        return path.open(encoding="utf-8")
    except OSError as error:
        raise ReplayFileError(f"cannot open {path}: {error.strerror or error}") from error


def _numbered_lines(stream: IO[str], path: Path) -> Iterator[tuple[int, str]]:
    """Yield the non-blank lines of `stream` with their 1-based line numbers."""
    try:
        for number, line in enumerate(stream, start=1):
            if line.strip():
                yield number, line
    except (OSError, UnicodeDecodeError) as error:
        raise ReplayFileError(f"cannot read {path}: {error}") from error


def _read_all(stream: IO[str], path: Path) -> str:
    try:
        return stream.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ReplayFileError(f"cannot read {path}: {error}") from error


def _parse_object(line: str, where: str) -> Message:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise ReplayFileError(f"{where}: invalid JSON ({error})") from error
    if not isinstance(value, dict):
        raise ReplayFileError(f"{where}: expected a JSON object, got {line.strip()!r:.80}")
    return value
