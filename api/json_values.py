"""Values that Python's JSON reader accepts but that JSON, UTF-8 or Herald's stores cannot hold.

Python's `json` module, which FastAPI uses for request bodies, reads `NaN`, `Infinity` and
`-Infinity`, reads `1e400` as infinity, keeps integers of any size and keeps unpaired UTF-16
surrogates such as `"\\ud800"`. Each of them fails later. Starlette's JSON responses reject
NaN and infinities, and so does PostgreSQL's `json` type. orjson, which writes Kafka records
and the change feed, rejects integers beyond 64 bits, and no surrogate can be encoded as
UTF-8. `StrictJSONRoute` therefore rejects a request body that contains one with 422 and
the value's path, and the ingest endpoints reject the one event that contains it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from api.deps import read_body_at_most

__all__ = [
    "MAX_CONTROL_BODY_BYTES",
    "InvalidJsonValue",
    "StrictJSONRoute",
    "find_invalid_json_value",
    "format_field",
]

# A control-plane body past this gets 413. The largest valid one, a campaign, stays under
# half of it (`control.outbox.MAX_CAMPAIGN_RECORD_BYTES`).
MAX_CONTROL_BODY_BYTES = 1024 * 1024
# orjson, which writes Kafka records and the change feed, can write only integers in this range.
_MIN_INTEGER = -(2**63)
_MAX_INTEGER = 2**64 - 1


@dataclass(frozen=True, slots=True)
class InvalidJsonValue:
    """A value that JSON cannot carry: its path in the document and the reason."""

    path: tuple[str | int, ...]
    reason: str


def find_invalid_json_value(document: Any) -> InvalidJsonValue | None:
    """Find a non-finite number, out-of-range integer or unpaired surrogate in `document`.

    Returns None when there is none. Keys are checked as well as values. Path elements are
    object keys and array indexes. A key that contains a surrogate appears with the
    surrogate escaped (`\\ud800`), so that the path can be written into a response.
    """
    # An explicit stack, because Python's reader accepts nesting deeper than a recursive
    # walk could follow within the interpreter's recursion limit.
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        reason = _value_problem(value)
        if reason is not None:
            return InvalidJsonValue(path, reason)
        if isinstance(value, dict):
            children: list[tuple[Any, tuple[str | int, ...]]] = []
            for key, item in value.items():
                key_reason = _text_problem(key) if isinstance(key, str) else None
                if key_reason is not None:
                    return InvalidJsonValue((*path, _printable(key)), f"key {key_reason}")
                children.append((item, (*path, key)))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend((item, (*path, index)) for index, item in reversed(list(enumerate(value))))
    return None


def format_field(path: tuple[str | int, ...]) -> str:
    """Format a path that starts with a key as the ingest endpoints name fields.

    For example `("properties", "items", 2, "sku")` becomes `properties.items[2].sku`.
    """
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else step
    return text


def _value_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN is not a valid JSON number; send a finite number or null"
        name = "Infinity" if value > 0 else "-Infinity"
        return (
            f"{name} is not a valid JSON number, and numbers beyond ±1.8e308 read as "
            f"{name}; send a finite number or null"
        )
    if isinstance(value, int) and not isinstance(value, bool):
        if not _MIN_INTEGER <= value <= _MAX_INTEGER:
            return (
                f"integer of {len(str(abs(value)))} digits is outside the 64-bit range "
                f"({_MIN_INTEGER} to {_MAX_INTEGER}) that Herald stores; send it as a string"
            )
    return None


def _text_problem(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        surrogate = ord(text[error.start])
        return (
            f"contains the unpaired surrogate U+{surrogate:04X}, which is not valid Unicode; "
            "send the text as valid UTF-8"
        )
    return None


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_json_media_type(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class StrictJSONRoute(APIRoute):
    """A route that rejects with 422 a JSON body that contains a value JSON does not allow.

    The error has FastAPI's validation shape, with `loc` the path of the value. A body
    nested too deeply for Python's reader also gets 422. Other bodies that do not parse are
    left to FastAPI's own error.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        if self.body_field is None:
            return handle

        async def handle_strictly(request: Request) -> Response:
            # Read once here, within the limit; Starlette then serves the kept bytes.
            request._body = await read_body_at_most(request, MAX_CONTROL_BODY_BYTES)
            if _is_json_media_type(request.headers.get("content-type", "")):
                await _check_json_body(request)
            return await handle(request)

        return handle_strictly


async def _check_json_body(request: Request) -> None:
    try:
        # Starlette keeps the parsed body on the request, so FastAPI does not parse it again.
        document = await request.json()
    except ValueError:
        body = await request.body()
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            # FastAPI would respond only with "There was an error parsing the body".
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body",),
                        "msg": f"body is not valid UTF-8: byte 0x{body[error.start]:02x} at "
                        f"offset {error.start} ({error.reason}); send the body encoded as UTF-8",
                    }
                ]
            ) from None
        return
    except RecursionError:
        # FastAPI would respond only with "There was an error parsing the body".
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body",),
                    "msg": "JSON is nested too deeply to decode; nest arrays and objects "
                    "at most a few hundred levels deep",
                }
            ]
        ) from None
    invalid = find_invalid_json_value(document)
    if invalid is not None:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", *invalid.path), "msg": invalid.reason}]
        )
