"""Fixtures for TCP-level failures: a port that refuses, a server that never answers.

``closed_port``  an ``int`` port on 127.0.0.1 that refuses connections for the whole test.
``hung_server``  a :class:`HostPort` ``(host, port)`` whose listener accepts TCP connections
                 and then neither reads nor writes; it holds them until the session ends.
``hung_listener`` the same, of the test's own: a :class:`HungListener` whose ``held``
                 connections the test can count.
``TcpProxy``     a forwarder to a server that a test can cut off and restore (an outage).

:class:`CountingListener` (a helper, not a fixture): accepts and counts every connection,
to prove that none was made (the egress tests).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Iterator
from typing import NamedTuple

import pytest


class HostPort(NamedTuple):
    host: str
    port: int


@pytest.fixture
def closed_port() -> Iterator[int]:
    # Bound but never listening: the kernel answers RST (connection refused), and holding
    # the socket keeps any other process from taking the port while the test runs.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


class HungListener(threading.Thread):
    """Accepts every connection and keeps it open, silent, until :meth:`stop`."""

    def __init__(self) -> None:
        super().__init__(name="hung-server", daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.address = HostPort("127.0.0.1", int(self.sock.getsockname()[1]))
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            # Poll so stop() is noticed without having to wake a blocking accept().
            readable, _, _ = select.select([self.sock], [], [], 0.1)
            if readable:
                conn, _ = self.sock.accept()
                self.held.append(conn)  # kept referenced: dropping it would close the connection

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        for conn in self.held:
            conn.close()
        self.sock.close()

    def __enter__(self) -> HungListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def hung_server() -> Iterator[HostPort]:
    with HungListener() as listener:
        yield listener.address


@pytest.fixture
def hung_listener() -> Iterator[HungListener]:
    with HungListener() as listener:
        yield listener


class CountingListener:
    """A TCP listener on ``host`` that accepts and counts every connection (and closes it)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="counting-listener", daemon=True)
        self._thread.start()

    def _accept_all(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, OSError):
                return
            with self._lock:  # counted before the close the client sees
                self._count += 1
            conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self.sock], [], [], 0.05)
            if readable:
                self._accept_all()

    @property
    def accepted(self) -> int:
        self._accept_all()  # a connection completed by the kernel but not yet accepted counts
        with self._lock:
            return self._count

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; :meth:`cut` makes the target unreachable.

    ``cut()`` resets every forwarded connection and closes the listener, so connecting
    is refused (as when the server behind is down); ``restore()`` listens again on the
    same port. Use it as a context manager (``with TcpProxy(target) as proxy``).
    """

    def __init__(self, target: HostPort) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

    def restore(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        self.port = int(sock.getsockname()[1])
        self._listener = sock
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, args=(sock, self._stopping), name="tcp-proxy", daemon=True).start()

    def cut(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(OSError):  # RST, not FIN: the peer sees the connection die
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def _accept(self, listener: socket.socket, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                readable, _, _ = select.select([listener], [], [], 0.1)
                if not readable:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):  # closed by cut()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # an idle connection (a pooled one) stays open
            with self._lock:
                self._connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
