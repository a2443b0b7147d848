"""The transport the HTTP-speaking connectors share (connectors/transport.py), on its own:
where the kept connection goes, and which errors reach the connectors."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpcore
import httpx
import pytest

from connectors.base import Probe
from connectors.errors import FailureType
from connectors.network import Address, connect_tcp, resolve
from connectors.tls import client_context
from connectors.transport import PinnedTransport, transport_failure
from tests.servers.http import HttpServer, start_http_server


async def kept_socket(host: str, port: int) -> tuple[Address, socket.socket]:
    """The ``tcp`` step's connection to ``host``:``port``, kept as open_pinned keeps it."""
    probe = Probe(("resolve", "tcp"), deadline=time.monotonic() + 5)
    return await connect_tcp(probe, await resolve(probe, host, port), keep=True)


async def test_the_kept_connection_carries_only_a_request_to_the_pinned_host_and_port(
    http_server: HttpServer,
) -> None:
    with start_http_server() as other:  # the same host, another port
        address, sock = await kept_socket(http_server.host, http_server.port)
        async with httpx.AsyncClient(transport=PinnedTransport(client_context(), address, kept=sock)) as client:
            response = await client.get(other.url("/ok"))
        assert response.status_code == 200
        assert [r.path for r in other.requests] == ["/ok"]
    assert http_server.requests == []
    assert sock.fileno() == -1  # unused, closed with the transport


async def test_a_kept_plain_connection_is_secured_when_the_first_request_is_https(https_server: HttpServer) -> None:
    address, sock = await kept_socket(https_server.host, https_server.port)
    transport = PinnedTransport(client_context(ca_pem=https_server.ca_pem), address, kept=sock)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(https_server.url("/ok"))
    assert response.status_code == 200
    assert len(https_server.connections) == len(https_server.handshakes) == 1


@pytest.fixture
def closing_server() -> Iterator[tuple[socket.socket, list[int]]]:
    """A server that answers each connection's first request, then closes it (without saying
    so in a header): a connection that died while idle in the pool."""
    listener = socket.create_server(("127.0.0.1", 0))
    served: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            served.append(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener, served
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        listener.close()
        thread.join(timeout=5)


async def test_a_kept_connection_the_server_closed_while_idle_is_not_reused(
    closing_server: tuple[socket.socket, list[int]],
) -> None:
    listener, served = closing_server
    port = listener.getsockname()[1]
    address, sock = await kept_socket("127.0.0.1", port)
    async with httpx.AsyncClient(transport=PinnedTransport(client_context(), address, kept=sock)) as client:
        assert (await client.get(f"http://127.0.0.1:{port}/one")).text == "ok"
        deadline = time.monotonic() + 2
        while not served and time.monotonic() < deadline:  # until the server has closed it
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # and its FIN has arrived
        assert (await client.get(f"http://127.0.0.1:{port}/two")).text == "ok"
    assert len(served) == 2


async def test_a_server_that_never_answers_raises_httpx_read_timeout_caused_by_httpcores() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # never accepts: the kernel does
        port = listener.getsockname()[1]
        address, sock = await kept_socket("127.0.0.1", port)
        async with httpx.AsyncClient(transport=PinnedTransport(client_context(), address, kept=sock)) as client:
            with pytest.raises(httpx.ReadTimeout) as caught:
                await client.get(f"http://127.0.0.1:{port}/", timeout=0.2)
    assert isinstance(caught.value.__cause__, httpcore.ReadTimeout)
    assert transport_failure(caught.value, 0.2).type == FailureType.TIMEOUT
