"""A local HTTPS stand-in for the GitLab REST API (v4), answering the bodies GitLab documents.

Fixture ``gitlab_server`` (session-scoped: started once) yields a :class:`GitLabServer` on
127.0.0.1, its certificate signed by the session's test CA (``server.ca_pem``); the instance's
root (the connector's ``base_url``) is ``server.url("/gitlab")``, and ``/hang`` accepts a request
and never answers. Every request is appended to ``server.requests``.

Tokens (random per server, so a test can search any output for them), sent as ``PRIVATE-TOKEN``:
``token`` (read_api, read_repository, no expiry), ``api_token`` (api), ``expiring_token`` (both
reads, expires in 3 days), ``limited_token`` (read_user only), ``revoked_token`` and
``expired_token`` (401 ``invalid_token``), ``hostile_token`` (2 MB of scopes); any other is
``{"message": "401 Unauthorized"}``.

Projects, by path or by id: ``acme/docs/handbook`` (id 278964, private, branches main and
release), ``acme/empty`` (an empty repository), ``acme/guest`` (its tree is 403: a Guest member),
``acme/busy`` (429 with ``RateLimit-Reset``, no ``Retry-After``), ``acme/down`` (503),
``acme/hostile`` (a 200 KB name, visibility and default branch), ``acme/huge`` (a 5 MB body),
``acme/moved`` (a redirect to the same API on ``localhost``, another origin), ``acme/scoped``
(403 ``insufficient_scope``: it wants ``api``). Any other is
``{"message": "404 Project Not Found"}``; a missing branch ``{"message": "404 Tree Not Found"}``.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import unquote

import pytest

from tests.servers.http import TestCA
from tests.servers.saas import Reply, Request, SaasServer
from tests.servers.standin import start_standin

PREFIX = "/gitlab"
PROJECT = "acme/docs/handbook"
PROJECT_ID = 278964
EMPTY_PROJECT = "acme/empty"
GUEST_PROJECT = "acme/guest"
BUSY_PROJECT = "acme/busy"
DOWN_PROJECT = "acme/down"
HOSTILE_PROJECT = "acme/hostile"
HUGE_PROJECT = "acme/huge"
MOVED_PROJECT = "acme/moved"
SCOPED_PROJECT = "acme/scoped"
BRANCHES = ("main", "release")
HOSTILE_TEXT = "A" * 200_000

_UNAUTHORIZED = Reply(401, {"message": "401 Unauthorized"})
_PROJECT_NOT_FOUND = Reply(404, {"message": "404 Project Not Found"})


@dataclass
class GitLabServer:
    base_url: str
    port: int
    ca_pem: str
    token: str = field(default_factory=lambda: "glpat-" + secrets.token_urlsafe(15))
    api_token: str = field(default_factory=lambda: "glpat-" + secrets.token_urlsafe(15))
    expiring_token: str = field(default_factory=lambda: "glpat-" + secrets.token_urlsafe(15))
    limited_token: str = field(default_factory=lambda: "glpat-" + secrets.token_urlsafe(15))
    revoked_token: str = field(default_factory=lambda: "glpat-" + secrets.token_urlsafe(15))
    expired_token: str = field(default_factory=lambda: "glpat-" + secrets.token_urlsafe(15))
    hostile_token: str = field(default_factory=lambda: "glpat-" + secrets.token_urlsafe(15))
    requests: list[Request] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "") -> str:
        return self.base_url + path

    def all_secrets(self) -> list[str]:
        """Every token of this server (each field named ``token`` or ``*_token``)."""
        return [getattr(self, f.name) for f in fields(self) if f.name == "token" or f.name.endswith("_token")]

    def config(self, **override: Any) -> dict[str, Any]:
        """A configuration of the gitlab connector that succeeds against this server."""
        return {
            "base_url": self.url(PREFIX),
            "ca_cert": self.ca_pem,
            "token": self.token,
            "project": PROJECT,
        } | override


def _invalid_token(description: str) -> Reply:
    return Reply(
        401,
        {"error": "invalid_token", "error_description": description},
        {
            "WWW-Authenticate": f'Bearer realm="Protected by OAuth 2.0", error="invalid_token", '
            f'error_description="{description}"'
        },
    )


def _insufficient_scope(scope: str) -> Reply:
    return Reply(
        403,
        {
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the access token.",
            "scope": scope,
        },
    )


class _App:
    def __init__(self, server: GitLabServer) -> None:
        self.s = server
        today = dt.datetime.now(dt.UTC).date()
        # (scopes, expires_at) of each live token
        self.tokens: dict[str, tuple[list[str], str | None]] = {
            server.token: (["read_api", "read_repository"], None),
            server.api_token: (["api"], None),
            server.expiring_token: (["read_api", "read_repository"], f"{today + dt.timedelta(days=3):%Y-%m-%d}"),
            server.limited_token: (["read_user"], None),
            # 2 MB of scopes: within the transport's bound, far beyond what a message may quote
            server.hostile_token: (["read_user", *["s" * 100] * 20_000], None),
        }

    def route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        if not path.startswith(PREFIX + "/api/v4/"):
            return Reply(404, {"message": "404 Not Found"} if path.startswith(PREFIX) else b"Not Found")
        path = path[len(PREFIX + "/api/v4") :]
        sent = headers.get("private-token", "")
        if secrets.compare_digest(sent, self.s.revoked_token):
            return _invalid_token("Token was revoked. You have to re-authorize from the user.")
        if secrets.compare_digest(sent, self.s.expired_token):
            return _invalid_token("Token is expired. You can either do re-authorization or token refresh.")
        live = next((v for k, v in self.tokens.items() if secrets.compare_digest(sent, k)), None)
        if live is None:
            return _UNAUTHORIZED
        scopes, expires_at = live
        if path == "/personal_access_tokens/self":
            return Reply(
                200,
                {
                    "id": 4,
                    "name": "sourcecheck",
                    "revoked": False,
                    "created_at": "2026-07-23T14:31:47.729Z",
                    "scopes": scopes,
                    "user_id": 24,
                    "last_used_at": "2026-12-01T17:58:37.550Z",
                    "active": True,
                    "expires_at": expires_at,
                },
            )
        if not ({"api", "read_api"} & set(scopes)):
            return _insufficient_scope("api read_api")
        parts = path.split("/")  # "", "projects", <id>, ["repository", "tree"]
        if len(parts) >= 3 and parts[1] == "projects":
            return self.project(unquote(parts[2]), "/".join(parts[3:]), query)
        return Reply(404, {"error": "404 Not Found"})

    def project(self, ident: str, rest: str, query: dict[str, str]) -> Reply:
        if ident == str(PROJECT_ID):
            ident = PROJECT
        if ident == BUSY_PROJECT:
            return Reply(
                429,
                b"Retry later\n",
                {"RateLimit-Limit": "2000", "RateLimit-Remaining": "0", "RateLimit-Reset": str(int(time.time()) + 600)},
            )
        if ident == DOWN_PROJECT:
            return Reply(
                503, b"<html><body><h1>503 Service Unavailable</h1></body></html>", {"Content-Type": "text/html"}
            )
        if ident == HUGE_PROJECT:
            return Reply(200, b'{"name": "' + b"x" * (5 * 1024 * 1024) + b'"}', {"Content-Type": "application/json"})
        if ident == SCOPED_PROJECT:
            return _insufficient_scope("api")
        if ident == MOVED_PROJECT:
            moved = f"https://localhost:{self.s.port}{PREFIX}/api/v4/projects/{PROJECT_ID}"
            return Reply(301, b"", {"Location": moved})
        known = {PROJECT, EMPTY_PROJECT, GUEST_PROJECT, HOSTILE_PROJECT}
        if ident not in known:
            return _PROJECT_NOT_FOUND
        hostile = ident == HOSTILE_PROJECT
        body = {
            "id": PROJECT_ID if ident == PROJECT else 300000 + len(ident),
            "path_with_namespace": HOSTILE_TEXT if hostile else ident,
            "visibility": HOSTILE_TEXT if hostile else "private",
            "default_branch": None if ident == EMPTY_PROJECT else (HOSTILE_TEXT if hostile else "main"),
            "empty_repo": ident == EMPTY_PROJECT,
        }
        if rest == "":
            return Reply(200, body)
        if rest != "repository/tree":
            return Reply(404, {"error": "404 Not Found"})
        if ident == GUEST_PROJECT:
            return Reply(403, {"message": "403 Forbidden"})
        if query.get("ref") not in BRANCHES:
            return Reply(404, {"message": "404 Tree Not Found"})
        return Reply(
            200, [{"id": "a1e8f8d7", "name": "README.md", "type": "blob", "path": "README.md", "mode": "100644"}]
        )


@contextmanager
def start_gitlab_server(test_ca: TestCA) -> Iterator[GitLabServer]:
    def make(base: SaasServer) -> GitLabServer:
        return GitLabServer(base.base_url, base.port, base.ca_pem, requests=base.requests, stopping=base.stopping)

    with start_standin(test_ca, make, lambda server: _App(server).route) as server:
        yield server


@pytest.fixture(scope="session")
def gitlab_server(test_ca: TestCA) -> Iterator[GitLabServer]:
    with start_gitlab_server(test_ca) as server:
        yield server
