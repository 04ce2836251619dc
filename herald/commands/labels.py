"""`herald labels`: list, create, rename and delete message labels."""

from __future__ import annotations

from typing import Annotated

import typer

from herald.commands.api_client import DEFAULT_URL, ApiClient, TokenOption, UrlOption

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)


def _label_id(client: ApiClient, name: str) -> str:
    for label in client.request("GET", "/labels"):
        if label["name"].casefold() == name.strip().casefold():
            return str(label["id"])
    typer.echo(f"error: label {name!r} not found", err=True)
    raise typer.Exit(1)


@app.command("list")
def list_labels(token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Print every label of the account, one per line."""
    for label in ApiClient(url, token).request("GET", "/labels"):
        typer.echo(label["name"])


@app.command("create")
def create_labels(
    names: Annotated[list[str], typer.Argument(help="Label names; quote names with spaces.")],
    token: TokenOption,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Create several labels; the valid ones are created and each rejected one is listed."""
    result = ApiClient(url, token).request("POST", "/labels", {"names": names})
    for label in result["created"]:
        typer.echo(f"created {label['name']}")
    for rejected in result["rejected"]:
        typer.echo(f"rejected: {rejected['reason']}", err=True)
    if result["rejected"]:
        raise typer.Exit(1)


@app.command("rename")
def rename_label(old: str, new: str, token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Rename a label; campaigns that carry it show the new name."""
    client = ApiClient(url, token)
    label = client.request("PATCH", f"/labels/{_label_id(client, old)}", {"name": new})
    typer.echo(f"renamed to {label['name']}")


@app.command("delete")
def delete_label(name: str, token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Delete a label; fails, naming them, while campaigns carry it."""
    client = ApiClient(url, token)
    client.request("DELETE", f"/labels/{_label_id(client, name)}")
    typer.echo(f"deleted {name}")
