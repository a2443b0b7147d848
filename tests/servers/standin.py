"""What the one-provider API stand-ins (tests/servers/gitlab.py, zendesk.py) share: a GET handler
that records each request and answers what a route returns, and tests.servers.saas's HTTPS server
(TLS, thread, shutdown) started with that handler.

A route takes ``(path, query, headers)`` (the raw path, percent-encoding kept; the query's first
values; header names lower-cased) and returns a :class:`tests.servers.saas.Reply`. ``/hang``
accepts a request and never answers while the server runs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar
from unittest.mock import patch
from urllib.parse import parse_qs, urlsplit

from tests.servers import saas
from tests.servers.http import TestCA
from tests.servers.saas import Reply, Request, SaasServer, start_saas_server

Route = Callable[[str, dict[str, str], dict[str, str]], Reply]
S = TypeVar("S")


def json_handler(requests: list[Request], stopping: threading.Event, route: Route) -> type[BaseHTTPRequestHandler]:
    """A GET handler answering ``route``'s reply, a body other than bytes as JSON."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            requests.append(Request(self.command, self.path, headers, {}))
            parts = urlsplit(self.path)
            if parts.path.startswith("/hang"):
                stopping.wait(30)  # never answers while the server runs
                return
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            reply = route(parts.path, query, headers)
            out = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            extra = {} if isinstance(reply.body, bytes) else {"Content-Type": "application/json"}
            for name, value in {**extra, **reply.headers, "Content-Length": str(len(out))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def start_standin(test_ca: TestCA, make: Callable[[SaasServer], S], route: Callable[[S], Route]) -> Iterator[S]:
    """tests.servers.saas's HTTPS server, its handler swapped for :func:`json_handler` of ``route(server)``
    only while the server is made (as tests.servers.saas_files does); yields ``make``'s server."""
    made: list[S] = []

    def handler(base: SaasServer) -> type[BaseHTTPRequestHandler]:
        made.append(make(base))
        return json_handler(base.requests, base.stopping, route(made[0]))

    with ExitStack() as stack:
        with patch.object(saas, "_handler", handler):
            stack.enter_context(start_saas_server(test_ca))
        yield made[0]
