"""The `herald` command line."""

from __future__ import annotations

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from herald.commands import campaigns, demo, kafka, labels, replay, serve, sql, users
from herald.config import HeraldSettings, setting_errors
from herald.logs import configure_logging

app = typer.Typer(
    help="Herald: events in, campaigns out, Parquet for analysts.", no_args_is_help=True
)


@app.callback()
def _configure(
    log_level: str = typer.Option("warning", help="debug, info, warning or error."),
) -> None:
    # Long-running commands raise this to INFO themselves.
    configure_logging(log_level)
    try:
        HeraldSettings()
    except ValidationError as error:
        for line in setting_errors(error):
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None
    except SettingsError as error:
        # A value that is not valid JSON where a setting takes JSON, such as a list.
        typer.echo(f"error: {error}: {error.__cause__}", err=True)
        raise typer.Exit(2) from None


app.add_typer(kafka.app, name="kafka", help="Run the local development Kafka broker.")
app.command("worker", help="Run the stream worker: landing, profiles and the engine.")(serve.worker)
app.command("api", help="Run the HTTP API.")(serve.api)
app.command("replay", help="Send a file of events through the HTTP API.")(replay.replay)
app.command("flush", help="Make the engine decide the pending sends whose time has passed.")(
    replay.flush
)
app.command("sql", help="Run SQL over the landed Parquet with DuckDB.")(sql.sql)
app.command("demo", help="Replay the reference dataset end to end and compare counts.")(demo.demo)
app.add_typer(campaigns.app, name="campaigns", help="Create campaigns from files and act on them.")
app.add_typer(labels.app, name="labels", help="Manage message labels.")
app.add_typer(users.app, name="users", help="Bootstrap an account; manage users and tokens.")

if __name__ == "__main__":
    app()
