"""The metadata database: engine, sessions, and its schema (Alembic migrations in api/migrations/).

``init_db()`` runs before anything uses the database (the API's startup, every CLI
command that uses it, ``sourcecheck run``):

- development profile: the schema is upgraded to head on the spot, so a fresh machine
  (or a database from before an update) just works;
- production: nothing is changed; a database whose schema is not at head raises
  ``SchemaNotCurrent`` (api.errors), whose message names both revisions and
  ``sourcecheck db upgrade``: the API does not start, the CLI exits 1. That command is
  run once per release (the one-shot ``migrate`` service of docker-compose.yml, the
  init container of deploy/kubernetes/api.yaml).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event, inspect
from sqlmodel import Session, create_engine
from starlette.concurrency import run_in_threadpool

from api import models  # noqa: F401  (registers the tables)
from api.errors import SchemaNotCurrent
from api.settings import get_api_settings

log = logging.getLogger("sourcecheck.db")

MIGRATIONS = Path(__file__).with_name("migrations")
UPGRADE_COMMAND = "sourcecheck db upgrade"
# The first revision: exactly the tables that `create_all` made before there were
# migrations. A database that has them and no alembic_version is adopted at this revision.
BASELINE = "0001"
BASELINE_TABLES = frozenset({"organization", "apikey", "workspace", "source"})
# Serializes concurrent upgrades on PostgreSQL (pg_advisory_xact_lock): any constant.
PG_MIGRATION_LOCK = 0x5C_0DB_0001


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


P = ParamSpec("P")
T = TypeVar("T")


async def run_db(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``function`` (which uses the database) from a request handler. On SQLite, a
    file on this machine in WAL mode (reads never wait for a writer), in the event loop's
    own thread: a hop to the threadpool costs more than the query. On a database server,
    in the threadpool: a slow server stalls requests, not the event loop."""
    if get_engine().dialect.name == "sqlite":
        return function(*args, **kwargs)
    return await run_in_threadpool(function, *args, **kwargs)


def init_db() -> None:
    """Make sure the schema is at head before anything uses the database (see the module docstring)."""
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:  # WAL once: it persists in the file
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    ensure_schema(engine, get_api_settings().profile)


def get_session() -> Iterator[Session]:
    with Session(get_engine()) as session:
        yield session


# --- the schema -------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None, script_location: Path = MIGRATIONS) -> Config:
    """Alembic's configuration, built here (there is no alembic.ini): the migrations of
    ``script_location``, run on ``connection`` (env.py uses it) when given."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    return config


@cache
def _scripts(script_location: Path = MIGRATIONS) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(script_location=script_location))


def head_revisions() -> tuple[str, ...]:
    """The revision(s) this version of the code needs."""
    return tuple(sorted(_scripts().get_heads()))


@dataclass(frozen=True)
class SchemaState:
    current: tuple[str, ...]  # the database's revision(s); () when it has none
    heads: tuple[str, ...]  # what the code needs
    unknown: tuple[str, ...]  # current revisions this code does not know (a newer version migrated it)
    tables: frozenset[str]

    @property
    def up_to_date(self) -> bool:
        return set(self.current) == set(self.heads)

    @property
    def unversioned(self) -> bool:
        """Tables made by ``create_all`` before there were migrations (no revision recorded)."""
        return not self.current and BASELINE_TABLES <= self.tables


def describe(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) if revisions else "none"


def schema_state(engine: Engine | None = None) -> SchemaState:
    engine = engine or get_engine()
    with engine.connect() as connection:
        current = tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
        tables = frozenset(inspect(connection).get_table_names())
    known = {script.revision for script in _scripts().walk_revisions()}
    return SchemaState(current, head_revisions(), tuple(r for r in current if r not in known), tables)


def ensure_schema(engine: Engine, profile: str) -> None:
    """Upgrade (development) or check (production) the schema; raises SchemaNotCurrent."""
    state = schema_state(engine)
    if state.up_to_date:
        return
    if state.unknown:
        raise SchemaNotCurrent(
            f"The metadata database is at revision {describe(state.current)}, which this version of sourcecheck "
            f"does not know (head here: {describe(state.heads)}); a newer version has migrated it. "
            "Run that version, or restore the database from before its migration."
        )
    if profile == "development":
        before, after = upgrade_schema(engine)
        log.info("database schema upgraded from %s to %s", describe(before), describe(after))
        return
    found = describe(state.current)
    if state.unversioned:
        found += " (tables from before migrations; the upgrade adopts them)"
    elif not state.current:
        found += " (an empty database)"
    raise SchemaNotCurrent(
        f"The metadata database schema is behind this version of sourcecheck: the database is at revision "
        f"{found}, this version needs revision {describe(state.heads)} (head). In the production profile "
        f"migrations never run on startup: run `{UPGRADE_COMMAND}` once (same SOURCECHECK_DATABASE_URL), "
        "then start again."
    )


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock beside a SQLite file, so that processes starting together
    (the API and a CLI command in development) do not both create the tables."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    import fcntl

    with open(f"{database}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade_schema(engine: Engine | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Migrate the database to head; returns its revisions (before, after).

    Safe to run again and from several processes at once: one transaction under a lock
    (PostgreSQL: an advisory lock, so all of it or nothing; SQLite: a lock file). A
    database made before migrations (the tables, no revision) is first stamped BASELINE.
    """
    engine = engine or get_engine()
    with _file_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        migration = MigrationContext.configure(connection)
        before = tuple(sorted(migration.get_current_heads()))
        tables = frozenset(inspect(connection).get_table_names())
        if not before and BASELINE_TABLES <= tables:
            log.info("adopting tables made before migrations as revision %s", BASELINE)
            command.stamp(alembic_config(connection), BASELINE)
        command.upgrade(alembic_config(connection), "head")
        after = tuple(sorted(migration.get_current_heads()))
    return before, after


def upgrade_sql(engine: Engine | None = None) -> None:
    """Print (stdout) the SQL that ``upgrade_schema`` would run on this database, without running it."""
    state = schema_state(engine)
    if state.unversioned:
        start = BASELINE
    elif len(state.current) == 1:
        start = state.current[0]
    else:
        start = None
    command.upgrade(alembic_config(), f"{start}:head" if start else "head", sql=True)


def new_revision(
    message: str, *, autogenerate: bool = True, engine: Engine | None = None, script_location: Path = MIGRATIONS
) -> Path:
    """Write the next migration (0002_..., 0003_...) into ``script_location``/versions and
    return its path. With ``autogenerate`` its operations are the difference between the
    models (api/models.py) and the database, which must be at head."""
    engine = engine or get_engine()
    heads = ScriptDirectory.from_config(alembic_config(script_location=script_location)).get_heads()
    numbers = [int(h) for h in heads if h.isdigit()]
    rev_id = f"{max(numbers, default=0) + 1:04d}"
    with engine.connect() as connection:
        script = command.revision(
            alembic_config(connection, script_location), message=message, autogenerate=autogenerate, rev_id=rev_id
        )
    assert script is not None and not isinstance(script, list)
    return Path(script.path)
