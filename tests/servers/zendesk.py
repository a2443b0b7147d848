"""A local HTTPS stand-in for Zendesk's REST API (users/me and the help center's articles),
answering the bodies Zendesk sends.

Fixture ``zendesk_server`` (session-scoped: started once) yields a :class:`ZendeskServer` on
127.0.0.1, its certificate signed by the session's test CA (``server.ca_pem``). Each account lives
under its own prefix, standing for its subdomain: ``server.url("/acme")`` is the connector's
``base_url`` for the account ``acme``, and ``/hang`` accepts a request and never answers. Every
request is appended to ``server.requests``.

Accounts: ``acme`` (a help center with 3 articles in en-us, none in fr), ``empty`` (a help center
without articles), ``nohc`` (no help center: 404 on its API), ``busy`` (429, Retry-After 600),
``down`` (503), ``hostile`` (a 200 KB user name and email, a 200 KB 403 description), ``huge``
(a 5 MB users/me). Any other prefix is Zendesk's 404 "No help desk at <subdomain>.zendesk.com".

Credentials (random per server, so a test can search any output for them): HTTP Basic
``<email>/token:<api_token>`` with ``agent@example.com`` and ``api_token`` (role agent),
``enduser@example.com`` and ``end_user_token`` (role end-user), ``guest@example.com`` and
``restricted_token`` (an agent whose role has no help center access: 403 on the articles);
``oauth_token`` as a bearer (role admin). A Basic pair Zendesk does not accept is served
users/me as the anonymous user (``id`` null), 401 "Couldn't authenticate you" elsewhere; an
unknown bearer is 401 ``invalid_token``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import pytest

from tests.servers.http import TestCA
from tests.servers.saas import Reply, Request, SaasServer
from tests.servers.standin import start_standin

ACCOUNT = "acme"
EMPTY_ACCOUNT = "empty"
NO_HC_ACCOUNT = "nohc"
BUSY_ACCOUNT = "busy"
DOWN_ACCOUNT = "down"
HOSTILE_ACCOUNT = "hostile"
HUGE_ACCOUNT = "huge"
AGENT_EMAIL = "agent@example.com"
END_USER_EMAIL = "enduser@example.com"
RESTRICTED_EMAIL = "guest@example.com"
LOCALE = "en-us"
HOSTILE_TEXT = "A" * 200_000

_ARTICLE = {"id": 35467, "title": "How to reset your password", "locale": LOCALE, "draft": False}
_ANONYMOUS = {
    "id": None,
    "url": None,
    "name": "Anonymous user",
    "email": "invalid@example.com",
    "role": "end-user",
    "active": True,
    "verified": False,
}
_COULD_NOT_AUTHENTICATE = Reply(
    401, {"error": "Couldn't authenticate you"}, {"WWW-Authenticate": 'Basic realm="Web Password"'}
)
_INVALID_TOKEN = Reply(
    401,
    {
        "error": "invalid_token",
        "error_description": "The access token provided is expired, revoked, malformed or invalid for other reasons.",
    },
    {"WWW-Authenticate": 'Bearer realm="Zendesk", error="invalid_token"'},
)
_FORBIDDEN = {
    "error": "Forbidden",
    "description": "You do not have access to this page. Please contact the account owner of this help desk for "
    "further help.",
}


@dataclass
class ZendeskServer:
    base_url: str
    port: int
    ca_pem: str
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    end_user_token: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    restricted_token: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    oauth_token: str = field(default_factory=lambda: secrets.token_hex(32))
    requests: list[Request] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "") -> str:
        return self.base_url + path

    def all_secrets(self) -> list[str]:
        """Every token of this server (each field named ``*_token``)."""
        return [getattr(self, f.name) for f in fields(self) if f.name.endswith("_token")]

    def config(self, account: str = ACCOUNT, **override: Any) -> dict[str, Any]:
        """A configuration of the zendesk connector (an agent's API token) that succeeds on ``acme``."""
        return {
            "base_url": self.url(f"/{account}"),
            "ca_cert": self.ca_pem,
            "credentials": {"type": "api_token", "email": AGENT_EMAIL, "api_token": self.api_token},
        } | override


class _App:
    def __init__(self, server: ZendeskServer) -> None:
        self.s = server

    def user(self, headers: dict[str, str]) -> dict[str, Any] | Reply:
        """The user the Authorization header signs in, the anonymous user for a bad Basic pair, or a 401."""
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer "):
            if secrets.compare_digest(auth[7:], self.s.oauth_token):
                return {"id": 3001, "name": "Ada Admin", "email": "admin@example.com", "role": "admin"}
            return _INVALID_TOKEN
        try:
            pair = base64.b64decode(auth[6:], validate=True).decode() if auth.startswith("Basic ") else ""
        except (binascii.Error, UnicodeDecodeError):
            pair = ""
        login, _, token = pair.partition(":")
        known = {
            f"{AGENT_EMAIL}/token": (self.s.api_token, {"id": 1001, "name": "Avery Agent", "role": "agent"}),
            f"{END_USER_EMAIL}/token": (self.s.end_user_token, {"id": 1002, "name": "Eve End", "role": "end-user"}),
            f"{RESTRICTED_EMAIL}/token": (self.s.restricted_token, {"id": 1003, "name": "Gus", "role": "agent"}),
        }
        if login in known and secrets.compare_digest(token, known[login][0]):
            return {**known[login][1], "email": login.removesuffix("/token")}
        return _ANONYMOUS

    def route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        account, _, rest = path.lstrip("/").partition("/")
        rest = "/" + rest
        if account not in (
            ACCOUNT,
            EMPTY_ACCOUNT,
            NO_HC_ACCOUNT,
            BUSY_ACCOUNT,
            DOWN_ACCOUNT,
            HOSTILE_ACCOUNT,
            HUGE_ACCOUNT,
        ):
            title = f"No help desk at {account[:60]}.zendesk.com"
            message = "There is no help desk configured at this address. This means that the address is available."
            return Reply(404, {"error": {"title": title, "message": message}})
        if account == BUSY_ACCOUNT:
            return Reply(
                429, {"error": "APIRateLimitExceeded", "description": "Too many requests"}, {"Retry-After": "600"}
            )
        if account == DOWN_ACCOUNT:
            return Reply(
                503, b"<html><body><h1>503 Service Unavailable</h1></body></html>", {"Content-Type": "text/html"}
            )
        user = self.user(headers)
        if isinstance(user, Reply):
            return user
        if rest == "/api/v2/users/me.json":
            if account == HUGE_ACCOUNT:
                return Reply(
                    200,
                    b'{"user": {"name": "' + b"x" * (5 * 1024 * 1024) + b'"}}',
                    {"Content-Type": "application/json"},
                )
            if account == HOSTILE_ACCOUNT and user["id"] is not None:
                user = {**user, "name": HOSTILE_TEXT, "email": HOSTILE_TEXT, "role": HOSTILE_TEXT}
            return Reply(200, {"user": user})
        if user["id"] is None:
            return _COULD_NOT_AUTHENTICATE
        if not rest.startswith("/api/v2/help_center/") or not rest.endswith("/articles.json"):
            return Reply(404, {"error": "InvalidEndpoint", "description": "Not found"})
        if account == NO_HC_ACCOUNT:
            return Reply(404, {"error": "RecordNotFound", "description": "Not found"})
        if account == HOSTILE_ACCOUNT:
            return Reply(403, {"error": "Forbidden", "description": HOSTILE_TEXT})
        if user["email"] == RESTRICTED_EMAIL:
            return Reply(403, _FORBIDDEN)
        locale = rest.removeprefix("/api/v2/help_center").removesuffix("/articles.json").strip("/")
        if locale not in ("", LOCALE, "fr"):
            return Reply(404, {"error": "RecordNotFound", "description": "Not found"})
        count = 0 if account == EMPTY_ACCOUNT or locale == "fr" else 3
        per_page = int(query.get("per_page", "30"))
        return Reply(
            200,
            {
                "articles": [_ARTICLE][: min(count, per_page)],
                "count": count,
                "next_page": None,
                "page": 1,
                "page_count": 1 if count else 0,
                "per_page": per_page,
                "previous_page": None,
                "sort_by": "position",
                "sort_order": "asc",
            },
        )


@contextmanager
def start_zendesk_server(test_ca: TestCA) -> Iterator[ZendeskServer]:
    def make(base: SaasServer) -> ZendeskServer:
        return ZendeskServer(base.base_url, base.port, base.ca_pem, requests=base.requests, stopping=base.stopping)

    with start_standin(test_ca, make, lambda server: _App(server).route) as server:
        yield server


@pytest.fixture(scope="session")
def zendesk_server(test_ca: TestCA) -> Iterator[ZendeskServer]:
    with start_zendesk_server(test_ca) as server:
        yield server
