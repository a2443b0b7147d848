"""A PostgreSQL-speaking listener that asks for the password in cleartext, to prove none is sent.

:class:`CleartextPostgres` answers every SSLRequest with 'N' (no TLS) and every startup
message with AuthenticationCleartextPassword (``R``, code 3), as a hostile or misconfigured
server (or one a host change points at) would; then it records what the client sends back.
``startups`` counts the startup messages (login attempts), ``passwords`` holds every
PasswordMessage (``p``) received: a client that protects the password leaves it empty.

With ``tls_once`` (a server context) the first SSLRequest gets 'S' and a TLS handshake, then
the connection ends; the later ones get 'N': a downgrade between a client's first look and
its login.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading

from tests.servers.tcp import HostPort

_SSL_REQUEST_CODE = 80877103
_CLEARTEXT_PASSWORD = struct.pack("!cii", b"R", 8, 3)
_REFUSED = b"SFATAL\x00C28P01\x00Mpassword authentication failed\x00\x00"


class CleartextPostgres(threading.Thread):
    """Listens on 127.0.0.1 until :meth:`stop`; one thread per connection."""

    def __init__(self, tls_once: ssl.SSLContext | None = None) -> None:
        super().__init__(name="cleartext-postgres", daemon=True)
        self.tls_once = tls_once
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = HostPort("127.0.0.1", int(self.sock.getsockname()[1]))
        self.connections = 0
        self.startups = 0
        self.passwords: list[bytes] = []

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # stopped
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                first = _read_message(conn)
                if first is not None and first[:4] == struct.pack("!i", _SSL_REQUEST_CODE):
                    if self.tls_once is not None:
                        context, self.tls_once = self.tls_once, None
                        conn.sendall(b"S")
                        context.wrap_socket(conn, server_side=True).close()
                        return
                    conn.sendall(b"N")
                    first = _read_message(conn)
                if first is None:
                    return
                self.startups += 1
                conn.sendall(_CLEARTEXT_PASSWORD)
                kind = conn.recv(1)
                if kind == b"p":
                    body = _read_message(conn)
                    self.passwords.append(body or b"")
                    conn.sendall(b"E" + struct.pack("!i", 4 + len(_REFUSED)) + _REFUSED)
            except OSError:  # ssl.SSLError included
                return

    def stop(self) -> None:
        self.sock.close()
        self.join(timeout=5)

    def __enter__(self) -> CleartextPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_message(conn: socket.socket) -> bytes | None:
    """A length-prefixed message's body (length included in itself), None when the client closed."""
    head = _read_exactly(conn, 4)
    if head is None:
        return None
    return _read_exactly(conn, struct.unpack("!i", head)[0] - 4)


def _read_exactly(conn: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data
