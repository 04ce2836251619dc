"""The one mapping from domain errors to HTTP responses.

Validation errors take FastAPI's shape, `{"detail": [{"loc": [...], "msg": ..., "type":
...}]}`, so a client reads the path of each invalid field the same way whether FastAPI's
request validation or a domain rule found it. Other errors return
`{"detail": message, "code": kind}`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from domain.errors import (
    AuthenticationFailed,
    ConflictError,
    DomainError,
    InvalidValue,
    LabelInUse,
    NotFound,
    PermissionDenied,
)

__all__ = ["install_error_handlers"]

logger = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (AuthenticationFailed, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (ConflictError, 409),
)


def install_error_handlers(app: FastAPI) -> None:
    """Map every `DomainError` to its HTTP response."""
    app.add_exception_handler(DomainError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(StaleDataError, _concurrent_change)  # type: ignore[arg-type]
    app.add_exception_handler(IntegrityError, _concurrent_change)  # type: ignore[arg-type]


async def _concurrent_change(request: Request, error: Exception) -> JSONResponse:
    """Respond with 409 to a write that lost a race with another request on the same record."""
    logger.info(
        "request conflicted with a concurrent change: %s",
        type(error).__name__,
        extra={"path": request.url.path, "status": 409},
    )
    message = (
        "another request changed the same record at the same time, so this change was not "
        "saved; reload it and apply the change again"
    )
    return JSONResponse({"detail": message, "code": "concurrent_change"}, status_code=409)


async def _domain_error(request: Request, error: DomainError) -> JSONResponse:
    status = 422 if isinstance(error, InvalidValue) else _status(error)
    logger.info(
        "request rejected: %s",
        error.message,
        extra={"path": request.url.path, "status": status, "error": type(error).__name__},
    )
    if isinstance(error, InvalidValue):
        detail = [
            {"loc": ["body", *f.path], "msg": f.message, "type": f.kind} for f in error.fields
        ]
        return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)
    body: dict[str, Any] = {"detail": error.message, "code": _code(error)}
    if isinstance(error, LabelInUse):
        body["campaigns"] = list(error.campaigns)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _status(error: DomainError) -> int:
    return next((code for kind, code in _STATUS if isinstance(error, kind)), 400)


def _code(error: DomainError) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()
