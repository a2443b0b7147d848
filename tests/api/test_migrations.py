"""Migrations of the metadata database (api/migrations/, api/db.py, ``sourcecheck db``).

Against SQLite files and a real PostgreSQL (a fresh database per test in the throwaway
cluster of tests/servers/postgres.py): a fresh database is upgraded to head; the
development profile upgrades on startup; production refuses a schema behind head (the
API under uvicorn and the CLI both stop with the message); head is exactly what the
models define (Alembic's autogenerate finds no difference, and the DDL equals what
``create_all`` makes); a database made by ``create_all`` before migrations is adopted.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from api.db import (
    BASELINE_TABLES,
    MIGRATIONS,
    alembic_config,
    ensure_schema,
    head_revisions,
    new_revision,
    schema_state,
    upgrade_schema,
)
from api.errors import SchemaNotCurrent
from tests.servers import free_port
from tests.servers.postgres import PostgresServer, fresh_database

BIN = Path(sys.executable).parent
TABLES = {
    "organization",
    "apikey",
    "workspace",
    "source",
    "test_record",
    "webhook",
    "webhook_event",
    "webhook_delivery",
}
HEAD = "0003"  # the newest revision
NEXT = f"{int(HEAD) + 1:04d}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'metadata.db'}"


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlite_url)
    yield engine
    engine.dispose()


def _fresh_postgres(server: PostgresServer) -> Iterator[tuple[Engine, str]]:
    with fresh_database(server, "sc_migrations_") as url:
        engine = create_engine(url)
        try:
            yield engine, url
        finally:
            engine.dispose()


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> Iterator[tuple[Engine, str]]:
    """A fresh, empty PostgreSQL database: (engine, its URL)."""
    yield from _fresh_postgres(postgres_server)


@pytest.fixture
def postgres_twin(postgres_server: PostgresServer) -> Iterator[tuple[Engine, str]]:
    """A second fresh database, for comparisons."""
    yield from _fresh_postgres(postgres_server)


def _env(tmp_path: Path, database_url: str, profile: str = "production") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCECHECK_")}
    env.update(
        SOURCECHECK_PROFILE=profile,
        SOURCECHECK_DATA_DIR=str(tmp_path / "data"),
        SOURCECHECK_DATABASE_URL=database_url,
        SOURCECHECK_SECRET_KEYS=Fernet.generate_key().decode(),
    )
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "sourcecheck"), *args], env=env, capture_output=True, text=True, timeout=120)


def _diff(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, SQLModel.metadata))


def _shape(engine: Engine) -> dict[str, Any]:
    """Every model table's columns (name, type, nullable, default), keys and indexes, as the database reports them."""
    inspector = inspect(engine)
    shape: dict[str, Any] = {}
    for table in sorted(TABLES):
        shape[table] = {
            "columns": [
                (c["name"], c["type"].compile(engine.dialect), c["nullable"], c.get("default"))
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
            ),
        }
    return shape


def _create_baseline_tables(engine: Engine) -> None:
    """The tables ``create_all`` made before there were migrations (the models of then)."""
    SQLModel.metadata.create_all(engine, tables=[SQLModel.metadata.tables[name] for name in sorted(BASELINE_TABLES)])


def _assert_behind_message(message: str, found: str) -> None:
    assert f"the database is at revision {found}" in message
    assert f"needs revision {head_revisions()[0]} (head)" in message
    assert "`sourcecheck db upgrade`" in message


# --- SQLite ------------------------------------------------------------------------------


def test_a_fresh_sqlite_file_is_upgraded_to_head_with_every_table(sqlite_engine: Engine) -> None:
    assert schema_state(sqlite_engine).current == ()
    before, after = upgrade_schema(sqlite_engine)
    assert before == () and after == head_revisions() == (HEAD,)
    assert set(inspect(sqlite_engine).get_table_names()) == TABLES | {"alembic_version"}
    state = schema_state(sqlite_engine)
    assert state.up_to_date and state.current == head_revisions()
    assert upgrade_schema(sqlite_engine) == (after, after)  # again: nothing to do


