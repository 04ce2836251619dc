"""Typed dependencies shared by the routers: settings, the producer and ingest credentials."""

from __future__ import annotations

import base64
import binascii
import gzip
import hmac
import json
import zlib
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, HTTPException, Request, status

from herald.config import HeraldSettings
from streams.producer import EventProducer

__all__ = [
    "CleverTapAccountId",
    "JsonBody",
    "ProducerDep",
    "SettingsDep",
    "WriteKey",
    "read_body_at_most",
    "read_json_body",
]


def _settings(request: Request) -> HeraldSettings:
    return request.app.state.settings


def _producer(request: Request) -> EventProducer:
    return request.app.state.producer


SettingsDep = Annotated[HeraldSettings, Depends(_settings)]
ProducerDep = Annotated[EventProducer, Depends(_producer)]


def _unauthorized(message: str, scheme: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": scheme}
    )


def _write_key(request: Request, settings: SettingsDep) -> str:
    """Check the write key sent as the HTTP Basic user name, as Segment's libraries do."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise _unauthorized("missing write key: send it as the HTTP Basic user name", "Basic")
    try:
        user, _, _ = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized("malformed HTTP Basic credentials", "Basic") from None
    if not any(
        hmac.compare_digest(user.encode(), key.get_secret_value().encode())
        for key in settings.ingest.write_keys
    ):
        raise _unauthorized("unknown write key", "Basic")
    return user


def _clevertap_account(
    settings: SettingsDep,
    account_id: Annotated[str | None, Header(alias="X-CleverTap-Account-Id")] = None,
    passcode: Annotated[str | None, Header(alias="X-CleverTap-Passcode")] = None,
) -> str:
    """Check CleverTap's account id and passcode headers against the configured accounts."""
    if not account_id or not passcode:
        raise _unauthorized(
            "missing X-CleverTap-Account-Id or X-CleverTap-Passcode header", "CleverTap"
        )
    for account in settings.ingest.clevertap_accounts:
        if account.account_id == account_id and hmac.compare_digest(
            passcode.encode(), account.passcode.get_secret_value().encode()
        ):
            return account_id
    raise _unauthorized("unknown account id or passcode", "CleverTap")


WriteKey = Annotated[str, Depends(_write_key)]
CleverTapAccountId = Annotated[str, Depends(_clevertap_account)]


@dataclass(frozen=True, slots=True)
class JsonBody:
    """A decoded request body and its bytes after decompression.

    `lenient` is True when orjson rejected the body and Python's more permissive reader
    decoded it. Such a body may contain NaN, Infinity or an unpaired surrogate, and the
    caller rejects each event that contains one.
    """

    document: Any
    raw: bytes
    lenient: bool = False


async def read_json_body(request: Request, max_bytes: int) -> JsonBody:
    """Read, decompress and decode a JSON body of at most `max_bytes` (after decompression).

    Raises:
        HTTPException: 413 when the body is too large, 400 when it is not valid JSON.
    """
    raw = await read_body_at_most(request, max_bytes)
    encoding = request.headers.get("content-encoding", "").lower()
    body = _decompress(raw, encoding, max_bytes)
    if len(body) > max_bytes:
        raise _too_large(len(body), max_bytes)
    try:
        return JsonBody(orjson.loads(body), body)
    except orjson.JSONDecodeError as error:
        strict_error = error
    # One event with a NaN must not cost the other events of its batch. Segment's Python
    # library (analytics/request.py) encodes with json.dumps, which writes NaN for a
    # float('nan') property. The body is decoded as UTF-8 first, because `json.loads` of
    # bytes also accepts UTF-16 and UTF-32.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail=f"request body is not valid UTF-8: {_bad_bytes(error)}",
        ) from None
    try:
        document = json.loads(text, parse_int=_integer_as_orjson_reads_it)
    except (ValueError, RecursionError):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"request body is not valid JSON: {strict_error}"
        ) from None
    return JsonBody(document, body, lenient=True)


def _bad_bytes(error: UnicodeDecodeError) -> str:
    """Describe where a body stops being UTF-8, for an error message."""
    return (
        f"byte 0x{error.object[error.start]:02x} at offset {error.start} ({error.reason}); "
        "send the body encoded as UTF-8"
    )


def _integer_as_orjson_reads_it(text: str) -> int | float:
    # orjson reads integers beyond its 64-bit range as floats and rejects those beyond
    # ±1.8e308, which float() reads as infinity for the event check to reject. Converting
    # long digit strings with float() also avoids int()'s limit of 4,300 digits.
    if len(text) <= 20:
        value = int(text)
        if -(2**63) <= value <= 2**64 - 1:
            return value
    return float(text)


def _too_large(size: int, max_bytes: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        detail=f"request body is {size} bytes, more than the {max_bytes} bytes allowed",
    )


async def read_body_at_most(request: Request, max_bytes: int) -> bytes:
    """Read the body, stopping as soon as it exceeds `max_bytes`, so a huge upload costs
    no more memory than the limit. Compressed bodies are bounded again after inflating."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _decompress(raw: bytes, encoding: str, max_bytes: int) -> bytes:
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "deflate"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"Content-Encoding '{encoding}' is not supported; use gzip, deflate or none",
        )
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    parts: list[bytes] = []
    size = 0
    pending = raw
    # A gzip body may hold several members one after the other (RFC 1952, section 2.2),
    # as `cat a.gz b.gz` makes. They inflate to their contents joined.
    while True:
        decompressor = zlib.decompressobj(wbits)
        try:
            # One byte past the limit is enough to know the body is too large.
            part = decompressor.decompress(pending, max_bytes + 1 - size)
        except (zlib.error, gzip.BadGzipFile) as error:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, detail=f"request body is not valid {encoding}: {error}"
            ) from None
        size += len(part)
        if size > max_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=(
                    f"request body of {len(raw)} bytes inflates to more than the "
                    f"{max_bytes} bytes allowed"
                ),
            )
        parts.append(part)
        pending = decompressor.unused_data
        if not decompressor.eof or (pending and encoding != "gzip"):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                detail=f"request body is not valid {encoding}: truncated, or followed by extra bytes",
            )
        if not pending:
            return b"".join(parts)
