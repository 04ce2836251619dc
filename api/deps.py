"""Typed dependencies shared by the routers: settings, the producer and ingest credentials."""

from __future__ import annotations

import base64
import binascii
import gzip
import hmac
import zlib
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, HTTPException, Request, status

from herald.config import HeraldSettings
from streams.producer import EventProducer

__all__ = [
    "CleverTapAccountId",
    "ProducerDep",
    "SettingsDep",
    "WriteKey",
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


async def read_json_body(request: Request, max_bytes: int) -> tuple[Any, bytes]:
    """Read, decompress and decode a JSON body of at most `max_bytes` (after decompression).

    Raises:
        HTTPException: 413 when the body is too large, 400 when it is not valid JSON.
    """
    raw = await _read_body(request, max_bytes)
    encoding = request.headers.get("content-encoding", "").lower()
    body = _decompress(raw, encoding, max_bytes)
    if len(body) > max_bytes:
        raise _too_large(len(body), max_bytes)
    try:
        return orjson.loads(body), body
    except orjson.JSONDecodeError as error:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"request body is not valid JSON: {error}"
        ) from None


def _too_large(size: int, max_bytes: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        detail=f"request body is {size} bytes, more than the {max_bytes} bytes allowed",
    )


async def _read_body(request: Request, max_bytes: int) -> bytes:
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
    decompressor = zlib.decompressobj(wbits)
    try:
        # One byte past the limit is enough to know the body is too large.
        body = decompressor.decompress(raw, max_bytes + 1)
    except (zlib.error, gzip.BadGzipFile) as error:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"request body is not valid {encoding}: {error}"
        ) from None
    if len(body) <= max_bytes and (not decompressor.eof or decompressor.unused_data):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail=f"request body is not valid {encoding}: truncated, or followed by extra bytes",
        )
    return body
