"""`herald sql`: run SQL over the landed Parquet, with Herald's views defined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import orjson
import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from herald.config import HeraldSettings
from queries.catalog import connect, view_statements

__all__ = ["sql"]


def sql(
    query: str = typer.Argument(
        None, help='SQL to run, for example "SELECT event, count(*) FROM events GROUP BY 1".'
    ),
    data_dir: Path | None = typer.Option(
        None, help="Landed data directory; default from settings (data)."
    ),
    output: str = typer.Option("table", "--format", help="table, csv or json."),
    views: bool = typer.Option(
        False, "--views", help="Print the view definitions for a DuckDB shell and exit."
    ),
) -> None:
    directory = data_dir or HeraldSettings().landing.data_dir
    if views:
        typer.echo(view_statements(directory.resolve()))
        return
    if not query:
        typer.echo("error: give a query, or --views for the view definitions", err=True)
        raise typer.Exit(2)
    if not directory.is_dir():
        typer.echo(f"warning: {directory} does not exist; the views are empty", err=True)
    try:
        relation = connect(directory).sql(query)
        result = relation.pl() if relation is not None else None
    except duckdb.Error as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    if result is None:
        return
    if output == "csv":
        typer.echo(_flat(result).write_csv(), nl=False)
    elif output == "json":
        typer.echo(result.write_json())
    else:
        _print_table(result)


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    """Return `frame` with list and struct columns as JSON text, which CSV can hold."""
    nested = [
        name
        for name, dtype in frame.schema.items()
        if isinstance(dtype, (pl.List, pl.Array, pl.Struct))
    ]
    if not nested:
        return frame
    return frame.with_columns(
        pl.Series(name, [_json(value) for value in frame[name].to_list()], pl.String)
        for name in nested
    )


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()


def _print_table(frame) -> None:  # type: ignore[no-untyped-def]
    table = Table(*frame.columns, show_lines=False)
    for row in frame.iter_rows():
        table.add_row(*("" if value is None else str(value) for value in row))
    Console().print(table)
