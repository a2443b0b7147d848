"""Fixtures ``postgres_server`` and ``postgres_tls_server``: throwaway PostgreSQL clusters with real passwords.

The machine's own server on 5432 trusts every local connection, so it cannot tell a
wrong password from a right one. These clusters are made fresh once per test session
(only if a test asks for them) in a temp dir, listen on 127.0.0.1 on a free port only,
and ask for a scram-sha-256 password on every TCP connection (the unix socket, in the
temp dir, trusts the ``postgres`` OS user only). Both are stopped and deleted at the end.

``postgres_server`` has no TLS: it answers an SSLRequest with 'N'.
``postgres_tls_server`` has TLS on, with a certificate for ``localhost`` and ``127.0.0.1``
signed by a fresh CA whose PEM is ``server.ca_cert`` (put it in ``ssl_root_cert``).

What is in each::

    role reader      LOGIN, password ``server.password``
    role app_owner   NOLOGIN, owns database app and schema locked
    role outsider    LOGIN, password ``server.outsider_password``, no CONNECT on app
    database app     CONNECT revoked from PUBLIC, granted to reader
      schema public  reader has USAGE (the default); table public.items (id int, 2 rows), reader may SELECT
      schema locked  reader has no USAGE; table locked.secrets (id int)

Use it like::

    def test_something(postgres_server):
        config = get_connector("postgres").parse_config(postgres_server.config())
        ...
        psycopg.connect(postgres_server.dsn(superuser=True))  # to change things (reset what you change)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import ipaddress
import os
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg.conninfo import make_conninfo
from sqlalchemy import URL

from tests.servers import free_port


@dataclass(frozen=True)
class PostgresServer:
    """How to reach a throwaway cluster (see the module docstring for its contents)."""

    host: str  # "127.0.0.1"
    port: int
    database: str  # "app"
    user: str  # "reader": may connect to app and use schema public
    password: str  # reader's password (random per session)
    superuser: str  # "postgres"
    superuser_password: str
    locked_schema: str  # "locked": exists in app, reader has no USAGE on it
    outsider: str  # "outsider": valid login, but no CONNECT privilege on app
    outsider_password: str
    ca_cert: str | None = None  # PEM of the CA of the server's certificate; None: no TLS

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
            host=self.host,
            port=self.port,
            dbname=database or self.database,
            user=user,
            password=password,
            sslmode="prefer",
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


def _run(args: list[str], what: str, cwd: str, log: str | None = None) -> None:
    # cwd: the postgres user may not be allowed into the directory pytest runs in.
    done = subprocess.run(_as_postgres(args), capture_output=True, text=True, timeout=120, cwd=cwd)
    if done.returncode != 0:
        tail = ""
        if log and os.path.exists(log):
            with open(log) as f:
                tail = f.read()[-4000:]
        pytest.fail(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{tail}")


def _write_owned(path: str, content: bytes) -> None:
    """Write a file only its owner may read, owned by postgres when we are root (the server insists on it for keys)."""
    with open(path, "wb") as f:
        f.write(content)
    os.chmod(path, 0o600)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def _certificates() -> tuple[bytes, bytes, str]:
    """A server certificate for localhost/127.0.0.1, its key, and the PEM of the CA that signed it."""
    now = dt.datetime.now(dt.UTC)

    def build(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None, signer: Any) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
        )
        if issuer is None:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        else:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("sourcecheck test CA", ca_key, None, ca_key)
    cert = build("localhost", key, ca.subject, ca_key)
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(pem), key_pem, ca.public_bytes(pem).decode()


@contextmanager
def _cluster(*, tls: bool) -> Iterator[PostgresServer]:
    bindir = _bindir()
    root = tempfile.mkdtemp(prefix="sourcecheck-pg-")
    data, log, pwfile = os.path.join(root, "data"), os.path.join(root, "server.log"), os.path.join(root, "pw")
    cert, key, ca = _certificates() if tls else (b"", b"", None)
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
        ca_cert=ca,
    )
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    os.chmod(root, 0o700)
    _write_owned(pwfile, server.superuser_password.encode() + b"\n")
    started = False
    try:
        _run(
            [
                f"{bindir}/initdb", "-D", data, "-U", "postgres", f"--pwfile={pwfile}", "-E", "UTF8",
                "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions",
            ],
            "initdb",
            root,
        )  # fmt: skip
        os.unlink(pwfile)
        settings = (
            # Loopback only, our own socket dir (no clash with the machine's server), and
            # no durability: the cluster is thrown away, speed is all that matters.
            f"listen_addresses = '127.0.0.1'\nport = {server.port}\nunix_socket_directories = '{root}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "password_encryption = 'scram-sha-256'\n"
        )
        if tls:
            _write_owned(os.path.join(data, "server.crt"), cert)
            _write_owned(os.path.join(data, "server.key"), key)
            settings += "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
        else:
            settings += "ssl = off\n"
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(settings)
        started = True  # before the call: a start that times out may still leave a server running
        _run([f"{bindir}/pg_ctl", "start", "-D", data, "-l", log, "-w", "-t", "60"], "pg_ctl start", root, log)
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
            subprocess.run(
                _as_postgres([f"{bindir}/pg_ctl", "stop", "-D", data, "-m", "immediate", "-w"]),
                capture_output=True,
                timeout=60,
                cwd=root,
            )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(server: PostgresServer, prefix: str = "sc_") -> Iterator[str]:
    """A new, empty database of ``server`` for the block: its SQLAlchemy URL (psycopg, as the
    superuser). Dropped afterwards, connections or not."""
    name = prefix + secrets.token_hex(4)
    admin = server.dsn(superuser=True, database="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = URL.create(
        "postgresql+psycopg",
        username=server.superuser,
        password=server.superuser_password,
        host=server.host,
        port=server.port,
        database=name,
    )
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster without TLS, with password authentication (see the module docstring)."""
    with _cluster(tls=False) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_tls_server() -> Iterator[PostgresServer]:
    """Like ``postgres_server`` with TLS on; ``ca_cert`` is the PEM that verifies it (localhost, 127.0.0.1)."""
    with _cluster(tls=True) as server:
        yield server


class CleartextPasswordListener:
    """A PostgreSQL-speaking listener on 127.0.0.1 that asks every client for its password in
    clear (AuthenticationCleartextPassword, ``R`` code 3) and records what it receives:
    the attacker's server a stored source must never be pointed at with its password."""

    _SSL_REQUEST = 80877103

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.received = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            with self._lock:
                self.received += chunk
            data += chunk
        return data

    def _startup(self, conn: socket.socket) -> None:
        (length,) = struct.unpack("!I", self._read(conn, 4))
        body = self._read(conn, length - 4)
        if struct.unpack("!I", body[:4])[0] == self._SSL_REQUEST:
            conn.sendall(b"N")  # no TLS here: the client goes on in clear (sslmode prefer)
            self._startup(conn)

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ConnectionError, struct.error):
            conn.settimeout(10)
            self._startup(conn)
            conn.sendall(b"R" + struct.pack("!II", 8, 3))
            kind, length = struct.unpack("!cI", self._read(conn, 5))
            self._read(conn, length - 4)  # the PasswordMessage, recorded
            error = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0"
            conn.sendall(b"E" + struct.pack("!I", len(error) + 4) + error)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> CleartextPasswordListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
