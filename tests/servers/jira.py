"""A local HTTPS stand-in for Jira's REST API, answering the bodies Jira documents.

Fixture ``jira_server`` (session-scoped: started once) yields a :class:`JiraServer`: one
HTTPS server on 127.0.0.1 whose certificate is signed by the session's test CA
(``server.ca_pem``), with two sites::

    /cloud   Jira Cloud: HTTP Basic (email + API token), REST API v2 and v3, the enhanced
             search GET /rest/api/3/search/jql (the old /rest/api/{2,3}/search answer 410)
    /dc      Jira Data Center: bearer personal access tokens, REST API v2 only
    /hang    accepts the request and never answers (until the server stops)

Credentials (random per server, so a test can search any output for them): ``api_token``
(Cloud, with :data:`EMAIL`), ``pat`` (Data Center), ``limited_token`` (valid on both, but
without Browse Projects: 403 on the project), ``scoped_token`` (Cloud: a scoped API token
without the Jira scopes, 401 "scope does not match"). :data:`LOCKED_EMAIL` is locked behind
a CAPTCHA (403 with ``X-Seraph-LoginReason: AUTHENTICATION_DENIED``).

Projects: :data:`PROJECT` (has issues), :data:`EMPTY_PROJECT` (no issues), :data:`ARCHIVED`
(visible, its search refused with 400), :data:`BUSY` (429, Retry-After 120), :data:`FLAKY`
(429, Retry-After 1, once), :data:`DOWN` (503), :data:`ECHO` (a 404 whose errorMessages
quote the Authorization header), :data:`FLOOD` (a 404 with 50 000 errorMessages, 2.5 MB),
:data:`LONG_NAME` (a name of a million characters), :data:`HUGE` (a body past the
transport's bound); any other key is 404 "No project could be found with key". Every
request is appended to ``server.requests``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.servers.http import TestCA, _Server, server_context

EMAIL = "reader@example.com"
LOCKED_EMAIL = "locked@example.com"
PROJECT = "ENG"
EMPTY_PROJECT = "EMPTY"
ARCHIVED = "ARCH"
BUSY = "BUSY"
FLAKY = "FLAKY"
DOWN = "DOWN"
ECHO = "ECHO"
FLOOD = "FLOOD"
LONG_NAME = "LONG"
HUGE = "HUGE"
HUGE_BYTES = 5 * 1024 * 1024  # more than connectors.transport.MAX_RESPONSE_BYTES

_NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names lower-cased


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, *messages: str, headers: dict[str, str] | None = None) -> Reply:
    """Jira's error body: ``{"errorMessages": [...], "errors": {}}``."""
    return Reply(status, {"errorMessages": list(messages), "errors": {}}, headers or {})


