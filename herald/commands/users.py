"""`herald users`: bootstrap an account, and manage its users and tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from sqlalchemy import select

from control.accounts import bootstrap_account, normalise_email
from control.clock import SystemClock
from control.db import ControlStore
from control.models import User
from domain.errors import DomainError
from herald.commands.api_client import (
    DEFAULT_URL,
    ApiClient,
    TokenOption,
    UrlOption,
    load_document,
    print_json,
)
from herald.config import HeraldSettings
from schemas.account import Role

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)


@app.command("bootstrap")
def bootstrap(
    email: Annotated[str, typer.Option(help="Email of the first admin user.")],
    account: Annotated[str, typer.Option(help="Name of the new account.")] = "Herald",
    timezone: Annotated[str, typer.Option(help="IANA time zone of the account.")] = "UTC",
    approval_workflow: Annotated[
        bool, typer.Option(help="Require approval before a campaign goes out.")
    ] = False,
) -> None:
    """Create an account and its admin directly in the control-plane database.

    Prints the admin's API token, which is not stored and cannot be shown again.
    """
    settings = HeraldSettings()
    store = ControlStore.open(settings.control_db_url, feed_enabled=settings.control_feed)
    try:
        with store.session() as session:
            if session.scalar(select(User.id).where(User.email == normalise_email(email))):
                _fail(
                    f"a user {email!r} already exists; issue a token with `herald users token`, "
                    "or bootstrap another account with another email"
                )
            _admin, token = bootstrap_account(
                session, account, email, SystemClock().now(), timezone, approval_workflow
            )
    except DomainError as error:
        _fail(error.message)
    finally:
        store.close()
    typer.echo(token)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command("create")
def create_user(
    email: str,
    role: Annotated[Role, typer.Option(help="admin, creator, approver or analyst.")],
    token: TokenOption,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Add a user; prints their API token, which is not shown again."""
    created = ApiClient(url, token).request("POST", "/users", {"email": email, "role": role.value})
    typer.echo(created["token"])


@app.command("list")
def list_users(token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Print one line per user: id, role, email."""
    for user in ApiClient(url, token).request("GET", "/users"):
        typer.echo(f"{user['id']}  {user['role']:<8}  {user['email']}")


@app.command("token")
def issue_token(user_id: str, token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Issue another API token for a user."""
    typer.echo(ApiClient(url, token).request("POST", f"/users/{user_id}/tokens")["token"])


@app.command("workflow")
def set_workflow(
    enabled: Annotated[bool, typer.Argument(help="true to require approval, false to not.")],
    token: TokenOption,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Turn the account's approval workflow on or off."""
    print_json(ApiClient(url, token).request("PATCH", "/account", {"approval_workflow": enabled}))


@app.command("account")
def show_account(token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Show the account's settings; `delivery` null means the workers' own caps apply."""
    print_json(ApiClient(url, token).request("GET", "/account"))


@app.command("delivery")
def set_delivery(
    token: TokenOption,
    file: Annotated[
        Path | None,
        typer.Argument(
            help="YAML or JSON file of the settings: `frequency_caps` and `control_group_percent`."
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Drop the account's settings; the workers' apply.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Set the frequency caps and control group of every campaign of the account."""
    if file is None and not clear:
        typer.echo("error: give a settings file, or --clear", err=True)
        raise typer.Exit(2)
    if file is not None and clear:
        typer.echo("error: give a settings file or --clear, not both", err=True)
        raise typer.Exit(2)
    settings = None if file is None else load_document(file)
    print_json(ApiClient(url, token).request("PATCH", "/account", {"delivery": settings}))
