"""Alembic's entry point: runs the migrations against the app's metadata database.

``api.db`` hands over an open connection (``config.attributes["connection"]``), so every
migration runs on the caller's connection and inside its transaction and lock. Without
one (an ``alembic`` command run by hand), the engine of ``api.db`` is used: the URL of
``SOURCECHECK_DATABASE_URL``, or the development SQLite file.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from api import models  # noqa: F401  (registers the tables in SQLModel.metadata)
from api.settings import get_api_settings

target_metadata = SQLModel.metadata


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        **kwargs,
    )


def run_offline() -> None:
    """``sourcecheck db upgrade --sql``: print the SQL instead of running it."""
    url = get_api_settings().sqlalchemy_url()
    _configure(
        url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, render_as_batch=url.startswith("sqlite")
    )
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    # SQLite alters a table by copying it (batch mode): ALTER TABLE there is too limited.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    from api.db import get_engine

    with get_engine().begin() as connection:
        run_on(connection)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
