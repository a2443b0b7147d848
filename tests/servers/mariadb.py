"""Fixture ``mariadb_server``: a real MariaDB server that really checks passwords.

Usage::

    def test_something(mariadb_server: MariaDB) -> None:
        config = get_connector("mysql").parse_config(mariadb_server.config())

What it gives (a frozen :class:`MariaDB`, the same for the whole session):

- ``host``/``port``: where it listens over TCP (``127.0.0.1``).
- ``user``/``password``: an account that may only ``SELECT`` on ``database``.
- ``database``: holds the table ``table`` with three rows.
- ``forbidden_database``: exists, holds a table, and ``user`` has no privilege on it.
- ``admin_user``/``admin_password``: an account with every privilege, over TCP too.
- ``ca_pem``: the CA that signed the server's TLS certificate, or None when the server
  has no TLS. The certificate names ``localhost`` only, not ``127.0.0.1``, so a host
  name check can be seen to pass (``localhost``) and to fail (``127.0.0.1``).
- ``throwaway``: True for a private server, False for the machine's own.
- ``config(**overrides)``: the ``mysql`` connector configuration for ``user``.

How: a throwaway ``mariadbd`` with its own data directory in a temp dir, on a free port
(about 1.5 s; it has TLS). If that cannot start, the machine's own MariaDB (root over its
unix socket, or root with an empty password on 127.0.0.1:3306) gets uniquely named users
and databases, dropped at the end; that server has no TLS (``ca_pem`` is None). Set
``SOURCECHECK_TEST_MARIADB=system`` to skip the throwaway server. Without either, the
tests that use the fixture fail (a missing server is a broken setup, not a reason to skip).
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers import free_port

START_TIMEOUT = 10.0
SYSTEM_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/tmp/mysql.sock")


@dataclass(frozen=True)
class MariaDB:
    """A running MariaDB and the accounts and databases made for the tests (see module doc)."""

    host: str
    port: int
    user: str
    password: str
    database: str
    table: str
    forbidden_database: str
    admin_user: str
    admin_password: str
    ca_pem: str | None
    throwaway: bool

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The ``mysql`` connector configuration for the read-only user, with ``overrides``."""
        base = {"host": self.host, "port": self.port, "database": self.database, "user": self.user}
        return {**base, "password": self.password, **overrides}

    def admin(self) -> pymysql.connections.Connection:
        """A new autocommit connection as the admin account (close it yourself)."""
        return pymysql.connect(
            host=self.host, port=self.port, user=self.admin_user, password=self.admin_password, autocommit=True
        )


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDB]:
    """A MariaDB with a password-protected read-only user; see the module docstring."""
    server: _Throwaway | None = None
    if os.environ.get("SOURCECHECK_TEST_MARIADB") != "system":
        try:
            server = _Throwaway.start()
        except Exception as exc:
            warnings.warn(f"no throwaway mariadbd ({exc}); using the machine's MariaDB", stacklevel=1)
    try:
        if server is not None:
            admin, host, port = server.root(), "127.0.0.1", server.port
            names = ("reader", "app", "secret_db", "admin")
        else:
            admin, host, port = _system_root()
            suffix = secrets.token_hex(4)
            names = (f"sc_reader_{suffix}", f"sc_app_{suffix}", f"sc_secret_{suffix}", f"sc_admin_{suffix}")
        user, database, forbidden, admin_user = names
        info = MariaDB(
            host=host,
            port=port,
            user=user,
            password=f"read-{secrets.token_hex(8)}",
            database=database,
            table="items",
            forbidden_database=forbidden,
            admin_user=admin_user,
            admin_password=f"admin-{secrets.token_hex(8)}",
            ca_pem=server.ca_pem if server else None,
            throwaway=server is not None,
        )
        try:
            _create(admin, info)
            yield info
        finally:
            if server is None:  # the machine's server lives on: leave nothing behind
                _drop(admin, info)
            admin.close()
    finally:
        if server is not None:
            server.stop()


def _create(admin: pymysql.connections.Connection, info: MariaDB) -> None:
    with admin.cursor() as cur:
        for db in (info.database, info.forbidden_database):
            cur.execute(f"CREATE DATABASE `{db}`")
            cur.execute(f"CREATE TABLE `{db}`.`{info.table}` (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL)")
            cur.execute(f"INSERT INTO `{db}`.`{info.table}` VALUES (1, 'one'), (2, 'two'), (3, 'three')")  # noqa: S608 - our own names
        cur.execute(f"CREATE USER '{info.user}'@'%%' IDENTIFIED BY %s", (info.password,))
        cur.execute(f"GRANT SELECT ON `{info.database}`.* TO '{info.user}'@'%'")
        cur.execute(f"CREATE USER '{info.admin_user}'@'%%' IDENTIFIED BY %s", (info.admin_password,))
        cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{info.admin_user}'@'%' WITH GRANT OPTION")


def _drop(admin: pymysql.connections.Connection, info: MariaDB) -> None:
    with admin.cursor() as cur:
        for user in (info.user, info.admin_user):
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        for db in (info.database, info.forbidden_database):
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")


