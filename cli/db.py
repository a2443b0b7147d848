"""``sourcecheck db``: the metadata database's schema (Alembic migrations in api/migrations/),
and :func:`open_database`, which every command that uses the database calls first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from sqlalchemy.exc import SQLAlchemyError

from api.db import describe, init_db, new_revision, schema_state, upgrade_schema, upgrade_sql
from api.errors import SchemaNotCurrent
from cli.console import EXIT_FAILED, fail

app = typer.Typer(help="The metadata database's schema (Alembic migrations in api/migrations/).", no_args_is_help=True)

T = TypeVar("T")


def on_database(action: Callable[[], T]) -> T:
    """``action()``; a database that cannot be reached or refuses ends the command with one
    line (the driver's message, which has no password) and exit status 2."""
    try:
        return action()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        fail(f"database: {reason[0] if reason else type(exc).__name__}")


def open_database() -> None:
    """The schema at head before a command uses the database (api.db.init_db); a schema this
    version cannot use ends the command with the message naming both revisions (exit 1)."""
    try:
        on_database(init_db)
    except SchemaNotCurrent as exc:
        fail(exc.message, EXIT_FAILED)


@app.command("upgrade")
def db_upgrade(
    sql: Annotated[bool, typer.Option("--sql", help="Print the SQL it would run instead of running it.")] = False,
) -> None:
    """Migrate the metadata database (SOURCECHECK_DATABASE_URL) to the schema this version needs.

    Run it once per release before starting the API in production (the development
    profile does it on startup). Safe to run again, and from several places at once.

    Example: sourcecheck db upgrade
    """
    if sql:
        on_database(upgrade_sql)
        return
    before, after = on_database(upgrade_schema)
    if before == after:
        typer.echo(f"database already at revision {describe(after)} (head)")
    else:
        typer.echo(f"database upgraded from revision {describe(before)} to {describe(after)} (head)")


@app.command("current")
def db_current(
    check: Annotated[bool, typer.Option("--check", help="Exit with status 1 unless the database is at head.")] = False,
) -> None:
    """Print the database's schema revision (stdout) and whether it is at head (stderr).

    Example: sourcecheck db current --check
    """
    state = on_database(schema_state)
    typer.echo(describe(state.current))
    if state.up_to_date:
        typer.echo(f"at head ({describe(state.heads)})", err=True)
        return
    if state.unknown:
        typer.echo(f"unknown to this version, whose head is {describe(state.heads)}", err=True)
    else:
        typer.echo(f"behind head {describe(state.heads)}: run `sourcecheck db upgrade`", err=True)
    if check:
        raise typer.Exit(EXIT_FAILED)


@app.command("revision")
def db_revision(
    message: Annotated[str, typer.Option("-m", "--message", help="What the migration changes.")],
    empty: Annotated[bool, typer.Option("--empty", help="An empty migration to fill by hand.")] = False,
) -> None:
    """For developers: write the next migration, generated from the model changes.

    The file goes into api/migrations/versions; its operations are the difference between
    api/models.py and the development database (upgraded to head first). Review it, then
    commit it with the model change.

    Example: sourcecheck db revision -m "add source.description"
    """
    open_database()  # development: the database at head first, so the difference is the model change only
    typer.echo(new_revision(message, autogenerate=not empty))
