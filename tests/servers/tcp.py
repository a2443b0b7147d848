"""Fixtures for TCP-level failures: a port that refuses, a server that never answers.

``closed_port``  an ``int`` port on 127.0.0.1 that refuses connections for the whole test.
``hung_server``  a :class:`HostPort` ``(host, port)`` whose listener accepts TCP connections
                 and then neither reads nor writes; it holds them until the session ends.
"""

from __future__ import annotations

import select
import socket
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


class _HungListener(threading.Thread):
    """Accepts every connection and keeps it open, silent, until :meth:`stop`."""

    def __init__(self) -> None:
        super().__init__(name="hung-server", daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
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


@pytest.fixture(scope="session")
def hung_server() -> Iterator[HostPort]:
    listener = _HungListener()
    listener.start()
    try:
        yield listener.address
    finally:
        listener.stop()
