"""Fixture ``postgres_server``: a throwaway PostgreSQL cluster with real passwords.

The machine's own server on 5432 trusts every local connection, so it cannot tell a
wrong password from a right one. This cluster is made fresh once per test session in
a temp dir, listens on 127.0.0.1 on a free port only, and asks for a scram-sha-256
password on every TCP connection (its unix socket, in the temp dir, trusts the
``postgres`` OS user only). It has no TLS: the server answers an SSLRequest with 'N'.

What is in it::

    role reader      LOGIN, password ``server.password``
    role app_owner   owns database app and schema locked
    role outsider    LOGIN, password ``server.outsider_password``, no CONNECT on app
    database app     CONNECT revoked from PUBLIC, granted to reader
      schema public  reader has USAGE (the default); table public.items (id int), reader may SELECT
      schema locked  reader has no USAGE

Use it like::

    def test_something(postgres_server):
        config = get_connector("postgres").parse_config(postgres_server.config())
        ...
        psycopg.connect(postgres_server.dsn(superuser=True))  # to change things
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.servers import free_port


@dataclass(frozen=True)
class PostgresServer:
    """How to reach the throwaway cluster (see the module docstring for its contents)."""

    host: str
    port: int
    database: str  # "app"
    user: str  # "reader": may connect to app and use schema public
    password: str  # reader's password (random per session)
    superuser: str  # "postgres"
    superuser_password: str
    locked_schema: str  # "locked": exists in app, reader has no USAGE on it
    outsider: str  # "outsider": valid login, but no CONNECT privilege on app
    outsider_password: str

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A ``postgres`` connector configuration (plain JSON) that succeeds; override any field."""
        return {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "user": self.user,
            "password": self.password,
            **overrides,
        }

    def dsn(self, *, superuser: bool = False, database: str | None = None) -> str:
        """A libpq connection string for reader (or the superuser) to ``database`` (default app)."""
        user, password = (self.superuser, self.superuser_password) if superuser else (self.user, self.password)
        return make_conninfo(
            host=self.host, port=self.port, dbname=database or self.database, user=user, password=password, sslmode="disable"
        )


def _bindir() -> str:
    """The directory of initdb/pg_ctl: ``pg_config --bindir``, else the newest /usr/lib/postgresql/*/bin."""
    try:
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if os.path.exists(os.path.join(found, "initdb")):
            return found
    except (OSError, subprocess.CalledProcessError):
        pass
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    if not candidates:
        pytest.fail("PostgreSQL server binaries not found (no pg_config, no /usr/lib/postgresql/*/bin/initdb)")
    return os.path.dirname(candidates[-1])


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: drop to the postgres OS user when we are root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _run(args: list[str], what: str, log: str | None = None) -> None:
    done = subprocess.run(_as_postgres(args), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        tail = ""
        if log and os.path.exists(log):
            with open(log) as f:
                tail = f.read()[-4000:]
        pytest.fail(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{tail}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster with password authentication, stopped and deleted at the end."""
    bindir = _bindir()
    root = tempfile.mkdtemp(prefix="sourcecheck-pg-")
    data, log, pwfile = os.path.join(root, "data"), os.path.join(root, "server.log"), os.path.join(root, "pw")
    server = PostgresServer(
        host="127.0.0.1",
        port=free_port(),
        database="app",
        user="reader",
        password="rd-" + secrets.token_hex(8),
        superuser="postgres",
        superuser_password="su-" + secrets.token_hex(8),
        locked_schema="locked",
        outsider="outsider",
        outsider_password="out-" + secrets.token_hex(8),
    )
    with open(pwfile, "w") as f:
        f.write(server.superuser_password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    os.chmod(root, 0o700)
    started = False
    try:
        _run(
            [
                f"{bindir}/initdb", "-D", data, "-U", "postgres", f"--pwfile={pwfile}", "-E", "UTF8",
                "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions",
            ],
            "initdb",
        )  # fmt: skip
        os.unlink(pwfile)
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            # Loopback only, our own socket dir (no clash with the machine's server), and
            # no durability: the cluster is thrown away, speed is all that matters.
            f.write(
                f"listen_addresses = '127.0.0.1'\nport = {server.port}\nunix_socket_directories = '{root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nlogging_collector = off\n"
                "password_encryption = 'scram-sha-256'\nssl = off\n"
            )
        started = True  # before the call: a start that times out may still leave a server running
        _run([f"{bindir}/pg_ctl", "start", "-D", data, "-l", log, "-w", "-t", "60"], "pg_ctl start", log)
        with psycopg.connect(server.dsn(superuser=True, database="postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE reader LOGIN PASSWORD '{server.password}'")
            conn.execute(f"CREATE ROLE outsider LOGIN PASSWORD '{server.outsider_password}'")
            conn.execute("CREATE ROLE app_owner NOLOGIN")
            conn.execute("CREATE DATABASE app OWNER app_owner")
            conn.execute("REVOKE CONNECT ON DATABASE app FROM PUBLIC")
            conn.execute("GRANT CONNECT ON DATABASE app TO reader")
        with psycopg.connect(server.dsn(superuser=True), autocommit=True) as conn:
            conn.execute("CREATE SCHEMA locked AUTHORIZATION app_owner")
            conn.execute("CREATE TABLE locked.secrets (id int)")
            conn.execute("CREATE TABLE public.items (id int)")
            conn.execute("INSERT INTO public.items VALUES (1), (2)")
            conn.execute("GRANT SELECT ON public.items TO reader")
        yield server
    finally:
        if started:
            subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "stop", "-D", data, "-m", "immediate", "-w"]), capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