def test_head_on_sqlite_is_exactly_what_the_models_define(sqlite_engine: Engine, tmp_path: Path) -> None:
    upgrade_schema(sqlite_engine)
    assert _diff(sqlite_engine) == []
    made = create_engine(f"sqlite:///{tmp_path / 'create_all.db'}")
    SQLModel.metadata.create_all(made)

    def ddl(engine: Engine) -> dict[str, str]:
        with engine.connect() as c:
            rows = c.execute(
                text("SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'alembic%' AND sql IS NOT NULL")
            )
            return {name: " ".join(sql.split()) for name, sql in rows}

    assert ddl(sqlite_engine) == ddl(made)
    assert _shape(sqlite_engine) == _shape(made)
    made.dispose()


def test_the_development_profile_upgrades_on_startup(sqlite_engine: Engine) -> None:
    ensure_schema(sqlite_engine, "development")
    assert schema_state(sqlite_engine).up_to_date


def test_production_refuses_a_schema_behind_head_and_changes_nothing(sqlite_engine: Engine) -> None:
    with pytest.raises(SchemaNotCurrent) as refused:
        ensure_schema(sqlite_engine, "production")
    _assert_behind_message(refused.value.message, "none (an empty database)")
    assert inspect(sqlite_engine).get_table_names() == []


def test_tables_from_before_migrations_are_adopted_with_their_rows(sqlite_engine: Engine) -> None:
    _create_baseline_tables(sqlite_engine)  # what init_db did before migrations
    with sqlite_engine.begin() as c:
        c.execute(
            text("INSERT INTO organization (id, name, created_at) VALUES ('org_old', 'Old', '2026-01-01 00:00:00')")
        )
    state = schema_state(sqlite_engine)
    assert state.unversioned and not state.up_to_date
    with pytest.raises(SchemaNotCurrent) as refused:
        ensure_schema(sqlite_engine, "production")
    _assert_behind_message(refused.value.message, "none (tables from before migrations")
    ensure_schema(sqlite_engine, "development")  # stamps the baseline, then upgrades
    assert schema_state(sqlite_engine).up_to_date
    with sqlite_engine.connect() as c:
        assert c.execute(text("SELECT name FROM organization")).scalar_one() == "Old"


def test_a_revision_this_version_does_not_know_is_refused_in_every_profile(sqlite_engine: Engine) -> None:
    upgrade_schema(sqlite_engine)
    with sqlite_engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    for profile in ("development", "production"):
        with pytest.raises(SchemaNotCurrent, match="revision 9999, which this version of sourcecheck does not know"):
            ensure_schema(sqlite_engine, profile)


def test_downgrade_to_base_removes_every_table(sqlite_engine: Engine) -> None:
    upgrade_schema(sqlite_engine)
    with sqlite_engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert set(inspect(sqlite_engine).get_table_names()) == {"alembic_version"}
    assert schema_state(sqlite_engine).current == ()


