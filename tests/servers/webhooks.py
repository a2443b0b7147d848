"""A webhook receiver on loopback, started once per test session (``webhook_receiver``).

It records every POST (path, headers, body) and answers by the path's first part; the
rest of the path is a key of the test's own, so tests sharing the server count apart::

    /ok/<key>          200 "thanks"
    /flaky/<key>       503 to the first two POSTs of the key, then 200
    /down/<key>        500, always
    /large/<key>       200 with a 1 MiB body
    /redirect/<key>    302 to /ok/<key>-redirected
    /slow/<key>        sends its status line, then nothing for 5 s
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

FLAKY_FAILURES = 2
LARGE_BODY = b"x" * (1024 * 1024)
SLOW_SECONDS = 5.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    base_url: str
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, behaviour: str, key: str) -> str:
        return f"{self.base_url}/{behaviour}/{key}"

    def posts(self, behaviour: str, key: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == f"/{behaviour}/{key}"]


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # dispatchers send their batches at once
    daemon_threads = True


def start_receiver() -> tuple[ThreadingHTTPServer, WebhookReceiver]:
    server = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = WebhookReceiver(base_url=f"http://127.0.0.1:{server.server_address[1]}")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length", "0")), 1024 * 1024)
            received = Received(self.path, {k: v for k, v in self.headers.items()}, self.rfile.read(length))
            with receiver.lock:
                receiver.received.append(received)
                seen = sum(1 for r in receiver.received if r.path == self.path)
            behaviour, _, key = self.path.strip("/").partition("/")
            if behaviour == "ok" or (behaviour == "flaky" and seen > FLAKY_FAILURES):
                self._answer(200, b"thanks")
            elif behaviour == "flaky":
                self._answer(503, b"not now\x00\x1b[31m")
            elif behaviour == "large":
                self._answer(200, LARGE_BODY)
            elif behaviour == "slow":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.wfile.flush()
                time.sleep(SLOW_SECONDS)
            elif behaviour == "redirect":
                self._answer(302, b"", location=f"/ok/{key}-redirected")
            else:
                self._answer(500, b"broken")

        def _answer(self, status: int, body: bytes, location: str | None = None) -> None:
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass  # the sender read what it wanted and left

    server.RequestHandlerClass = Handler
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, receiver


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    server, receiver = start_receiver()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
