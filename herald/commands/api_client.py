"""The HTTP client that the control-plane commands share.

The commands go through the API, so the CLI obeys the same roles and lifecycle rules as
every other client. The URL and token come from options or `HERALD_API_URL` and
`HERALD_TOKEN`. Without a URL, the commands reach the API that `HERALD_API__HOST` and
`HERALD_API__PORT` configure, as `herald replay` and `herald demo` do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import orjson
import typer
import yaml  # type: ignore[import-untyped]
from pydantic import ValidationError

from herald.config import HeraldSettings
from herald.urls import default_host

__all__ = ["ApiClient", "TokenOption", "UrlOption", "load_document", "print_json"]

UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="HERALD_API_URL",
        help="Base URL of the Herald API.",
        show_default="http://127.0.0.1:8080, or HERALD_API__HOST and HERALD_API__PORT",
    ),
]
TokenOption = Annotated[
    str,
    typer.Option("--token", envvar="HERALD_TOKEN", help="Your API token (see `herald users`)."),
]
# Empty: the URL of the API that the settings configure.
DEFAULT_URL = ""
_TIMEOUT_S = 30.0


class ApiClient:
    """Sends requests to the API and turns error responses into a message and exit code 1."""

    def __init__(self, url: str, token: str) -> None:
        if not url:
            try:
                url = default_host(HeraldSettings().api)
            except ValidationError as error:
                typer.echo(f"error: invalid settings for the API's address: {error}", err=True)
                raise typer.Exit(1) from None
        self._client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=_TIMEOUT_S
        )

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        try:
            response = self._client.request(method, path, json=body, params=query)
        except httpx.HTTPError as error:
            typer.echo(f"error: cannot reach the API at {self._client.base_url}: {error}", err=True)
            raise typer.Exit(1) from None
        if response.status_code >= 400:
            typer.echo(f"error: {response.status_code} {_describe(response)}", err=True)
            raise typer.Exit(1)
        return None if response.status_code == 204 else response.json()


def _describe(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text
    if isinstance(detail, list):
        return "; ".join(_located(d) for d in detail)
    return str(detail)


def _located(error: dict[str, Any]) -> str:
    field = ".".join(map(str, error["loc"][1:]))
    return f"{field}: {error['msg']}" if field else str(error["msg"])


def load_document(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON file (JSON is valid YAML) that contains one object.

    The object must be sendable as JSON: YAML also reads unquoted dates, binary data and
    `.inf`, which JSON cannot carry, so those end the command with an error here.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        _fail(f"cannot read {path}: {error}")
    if not isinstance(document, dict):
        found = "nothing" if document is None else _KINDS.get(type(document), "a scalar")
        _fail(f"{path} contains {found}, expected an object of fields")
    try:
        # As UTF-8, because a lone surrogate ("\ud800") escapes fine but cannot be sent.
        json.dumps(document, allow_nan=False, ensure_ascii=False).encode()
    except (TypeError, ValueError) as error:
        _fail(f"{path} contains a value that JSON cannot carry ({error}); quote dates and times")
    return document


_KINDS = {list: "a list", str: "text", int: "a number", float: "a number", bool: "a boolean"}


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
