"""Fixture ``bomb_server``: a plain HTTP server on 127.0.0.1 whose answers are too large to hold.

Every path answers the same, chosen by the test with ``server.mode``::

    double-gzip    200, Content-Encoding: gzip, gzip: 64 MiB of spaces gzipped twice (a few hundred bytes)
    gzip           200, Content-Encoding: gzip: 50 MiB of spaces gzipped once (about 50 KB)
    redirect       302 to /elsewhere with a 1 GiB body of spaces, written lazily as it is read
    gzip-small     200, Content-Encoding: gzip: 1 MiB of spaces (within every bound)
    deflate-small  200, Content-Encoding: deflate: 1 MiB of spaces, zlib-wrapped
    raw-deflate    200, Content-Encoding: deflate: 1 MiB of spaces, raw deflate (as some servers send it)
    brotli         200, Content-Encoding: br (never asked for): bytes that are not brotli
    big            200: ``server.big`` spaces (3 MiB by default), no encoding

Every 200 is application/xml: white space before a root element is XML, so a parser reads on.

``server.sent`` counts the body bytes written, so a test can see how much the client read.
The compressed bodies are made once per session, in pieces (never 64 MiB in memory).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.servers.http import _Server

MiB = 1024 * 1024
REDIRECT_BODY = 1024 * MiB


@cache
def gzipped_spaces(size: int, times: int = 1) -> bytes:
    """``size`` spaces gzipped ``times`` times, built piece by piece."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    spaces = b" " * MiB
    body = b"".join(packer.compress(spaces) for _ in range(size // MiB)) + packer.flush()
    for _ in range(times - 1):
        outer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        body = outer.compress(body) + outer.flush()
    return body


@dataclass
class BombServer:
    host: str
    port: int
    mode: str = "double-gzip"
    big: int = 3 * MiB
    sent: int = 0
    requests: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path


def _handler(server: BombServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.do_GET()

        def do_GET(self) -> None:
            server.requests.append(self.path)
            if server.mode == "redirect":
                self._redirect()
                return
            headers = {"Content-Type": "application/xml"}
            if server.mode == "double-gzip":
                body, headers["Content-Encoding"] = gzipped_spaces(64 * MiB, times=2), "gzip, gzip"
            elif server.mode == "gzip":
                body, headers["Content-Encoding"] = gzipped_spaces(50 * MiB), "gzip"
            elif server.mode == "brotli":
                body, headers["Content-Encoding"] = b"\x8b" * 1024, "br"
            elif server.mode == "gzip-small":
                body, headers["Content-Encoding"] = gzipped_spaces(MiB), "gzip"
            elif server.mode in ("deflate-small", "raw-deflate"):
                packer = zlib.compressobj(wbits=zlib.MAX_WBITS if server.mode == "deflate-small" else -zlib.MAX_WBITS)
                body, headers["Content-Encoding"] = packer.compress(b" " * MiB) + packer.flush(), "deflate"
            else:
                body = b" " * server.big
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
                server.sent += len(body)

        def _redirect(self) -> None:
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", str(REDIRECT_BODY))
            self.end_headers()
            if self.command == "HEAD":
                return
            piece = b" " * 64 * 1024
            for _ in range(REDIRECT_BODY // len(piece)):
                self.wfile.write(piece)  # BrokenPipeError once the client has had enough
                server.sent += len(piece)

    return Handler


@pytest.fixture
def bomb_server() -> Iterator[BombServer]:
    httpd = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server = BombServer(host="127.0.0.1", port=int(httpd.server_address[1]))
    httpd.RequestHandlerClass = _handler(server)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
