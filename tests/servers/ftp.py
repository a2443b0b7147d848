"""Fixture ``ftp_server``: real FTP/FTPS servers (pyftpdlib) with a real authorizer, one thread.

Usage::

    def test_something(ftp_server: FtpServer) -> None:
        config = get_connector("ftp").parse_config(ftp_server.config(folder="/data"))

What it gives (started once per session, on free loopback ports, served by one pyftpdlib
I/O loop in a daemon thread):

- ``port``: plain FTP and explicit FTPS (AUTH TLS, PBSZ, PROT P) on the same port;
  ``implicit_port``: implicit FTPS (TLS from the first byte). Certificates are issued by the
  session's test CA (``ca_pem``) for 127.0.0.1 and localhost.
- ``masquerading_port``: plain FTP whose PASV replies advertise ``MASQUERADE`` (an address
  nobody listens on), as a server behind NAT configured with the wrong public address does;
  its data ports are reachable on 127.0.0.1, so a client that ignores the address succeeds.
- ``nat_port``: plain FTP listening on 127.0.0.2, reached through a TCP forwarder on
  127.0.0.1 that forwards the control port only: its PASV replies name 127.0.0.2, and the
  data port on 127.0.0.1 refuses (a NAT that forwards port 21 and not the passive range).
- ``anonymous`` logins (any password) read ``/data`` as their root.
- ``ipv6_port``: plain FTP on ::1 (data channels by EPSV).
- ``user``/``password``: read ``/`` (``elr``); ``/data`` holds ``a.csv`` and ``b.csv`` and a
  folder ``sub``; ``/empty`` has only a folder; ``/nolist`` may be entered but not listed;
  ``/noread`` may be listed but its files not downloaded (pyftpdlib answers 550 "Not enough
  privileges"); ``/big`` holds one 4 MiB file; ``/crowded`` 4000 files (a listing of 400 KB).
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # pyftpdlib is built on asyncore/asynchat
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

from tests.servers.http import TestCA
from tests.servers.tcp import HostPort, TcpProxy

MASQUERADE = "198.51.100.7"  # TEST-NET-2: never routed


@dataclass(frozen=True)
class FtpServer:
    host: str
    port: int
    implicit_port: int
    masquerading_port: int
    nat_port: int
    ipv6_port: int
    expiring_port: int  # explicit FTPS with a certificate that ends in 5 days
    user: str
    password: str
    ca_pem: str
    root: Path

    def config(self, **overrides: Any) -> dict[str, Any]:
        """An explicit-FTPS ``ftp`` configuration for ``/data``; override any field."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.user,
            "password": self.password,
            "tls": "explicit",
            "ca_cert": self.ca_pem,
            "folder": "/data",
            **overrides,
        }


def _make_tree(root: Path) -> None:
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("id,name\n1,one\n")
    (data / "b.csv").write_text("id,name\n2,two\n" * 200)
    (root / "empty" / "only-a-folder").mkdir(parents=True)
    (root / "nolist").mkdir()
    (root / "nolist" / "x.csv").write_text("x\n")
    (root / "noread").mkdir()
    (root / "noread" / "r.csv").write_text("r\n")
    (root / "big").mkdir()
    (root / "big" / "big.bin").write_bytes(b"\0" * (4 * 1024 * 1024))
    crowded = root / "crowded"
    crowded.mkdir()
    for n in range(4000):  # a listing longer than the connector reads (MAX_LISTING)
        (crowded / f"file-{n:05d}-{'x' * 40}.csv").write_text("c\n")


def _handler(base: type[FTPHandler], authorizer: DummyAuthorizer, **attributes: Any) -> type[FTPHandler]:
    """A handler class of its own (pyftpdlib configures handlers by class attributes)."""
    return type("Handler", (base,), {"authorizer": authorizer, "passive_ports": None, **attributes})


class _ImplicitTls(TLS_FTPHandler):
    """Implicit FTPS: the TLS handshake before the greeting, as on port 990."""

    def handle(self) -> None:
        self.secure_connection(self.ssl_context)
        super().handle()


@pytest.fixture(scope="session")
def ftp_server(test_ca: TestCA) -> Iterator[FtpServer]:
    root = Path(tempfile.mkdtemp(prefix="sc-ftp-"))
    _make_tree(root)
    cert_pem, key_pem = test_ca.issue()
    certfile = root.parent / f"{root.name}.pem"
    certfile.write_text(cert_pem + key_pem)
    now = dt.datetime.now(dt.UTC)
    expiring = root.parent / f"{root.name}-expiring.pem"
    expiring.write_text(
        "".join(test_ca.issue(not_before=now - dt.timedelta(days=80), not_after=now + dt.timedelta(days=5)))
    )
    user, password = "reader", "ftp-" + secrets.token_hex(8)
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, str(root), perm="elr")
    authorizer.override_perm(user, str(root / "nolist"), perm="e")
    authorizer.override_perm(user, str(root / "noread"), perm="el")
    authorizer.add_anonymous(str(root / "data"))
    tls = {"certfile": str(certfile), "ssl_context": None}
    ioloop = IOLoop()
    servers = [
        FTPServer(("127.0.0.1", 0), _handler(TLS_FTPHandler, authorizer, **tls), ioloop=ioloop),
        FTPServer(("127.0.0.1", 0), _handler(_ImplicitTls, authorizer, **tls), ioloop=ioloop),
        FTPServer(("127.0.0.1", 0), _handler(FTPHandler, authorizer, masquerade_address=MASQUERADE), ioloop=ioloop),
        FTPServer(("127.0.0.2", 0), _handler(FTPHandler, authorizer), ioloop=ioloop),
        FTPServer(("::1", 0), _handler(FTPHandler, authorizer), ioloop=ioloop),
        FTPServer(
            ("127.0.0.1", 0),
            _handler(TLS_FTPHandler, authorizer, certfile=str(expiring), ssl_context=None),
            ioloop=ioloop,
        ),
    ]
    ports = [int(server.socket.getsockname()[1]) for server in servers]
    thread = threading.Thread(target=ioloop.loop, kwargs={"timeout": 0.2}, name="ftp-server", daemon=True)
    thread.start()
    try:
        with TcpProxy(HostPort("127.0.0.2", ports[3])) as nat:
            yield FtpServer(
                host="127.0.0.1",
                port=ports[0],
                implicit_port=ports[1],
                masquerading_port=ports[2],
                nat_port=nat.port,
                ipv6_port=ports[4],
                expiring_port=ports[5],
                user=user,
                password=password,
                ca_pem=test_ca.pem,
                root=root,
            )
    finally:
        for server in servers:
            server.close_all()
        thread.join(timeout=5)
        shutil.rmtree(root, ignore_errors=True)
        certfile.unlink(missing_ok=True)
        expiring.unlink(missing_ok=True)
