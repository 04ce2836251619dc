"""`herald campaigns`: create campaigns from YAML or JSON files, and act on them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from herald.commands.api_client import (
    DEFAULT_URL,
    ApiClient,
    TokenOption,
    UrlOption,
    load_document,
    print_json,
)

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)

FileArgument = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, help="A YAML or JSON file.")
]
AtOption = Annotated[
    datetime | None, typer.Option(help="New time of the first run, e.g. 2026-05-01T09:00:00+00:00.")
]
RunNowOption = Annotated[bool, typer.Option(help="Run a one-time campaign now instead.")]


def _summary(campaign: dict[str, Any]) -> str:
    return (
        f"{campaign['id']}  {campaign['state']:<17}  {campaign['channel']:<19}  {campaign['name']}"
    )


def _show(campaign: dict[str, Any]) -> None:
    typer.echo(_summary(campaign))
    for warning in campaign.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)


def _timing(at: datetime | None, run_now: bool) -> dict[str, Any]:
    if at is not None and at.tzinfo is None:
        typer.echo(f"error: --at {at} has no time zone; add one, such as +00:00", err=True)
        raise typer.Exit(1)
    return {"at": None if at is None else at.isoformat(), "run_now": run_now}


@app.command("list")
def list_campaigns(
    token: TokenOption,
    url: UrlOption = DEFAULT_URL,
    state: Annotated[str | None, typer.Option(help="Only campaigns in this state.")] = None,
    channel: Annotated[str | None, typer.Option(help="Only campaigns of this channel.")] = None,
    label: Annotated[str | None, typer.Option(help="Only campaigns with this label.")] = None,
) -> None:
    """Print one line per campaign: id, state, channel, name."""
    client = ApiClient(url, token)
    for campaign in client.request("GET", "/campaigns", state=state, channel=channel, label=label):
        typer.echo(_summary(campaign))


@app.command("show")
def show_campaign(campaign_id: str, token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Print a campaign as JSON."""
    print_json(ApiClient(url, token).request("GET", f"/campaigns/{campaign_id}"))


@app.command("create")
def create_campaign(
    file: FileArgument,
    token: TokenOption,
    url: UrlOption = DEFAULT_URL,
    create_labels: Annotated[
        bool, typer.Option(help="Create the file's labels if missing.")
    ] = False,
    publish: Annotated[bool, typer.Option(help="Publish the draft right away.")] = False,
) -> None:
    """Create a draft from a file; prints its id, state, channel and name."""
    client = ApiClient(url, token)
    body = load_document(file)
    if create_labels and body.get("labels"):
        _ensure_labels(client, list(body["labels"]))
    campaign = client.request("POST", "/campaigns", body)
    if publish:
        campaign = client.request("POST", f"/campaigns/{campaign['id']}/publish", {})
    _show(campaign)


def _ensure_labels(client: ApiClient, names: list[str]) -> None:
    existing = {label["name"].casefold() for label in client.request("GET", "/labels")}
    missing = [name for name in names if name.strip().casefold() not in existing]
    if missing:
        result = client.request("POST", "/labels", {"names": missing})
        for rejected in result["rejected"]:
            typer.echo(f"error: {rejected['reason']}", err=True)
        if result["rejected"]:
            raise typer.Exit(1)


@app.command("update")
def update_campaign(
    campaign_id: str, file: FileArgument, token: TokenOption, url: UrlOption = DEFAULT_URL
) -> None:
    """Apply the fields in a file to a campaign; unchanged fields do not count as edits."""
    _show(ApiClient(url, token).request("PATCH", f"/campaigns/{campaign_id}", load_document(file)))


@app.command("publish")
def publish_campaign(
    campaign_id: str,
    token: TokenOption,
    url: UrlOption = DEFAULT_URL,
    at: AtOption = None,
    run_now: RunNowOption = False,
) -> None:
    """Publish a draft; `--at` moves its first run, `--run-now` sends it now."""
    body = _timing(at, run_now)
    _show(ApiClient(url, token).request("POST", f"/campaigns/{campaign_id}/publish", body))


@app.command("send-for-approval")
def send_for_approval(campaign_id: str, token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Send a draft or rejected campaign to the approvers."""
    _show(ApiClient(url, token).request("POST", f"/campaigns/{campaign_id}/send-for-approval"))


@app.command("approve")
def approve_campaign(
    campaign_id: str,
    token: TokenOption,
    url: UrlOption = DEFAULT_URL,
    at: AtOption = None,
    run_now: RunNowOption = False,
) -> None:
    """Approve a pending campaign, which publishes it."""
    body = _timing(at, run_now)
    _show(ApiClient(url, token).request("POST", f"/campaigns/{campaign_id}/approve", body))


@app.command("reject")
def reject_campaign(
    campaign_id: str,
    comment: Annotated[str, typer.Option(help="Why the campaign is rejected.")],
    token: TokenOption,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Reject a pending campaign with a comment for its creator."""
    body = {"comment": comment}
    _show(ApiClient(url, token).request("POST", f"/campaigns/{campaign_id}/reject", body))


@app.command("stop")
def stop_campaign(campaign_id: str, token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Stop a published campaign for good; campaigns cannot be paused."""
    _show(ApiClient(url, token).request("POST", f"/campaigns/{campaign_id}/stop"))


@app.command("duplicate")
def duplicate_campaign(campaign_id: str, token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Copy a campaign into a new draft."""
    _show(ApiClient(url, token).request("POST", f"/campaigns/{campaign_id}/duplicate"))


@app.command("archive")
def archive_campaign(campaign_id: str, token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Hide a campaign that no longer sends from the list."""
    _show(ApiClient(url, token).request("POST", f"/campaigns/{campaign_id}/archive"))


@app.command("preview")
def preview_campaign(
    campaign_id: str,
    token: TokenOption,
    url: UrlOption = DEFAULT_URL,
    profile: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="YAML or JSON user profile.")
    ] = None,
) -> None:
    """Render the message for a user profile."""
    body = {"profile": load_document(profile) if profile else {}}
    print_json(ApiClient(url, token).request("POST", f"/campaigns/{campaign_id}/preview", body))


@app.command("audit")
def read_audit(campaign_id: str, token: TokenOption, url: UrlOption = DEFAULT_URL) -> None:
    """Print the campaign's audit log as JSON, oldest entry first."""
    print_json(ApiClient(url, token).request("GET", f"/campaigns/{campaign_id}/audit"))
