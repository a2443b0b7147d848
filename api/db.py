"""The metadata database: engine, sessions, schema creation."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import Session, SQLModel, create_engine

from api import models  # noqa: F401  (registers the tables)
from api.settings import get_api_settings


@cache
def get_engine() -> Engine:
    url = get_api_settings().sqlalchemy_url()
    if url.startswith("sqlite"):
        # One connection per request thread, kept open: opening SQLite connections under
        # load (and closing the overflow) costs more than every query of a request.
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 15}, pool_size=40, max_overflow=0, pool_timeout=10
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=20)


def init_db() -> None:
    """Create the tables that do not exist yet (and put SQLite in WAL mode, once: it persists)."""
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    SQLModel.metadata.create_all(engine)



def get_session() -> Iterator[Session]:
    with Session(get_engine()) as session:
        yield session
