"""The `herald` command line."""

from __future__ import annotations

import typer

from herald.commands import campaigns, labels, users
from herald.commands import kafka, replay, serve, sql

app = typer.Typer(help="Herald: events in, campaigns out, Parquet for analysts.", no_args_is_help=True)
app.add_typer(kafka.app, name="kafka", help="Run the local development Kafka broker.")
app.command("worker", help="Run the stream worker: landing, profiles and the engine.")(serve.worker)
app.command("api", help="Run the HTTP API.")(serve.api)
app.command("replay", help="Send a file of events through the HTTP API.")(replay.replay)
app.command("sql", help="Run SQL over the landed Parquet with DuckDB.")(sql.sql)
app.add_typer(campaigns.app, name="campaigns", help="Create campaigns from files and act on them.")
app.add_typer(labels.app, name="labels", help="Manage message labels.")
app.add_typer(users.app, name="users", help="Bootstrap an account; manage users and tokens.")

if __name__ == "__main__":
    app()