def _system_root() -> tuple[pymysql.connections.Connection, str, int]:
    """Root on the machine's MariaDB, and where it listens over TCP."""
    errors: list[str] = []
    attempts: list[dict[str, Any]] = [{"unix_socket": s} for s in SYSTEM_SOCKETS if os.path.exists(s)]
    attempts.append({"host": "127.0.0.1", "port": 3306})
    for where in attempts:
        if not _listens(where.get("unix_socket") or (where["host"], where["port"])):
            errors.append(f"{where}: nothing listens")
            continue
        try:
            conn = pymysql.connect(user="root", password="", autocommit=True, connect_timeout=3, **where)
        except pymysql.MySQLError as exc:
            errors.append(f"{where}: {exc}")
            continue
        with conn.cursor() as cur:
            cur.execute("SELECT @@port, @@skip_networking")
            port, no_tcp = cur.fetchone()  # type: ignore[misc]
        if not no_tcp:
            return conn, "127.0.0.1", int(port)
        conn.close()
        errors.append(f"{where}: the server does not listen on TCP")
    pytest.fail(f"no MariaDB for the tests: no throwaway mariadbd and no usable system server ({'; '.join(errors)})")


def _listens(address: str | tuple[str, int]) -> bool:
    # Asked before pymysql.connect, which leaks its socket when the connect itself fails.
    with socket.socket(socket.AF_UNIX if isinstance(address, str) else socket.AF_INET) as probe:
        probe.settimeout(1)
        try:
            probe.connect(address)
            return True
        except OSError:
            return False


@dataclass
class _Throwaway:
    """A private mariadbd in a temp dir, bound to 127.0.0.1 on a free port."""

    process: subprocess.Popen[bytes]
    directory: Path
    port: int
    ca_pem: str

    @property
    def socket_path(self) -> str:
        return str(self.directory / "mysqld.sock")

    def root(self) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=self.socket_path, user="root", password="", autocommit=True)

    @classmethod
    def start(cls) -> _Throwaway:
        search = os.pathsep.join(
            [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"]
        )  # sbin: not on every PATH
        install, server = shutil.which("mariadb-install-db", path=search), shutil.which("mariadbd", path=search)
        if not install or not server:
            raise RuntimeError("mariadb-install-db or mariadbd not found")
        directory = Path(tempfile.mkdtemp(prefix="sc-mariadb-"))  # short: a socket path has 107 bytes at most
        try:
            ca_pem = _write_certificates(directory)
            # mariadbd refuses to run as root: as root it switches to the mysql account, which must own the files.
            as_user = ["--user=mysql"] if os.geteuid() == 0 else []
            if as_user:
                mysql = pwd.getpwnam("mysql")
                for path in [directory, *directory.iterdir()]:
                    os.chown(path, mysql.pw_uid, mysql.pw_gid)
            data = directory / "data"
            small = ["--loose-innodb-log-file-size=10M", "--loose-innodb-buffer-pool-size=32M"]
            subprocess.run(
                [install, "--no-defaults", f"--datadir={data}", *as_user, "--auth-root-authentication-method=normal",
                 "--skip-test-db", *small],
                check=True, capture_output=True, timeout=30,
            )  # fmt: skip
            for _ in range(2):  # the free port may be taken before mariadbd binds it: try another
                port = free_port()
                process = subprocess.Popen(
                    [server, "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
                     f"--socket={directory / 'mysqld.sock'}", f"--pid-file={directory / 'mysqld.pid'}",
                     f"--log-error={directory / 'error.log'}", *as_user, "--skip-name-resolve", "--skip-log-bin",
                     f"--ssl-ca={directory / 'ca.pem'}", f"--ssl-cert={directory / 'server.pem'}",
                     f"--ssl-key={directory / 'server.key'}", *small],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                started = cls(process, directory, port, ca_pem)
                if started._wait_ready():
                    return started
                started.stop(remove=False)
            log = (
                (directory / "error.log").read_text(errors="replace")[-600:]
                if (directory / "error.log").exists()
                else ""
            )
            raise RuntimeError(f"mariadbd did not start within {START_TIMEOUT:g} s: {log}")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            if _listens(self.socket_path):
                try:
                    self.root().close()
                    return True
                except pymysql.MySQLError:
                    pass
            time.sleep(0.05)
        return False

    def stop(self, *, remove: bool = True) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)


def _write_certificates(directory: Path) -> str:
    """A CA and a server certificate for ``localhost`` in ``directory``; returns the CA's PEM."""
    now = dt.datetime.now(dt.UTC)

    def build(
        subject: str, issuer: x509.Name | None, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        )
        if issuer is None:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("sourcecheck test CA", None, ca_key, ca_key)
    server = build("localhost", ca.subject, server_key, ca_key)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    (directory / "ca.pem").write_text(ca_pem)
    (directory / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    (directory / "server.key").write_bytes(key_pem)
    return ca_pem