@dataclass
class JiraServer:
    base_url: str
    ca_pem: str
    api_token: str = field(default_factory=lambda: "ATATT3x" + secrets.token_urlsafe(18))
    pat: str = field(default_factory=lambda: "pat-" + secrets.token_urlsafe(18))
    limited_token: str = field(default_factory=lambda: "lim-" + secrets.token_urlsafe(18))
    scoped_token: str = field(default_factory=lambda: "ATATT3xscoped" + secrets.token_urlsafe(18))
    requests: list[Request] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    _flaky_served: bool = False

    def url(self, path: str = "") -> str:
        return self.base_url + path

    def all_secrets(self) -> list[str]:
        return [self.api_token, self.pat, self.limited_token, self.scoped_token]

    def route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        auth = headers.get("authorization", "")
        if path.startswith("/cloud/"):
            return self._cloud(path[len("/cloud") :], query, auth)
        if path.startswith("/dc/"):
            return self._data_center(path[len("/dc") :], query, auth)
        return Reply(404, b"<html><body>Not Found</body></html>", {"Content-Type": "text/html"})

    # --- the two deployments -------------------------------------------------------------

    def _cloud(self, path: str, query: dict[str, str], auth: str) -> Reply:
        if not auth.startswith("Basic "):
            return _error(401, _NOT_AUTHENTICATED)
        email, _, token = base64.b64decode(auth[6:]).decode(errors="replace").partition(":")
        if email == LOCKED_EMAIL:
            return Reply(
                403,
                b"CAPTCHA_CHALLENGE",
                {
                    "Content-Type": "text/plain;charset=UTF-8",
                    "X-Seraph-LoginReason": "AUTHENTICATION_DENIED",
                    "X-Authentication-Denied-Reason": f"CAPTCHA_CHALLENGE; login-url={self.url('/cloud/login.jsp')}",
                },
            )
        known = (self.api_token, self.limited_token, self.scoped_token)
        if email != EMAIL or not any(secrets.compare_digest(token, k) for k in known):
            return _error(401, _NOT_AUTHENTICATED, headers={"X-Seraph-LoginReason": "AUTHENTICATED_FAILED"})
        if token == self.scoped_token:
            return Reply(401, {"code": 401, "message": "Unauthorized; scope does not match"})
        found = re.fullmatch(r"/rest/api/([23])/(.+)", path)
        if found is None:
            return _error(404, "null for uri: " + path)
        version, rest = found.groups()
        if rest == "search":
            return _error(
                410,
                "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full "
                "migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046",
            )
        if rest == "search/jql":
            return self._search(query, cloud=True)
        return self._common(rest, auth, token, cloud=True)

    def _data_center(self, path: str, query: dict[str, str], auth: str) -> Reply:
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if not any(secrets.compare_digest(token, k) for k in (self.pat, self.limited_token)):
            return _error(401, _NOT_AUTHENTICATED, headers={"X-Seraph-LoginReason": "AUTHENTICATED_FAILED"})
        found = re.fullmatch(r"/rest/api/2/(.+)", path)
        if found is None:
            return _error(404, "null for uri: " + path)
        rest = found.group(1)
        if rest == "search":
            return self._search(query, cloud=False)
        return self._common(rest, auth, token, cloud=False)

    # --- what both answer ----------------------------------------------------------------

    def _common(self, rest: str, auth: str, token: str, *, cloud: bool) -> Reply:
        if rest == "myself":
            if cloud:
                return Reply(
                    200,
                    {
                        "accountId": "5b10ac8d82e05b22cc7d4ef5",
                        "accountType": "atlassian",
                        "emailAddress": EMAIL,
                        "displayName": "Ada Reader",
                        "active": True,
                    },
                )
            return Reply(
                200,
                {"key": "JIRAUSER10100", "name": "ada", "emailAddress": EMAIL, "displayName": "Ada Reader"},
            )
        found = re.fullmatch(r"project/([^/]+)", rest)
        if found is None:
            return _error(404, "null for uri: /rest/api/" + rest)
        key = found.group(1)
        if token == self.limited_token:
            return _error(403, "You do not have the permission to see the specified project.")
        if key == BUSY:
            return _error(429, "Rate limit exceeded.", headers={"Retry-After": "120"})
        if key == FLAKY and not self._flaky_served:
            self._flaky_served = True
            return _error(429, "Rate limit exceeded.", headers={"Retry-After": "1"})
        if key == DOWN:
            return Reply(503, b"Service Unavailable", {"Content-Type": "text/plain", "Retry-After": "30"})
        if key == ECHO:
            return _error(404, f"No project could be found with key '{key}' for Authorization: {auth}")
        if key == FLOOD:
            return _error(404, *[f"No project could be found with key '{key}' (copy {n})." for n in range(50_000)])
        if key == HUGE:
            return Reply(200, {"key": key, "name": "x" * HUGE_BYTES})
        if key == LONG_NAME:
            return Reply(200, {"id": "10004", "key": key, "name": "n" * 1_000_000})
        if key in (PROJECT, EMPTY_PROJECT, ARCHIVED, FLAKY):
            names = {PROJECT: "Engineering", EMPTY_PROJECT: "Empty", ARCHIVED: "Archived", FLAKY: "Flaky"}
            return Reply(
                200,
                {
                    "id": "10000",
                    "key": key,
                    "name": names[key],
                    "projectTypeKey": "software",
                    "archived": key == ARCHIVED,
                },
            )
        return _error(404, f"No project could be found with key '{key}'.")

    def _search(self, query: dict[str, str], *, cloud: bool) -> Reply:
        found = re.fullmatch(r'project = "([^"]+)"', query.get("jql", ""))
        if found is None or query.get("maxResults") != "1":
            return _error(400, "Error in the JQL Query: the query is not the one expected.")
        key = found.group(1)
        if key == ARCHIVED:
            return _error(400, f"The value '{key}' does not exist for the field 'project'.")
        issues: list[dict[str, Any]] = [] if key == EMPTY_PROJECT else [{"id": "10001"}]
        if cloud:
            return Reply(200, {"issues": issues, "isLast": not issues} | ({"nextPageToken": "Ch0j"} if issues else {}))
        detailed = [{**i, "key": f"{key}-1", "fields": {"summary": "First issue"}} for i in issues]
        return Reply(200, {"startAt": 0, "maxResults": 1, "total": len(issues) * 12, "issues": detailed})


def _handler(server: JiraServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15
        disable_nagle_algorithm = True  # headers and body in two writes: no delayed-ACK stall

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            server.requests.append(Request(self.command, self.path, headers))
            parts = urlsplit(self.path)
            if parts.path.startswith("/hang"):
                server.stopping.wait(30)  # never answers while the server runs
                return
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            reply = server.route(parts.path, query, headers)
            out = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            extra = {} if isinstance(reply.body, bytes) else {"Content-Type": "application/json;charset=UTF-8"}
            for name, value in {**extra, **reply.headers, "Content-Length": str(len(out))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def start_jira_server(test_ca: TestCA) -> Iterator[JiraServer]:
    """The Jira stand-in over TLS on a free 127.0.0.1 port, until the block ends."""
    httpd = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.tls = server_context(*test_ca.issue())
    server = JiraServer(base_url=f"https://127.0.0.1:{httpd.server_address[1]}", ca_pem=test_ca.pem)
    httpd.RequestHandlerClass = _handler(server)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def jira_server(test_ca: TestCA) -> Iterator[JiraServer]:
    with start_jira_server(test_ca) as server:
        yield server