def test_the_app_and_the_cli_refuse_in_production_until_db_upgrade(sqlite_url: str, tmp_path: Path) -> None:
    env = _env(tmp_path, sqlite_url)
    api = subprocess.run(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert api.returncode != 0
    _assert_behind_message(api.stdout + api.stderr, "none (an empty database)")
    assert "Application startup failed" in api.stderr

    org = _cli(env, "org", "create", "--id", "org_mig")
    assert org.returncode == 1
    _assert_behind_message(org.stderr, "none (an empty database)")
    assert "Traceback" not in org.stderr  # one clear message, not a stack

    current = _cli(env, "db", "current", "--check")
    assert (current.returncode, current.stdout) == (1, "none\n")
    assert "sourcecheck db upgrade" in current.stderr
    sql = _cli(env, "db", "upgrade", "--sql")
    assert sql.returncode == 0 and "CREATE TABLE organization" in sql.stdout
    assert _cli(env, "db", "current").stdout == "none\n"  # --sql ran nothing

    upgrade = _cli(env, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout == f"database upgraded from revision none to {HEAD} (head)\n"
    assert _cli(env, "db", "upgrade").stdout == f"database already at revision {HEAD} (head)\n"
    current = _cli(env, "db", "current", "--check")
    assert (current.returncode, current.stdout) == (0, f"{HEAD}\n")
    org = _cli(env, "org", "create", "--id", "org_mig")
    assert (org.returncode, org.stdout) == (0, "org_mig\n"), org.stderr


def test_a_fresh_development_machine_just_works(tmp_path: Path) -> None:
    """`make run` on a fresh machine: no database yet, no migration command run."""
    env = _env(tmp_path, "", profile="development")
    del env["SOURCECHECK_DATABASE_URL"]  # the default SQLite file in the data dir
    done = _cli(env, "org", "create", "--id", "org_dev")
    assert (done.returncode, done.stdout) == (0, "org_dev\n"), done.stderr
    assert _cli(env, "db", "current", "--check").returncode == 0
    assert (tmp_path / "data" / "sourcecheck.db").exists()


def test_concurrent_upgrades_of_one_sqlite_file_both_succeed(
    sqlite_url: str, sqlite_engine: Engine, tmp_path: Path
) -> None:
    env = _env(tmp_path, sqlite_url)
    runs = [
        subprocess.Popen(
            [str(BIN / "sourcecheck"), "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert schema_state(sqlite_engine).up_to_date


def test_new_revision_finds_no_difference_when_the_models_match(sqlite_engine: Engine, tmp_path: Path) -> None:
    """`sourcecheck db revision`: numbered after head, and empty while head matches the models."""
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    upgrade_schema(sqlite_engine)
    path = new_revision("nothing changed", engine=sqlite_engine, script_location=scripts)
    assert path.parent == scripts / "versions" and path.name.startswith(f"{NEXT}_")
    source = path.read_text()
    assert f"revision: str = '{NEXT}'" in source and f"down_revision: str | Sequence[str] | None = '{HEAD}'" in source
    assert "op." not in source  # no operations: head already is the models
    compile(source, str(path), "exec")


# --- PostgreSQL --------------------------------------------------------------------------


def test_a_fresh_postgres_database_is_upgraded_to_head(postgres: tuple[Engine, str]) -> None:
    engine, _ = postgres
    before, after = upgrade_schema(engine)
    assert before == () and after == head_revisions()
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert upgrade_schema(engine) == (after, after)


def test_head_on_postgres_is_exactly_what_the_models_define(
    postgres: tuple[Engine, str], postgres_twin: tuple[Engine, str]
) -> None:
    migrated, made = postgres[0], postgres_twin[0]
    upgrade_schema(migrated)
    assert _diff(migrated) == []
    SQLModel.metadata.create_all(made)
    assert _shape(migrated) == _shape(made)
    columns = {c["name"]: c["type"].compile(migrated.dialect) for c in inspect(migrated).get_columns("source")}
    assert columns["created_at"] == "TIMESTAMP WITH TIME ZONE" and columns["name"] == "VARCHAR"


def test_production_refuses_a_postgres_schema_behind_head(postgres: tuple[Engine, str], tmp_path: Path) -> None:
    engine, url = postgres
    with pytest.raises(SchemaNotCurrent) as refused:
        ensure_schema(engine, "production")
    _assert_behind_message(refused.value.message, "none (an empty database)")
    assert inspect(engine).get_table_names() == []
    env = _env(tmp_path, url)
    assert _cli(env, "org", "create").returncode == 1
    assert _cli(env, "db", "upgrade").returncode == 0
    done = _cli(env, "org", "create", "--id", "org_pg")
    assert (done.returncode, done.stdout) == (0, "org_pg\n"), done.stderr


def test_concurrent_postgres_upgrades_are_serialized(postgres: tuple[Engine, str], tmp_path: Path) -> None:
    engine, url = postgres
    env = _env(tmp_path, url)
    runs = [
        subprocess.Popen(
            [str(BIN / "sourcecheck"), "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    assert sorted(out for out, _ in outputs) == [
        f"database already at revision {HEAD} (head)\n",
        f"database already at revision {HEAD} (head)\n",
        f"database upgraded from revision none to {HEAD} (head)\n",
    ]
    assert schema_state(engine).up_to_date


def test_postgres_tables_from_before_migrations_are_adopted(postgres: tuple[Engine, str]) -> None:
    engine, _ = postgres
    _create_baseline_tables(engine)
    assert schema_state(engine).unversioned
    assert upgrade_schema(engine) == ((), head_revisions())
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}


def test_db_commands_answer_an_unreachable_database_in_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://sourcecheck:pw-{secrets.token_hex(8)}@127.0.0.1:{free_port()}/sourcecheck"
    env = _env(tmp_path, url)
    for args in (("db", "upgrade"), ("db", "current")):
        done = _cli(env, *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: database: ") and done.stderr.count("\n") == 1, done.stderr
        assert url.split(":")[2].split("@")[0] not in done.stderr + done.stdout


# --- 0002: the test history ----------------------------------------------------------------


def _history_up_and_down(engine: Engine) -> None:
    """0002 makes test_record (deleted with its source), and going down to 0001 removes only it."""
    upgrade_schema(engine)
    with engine.begin() as c:
        c.execute(text("INSERT INTO organization (id, name, created_at) VALUES ('org_h', 'H', CURRENT_TIMESTAMP)"))
        c.execute(
            text(
                "INSERT INTO workspace (id, organization_id, name, is_default, created_at) "
                "VALUES ('ws_h', 'org_h', 'default', true, CURRENT_TIMESTAMP)"
            )
        )
        for source in ("src_gone", "src_kept"):
            c.execute(
                text(
                    "INSERT INTO source (id, organization_id, workspace_id, source_definition_id, name, "
                    "configuration_encrypted, created_at, updated_at) VALUES "
                    "(:source, 'org_h', 'ws_h', 'postgres', 'n', 'x', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"source": source},
            )
            c.execute(
                text(
                    "INSERT INTO test_record (organization_id, source_id, job_id, source_definition_id, status, "
                    "warnings, steps, ended_at, created_at, status_changed) VALUES "
                    "('org_h', :source, :job, 'postgres', 'succeeded', '[]', '[]', "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, false)"
                ),
                {"source": source, "job": f"job_{source}"},
            )
    duplicate = (
        "INSERT INTO test_record (organization_id, source_id, job_id, source_definition_id, status, warnings, "
        "steps, ended_at, created_at, status_changed) VALUES ('org_h', 'src_kept', 'job_src_kept', 'postgres', "
        "'failed', '[]', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, false)"
    )
    with pytest.raises(IntegrityError), engine.begin() as c:  # one row per job
        c.execute(text(duplicate))
    with engine.begin() as c:
        if c.dialect.name == "sqlite":
            c.exec_driver_sql("PRAGMA foreign_keys=ON")  # as api.db's engine sets on every connection
        c.execute(text("DELETE FROM source WHERE id = 'src_gone'"))
    with engine.connect() as c:
        assert c.execute(text("SELECT source_id FROM test_record")).scalars().all() == ["src_kept"]

    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0001")
    later = {"test_record", "webhook", "webhook_event", "webhook_delivery"}  # 0002's and 0003's
    assert set(inspect(engine).get_table_names()) == TABLES - later | {"alembic_version"}
    assert schema_state(engine).current == ("0001",)
    with engine.connect() as c:
        assert c.execute(text("SELECT id FROM source")).scalars().all() == ["src_kept"]
    assert upgrade_schema(engine) == (("0001",), (HEAD,))


def test_0002_adds_the_test_history_and_goes_down_again_on_sqlite(sqlite_engine: Engine) -> None:
    _history_up_and_down(sqlite_engine)


def test_0002_adds_the_test_history_and_goes_down_again_on_postgres(postgres: tuple[Engine, str]) -> None:
    _history_up_and_down(postgres[0])
