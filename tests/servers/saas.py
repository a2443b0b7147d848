"""A local HTTPS stand-in for the SaaS APIs the saas connectors call, answering as they do.

Fixture ``saas_server`` (function-scoped) yields a :class:`SaasServer`: one HTTPS server on
127.0.0.1 whose certificate is signed by the session's test CA (``server.ca_pem``). Each
provider lives under its own prefix, so a connector's ``base_url`` is ``server.url(prefix)``::

    /notion               Notion API              (base_url for the notion connector)
    /confluence/wiki      Confluence Cloud REST   (confluence)
    /github               GitHub REST API         (github)
    /slack/api            Slack Web API           (slack)
    /google               www.googleapis.com      (google_drive)
    /google-oauth/token   Google's OAuth 2.0 token endpoint
    /google-sa-token      Google's token endpoint for service accounts (the JWT bearer grant,
                          signature checked with :func:`drive_service_account_json`'s key;
                          ``unauthorized_client`` for a ``sub`` when the account has no
                          domain-wide delegation)
    /hostile-oauth/token  a token endpoint answering a megabyte-long error_description
    /graph                Microsoft Graph         (sharepoint)
    /graph-download/<id>  the pre-authenticated download URL Graph's .../content redirects to
    /login/<tenant>/oauth2/v2.0/token   Microsoft Entra ID's token endpoint
    /hang/...             accepts the request and never answers (until the server stops)

Credentials (random per server, so a test can search any output for them):

``token``               valid everywhere, with every scope and permission
``limited_token``       valid, but lacks what the access step needs: Notion 'Read content'
                        capability, Confluence space scope, GitHub Contents permission
                        (a fine-grained token), Slack channels:read, a Google Drive scope,
                        Graph Sites.Read.All
``public_token``        GitHub: a classic token with only ``public_repo``; Confluence: a
                        bearer token whose user can view no space
``installation_token``  GitHub: an App installation token (``ghs_``)
``client_id`` / ``client_secret`` / ``refresh_token``: an OAuth client and a live grant
(for Google and Microsoft); ``revoked_refresh_token`` is refused with ``invalid_grant``.
Access tokens the token endpoints issue are valid from then on (``issued``).

The error bodies are those the providers document (or demonstrably send): Notion's
``object_not_found``, GitHub's ``Bad credentials``, Slack's HTTP 200 ``{"ok": false}``,
Google's ``insufficientPermissions``, Graph's ``accessDenied``, RFC 6749 token errors...
Every request is appended to ``server.requests``.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors import get_connector, run_check
from connectors.base import CheckResult
from tests.servers.http import TestCA, _Server, server_context

NOTION_PAGE_ID = "59833787-2cf9-4fdf-8782-e53db20768a5"
NOTION_DATABASE_ID = "d9824bdc-8445-4327-be8b-5b47500af6ce"
CONFLUENCE_EMAIL = "reader@example.com"
CONFLUENCE_GUEST = "guest@example.com"  # served as the anonymous user, as a public site does
CONFLUENCE_SPACE = "ENG"
GITHUB_REPO = "acme/handbook"  # private
GITHUB_EMPTY_REPO = "acme/empty"
GITHUB_RATE_LIMITED_REPO = "acme/busy"
GITHUB_SSO_REPO = "acme-sso/handbook"
SLACK_CHANNEL = "C0123456789"
SLACK_NOT_MEMBER_CHANNEL = "C0NOTMEMBER"
DRIVE_FOLDER_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"
DRIVE_DOC_ID = "1DocDocDocDocDocDocDocDocDoc0123"
DRIVE_EMAIL = "ada@example.com"
# Drive folders for the first-bytes read: the main folder lists DRIVE_AGENDA_ID (a Google Doc,
# skipped) then DRIVE_FILE_ID (a PDF, downloadable with Range); the others hold nothing, one file
# whose download its owner turned off (403 cannotDownloadFile), and only a Google Doc.
DRIVE_FILE_ID = "1PdfPdfPdfPdfPdfPdfPdfPdfPdf0123"
DRIVE_FILE_BYTES = bytes(range(256)) * 12  # 3 KiB: more than FIRST_BYTES
DRIVE_AGENDA_ID = "1AgendaAgendaAgendaAgendaAg0123"
DRIVE_EMPTY_FOLDER_ID = "1EmptyEmptyEmptyEmptyEmptyEm0123"
DRIVE_LOCKED_FOLDER_ID = "1LockedLockedLockedLockedLoc0123"
DRIVE_LOCKED_FILE_ID = "1SalariesSalariesSalariesSal0123"
DRIVE_DOCS_FOLDER_ID = "1DocsOnlyDocsOnlyDocsOnlyDoc0123"
DRIVE_SERVICE_ACCOUNT = "drive-reader@sourcecheck-test.iam.gserviceaccount.com"  # domain-wide delegation granted
DRIVE_UNDELEGATED_ACCOUNT = "drive-plain@sourcecheck-test.iam.gserviceaccount.com"  # none granted
DRIVE_DELEGATED_CLIENT_IDS = {"118000000000000000001"}
SHAREPOINT_HOST = "contoso.sharepoint.com"
SHAREPOINT_SITE = "contoso.sharepoint.com:/sites/Marketing"
SHAREPOINT_SITE_ID = "contoso.sharepoint.com,2c712604-1370-44e7-a1f5-426573fda80a,2d2244c3-251a-49ea-93a8-39e1c3a060fe"
SHAREPOINT_FOLDER = "Handbook/2024"
# Folders of the Documents library for the first-bytes read: Handbook/2024 lists a subfolder, then
# report.pdf (SHAREPOINT_FILE_BYTES; its content redirects to /graph-download, which honours Range).
SHAREPOINT_EMPTY_FOLDER = "Handbook/Empty"
SHAREPOINT_ONLY_FOLDERS = "Handbook/Archive"  # subfolders only
SHAREPOINT_LOCKED_FOLDER = "Handbook/Confidential"  # its file's download is denied (403 accessDenied)
SHAREPOINT_ELSEWHERE_FOLDER = "Handbook/Elsewhere"  # its file's download redirects to a metadata address
SHAREPOINT_FILE_BYTES = bytes(range(256)) * 8  # 2 KiB: more than FIRST_BYTES
TENANT = "contoso.onmicrosoft.com"

_DRIVES = {
    "b!documents": {"name": "Documents", "webUrl": "https://contoso.sharepoint.com/sites/Marketing/Shared%20Documents"},
    "b!policies": {"name": "Policies", "webUrl": "https://contoso.sharepoint.com/sites/Marketing/Policies"},
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names lower-cased
    form: dict[str, str]  # a POSTed form's fields


@dataclass
class SaasServer:
    base_url: str
    port: int
    ca_pem: str
    token: str = field(default_factory=lambda: "tok-" + secrets.token_urlsafe(18))
    limited_token: str = field(default_factory=lambda: "lim-" + secrets.token_urlsafe(18))
    public_token: str = field(default_factory=lambda: "ghp_" + secrets.token_urlsafe(18))
    installation_token: str = field(default_factory=lambda: "ghs_" + secrets.token_urlsafe(18))
    client_id: str = "1234567890-sourcecheck.apps.example.com"
    client_secret: str = field(default_factory=lambda: "cs-" + secrets.token_urlsafe(18))
    refresh_token: str = field(default_factory=lambda: "rt-" + secrets.token_urlsafe(24))
    revoked_refresh_token: str = field(default_factory=lambda: "rt-revoked-" + secrets.token_urlsafe(24))
    issued: list[str] = field(default_factory=list)  # access tokens issued for a user
    issued_app: list[str] = field(default_factory=list)  # access tokens issued to an app (no user)
    requests: list[Request] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "") -> str:
        return self.base_url + path

    def all_secrets(self) -> list[str]:
        """Every secret this server knows, issued access tokens included."""
        return [
            self.token,
            self.limited_token,
            self.public_token,
            self.installation_token,
            self.client_secret,
            self.refresh_token,
            self.revoked_refresh_token,
            *self.issued,
            *self.issued_app,
        ]

    def valid(self, token: str) -> bool:
        known = [
            self.token,
            self.limited_token,
            self.public_token,
            self.installation_token,
            *self.issued,
            *self.issued_app,
        ]
        return any(secrets.compare_digest(token, k) for k in known)


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)


def _error_trace() -> str:
    now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    return f"\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}\r\nTimestamp: {now}"


class _App:
    """The routes; each returns a :class:`Reply`."""

    def __init__(self, server: SaasServer) -> None:
        self.s = server

    def route(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str]
    ) -> Reply:
        auth = headers.get("authorization", "")
        bearer = auth[7:] if auth.startswith("Bearer ") else auth[6:] if auth.startswith("token ") else ""
        for prefix, handler in (
            ("/notion", self.notion),
            ("/confluence/wiki", self.confluence),
            ("/github", self.github),
            ("/slack/api", self.slack),
            ("/hostile-oauth/token", self.hostile_token),
            ("/google-oauth/token", self.google_token),
            ("/google-sa-token", self.google_sa_token),
            ("/google", self.google),
            ("/graph-download", self.graph_download),
            ("/graph", self.graph),
            ("/login/", self.microsoft_token),
        ):
            if path == prefix or path.startswith(prefix + "/") or (prefix.endswith("/") and path.startswith(prefix)):
                return handler(method, path[len(prefix) :], query, form, headers, bearer)
        return Reply(404, {"message": "Not Found"})

    # --- Notion ------------------------------------------------------------------------

    def notion(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str], token: str
    ) -> Reply:
        def error(status: int, code: str, message: str) -> Reply:
            return Reply(
                status,
                {
                    "object": "error",
                    "status": status,
                    "code": code,
                    "message": message,
                    "request_id": str(uuid.uuid4()),
                },
            )

        if "notion-version" not in headers:
            return error(
                400,
                "missing_version",
                "Notion-Version header failed validation: Notion-Version header should be defined, instead was "
                "`undefined`.",
            )
        if not self.s.valid(token):
            return error(401, "unauthorized", "API token is invalid.")
        if path == "/v1/users/me":
            return Reply(
                200,
                {
                    "object": "user",
                    "id": "92a680bb-6970-4726-952b-4f4c03bff617",
                    "name": "Sourcecheck",
                    "avatar_url": None,
                    "type": "bot",
                    "bot": {"owner": {"type": "workspace", "workspace": True}, "workspace_name": "Acme"},
                },
            )
        found = re.fullmatch(r"/v1/(pages|databases)/([0-9a-fA-F-]{32,36})", path)
        if found is None:
            return error(400, "invalid_request_url", "Invalid request URL.")
        if token == self.s.limited_token:
            return error(403, "restricted_resource", "Insufficient permissions for this endpoint.")
        kind, raw = found.group(1), found.group(2).replace("-", "")
        object_id = str(uuid.UUID(raw))
        title = [{"type": "text", "plain_text": "Handbook", "text": {"content": "Handbook"}}]
        if kind == "pages" and object_id == NOTION_PAGE_ID:
            return Reply(
                200,
                {
                    "object": "page",
                    "id": object_id,
                    "archived": False,
                    "properties": {"title": {"id": "title", "type": "title", "title": title}},
                },
            )
        if kind == "databases" and object_id == NOTION_DATABASE_ID:
            return Reply(
                200,
                {
                    "object": "database",
                    "id": object_id,
                    "title": [{**title[0], "plain_text": "Policies"}],
                    "properties": {},
                },
            )
        if kind == "pages" and object_id == NOTION_DATABASE_ID:
            return error(
                400,
                "validation_error",
                f"Provided ID {object_id} is a database, not a page. Use the retrieve database API instead, "
                f"`/v1/databases/{object_id}`.",
            )
        singular = kind[:-1]
        return error(
            404,
            "object_not_found",
            f"Could not find {singular} with ID: {object_id}. Make sure the relevant pages and databases are "
            "shared with your integration.",
        )

    # --- Confluence --------------------------------------------------------------------

    def confluence(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str], token: str
    ) -> Reply:
        auth = headers.get("authorization", "")
        user: str | None = None  # "known", "anonymous", or refused
        if auth.startswith("Basic "):
            email, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            if email == CONFLUENCE_GUEST:
                user = "anonymous"
            elif email == CONFLUENCE_EMAIL and self.s.valid(secret):
                user, token = "known", secret
            else:
                return Reply(
                    401,
                    b"Basic authentication with passwords is deprecated.  For more information, see: https://developer.atlassian.com/cloud/confluence/deprecation-notice-basic-auth/",
                    {"Content-Type": "text/plain;charset=UTF-8"},
                )
        elif token:
            if not self.s.valid(token):
                return Reply(
                    401,
                    {"statusCode": 401, "message": "This request requires authentication."},
                    {"X-Seraph-LoginReason": "AUTHENTICATED_FAILED"},
                )
            user = "known"
        else:
            user = "anonymous"
        if path == "/rest/api/user/current":
            if user == "anonymous":
                return Reply(200, {"type": "anonymous", "displayName": "Anonymous", "operations": []})
            return Reply(
                200,
                {
                    "type": "known",
                    "accountId": "5b10ac8d82e05b22cc7d4ef5",
                    "accountType": "atlassian",
                    "email": CONFLUENCE_EMAIL,
                    "publicName": "Ada Reader",
                    "displayName": "Ada Reader",
                },
            )
        if path == "/rest/api/space" and token == self.s.limited_token:
            return Reply(401, {"code": 401, "message": "Unauthorized; scope does not match"})
        if path == "/rest/api/space":  # the spaces the user can view; public_token's user views none
            limit = int(query.get("limit", "25"))
            visible = (
                []
                if token == self.s.public_token
                else [{"id": 98305, "key": CONFLUENCE_SPACE, "name": "Engineering", "type": "global"}]
            )
            return Reply(
                200,
                {"results": visible[:limit], "start": 0, "limit": limit, "size": len(visible[:limit]), "_links": {}},
            )
        found = re.fullmatch(r"/rest/api/space/([^/]+)", path)
        if found is None:
            return Reply(404, {"statusCode": 404, "message": "null for uri: " + path})
        if token == self.s.limited_token:
            return Reply(401, {"code": 401, "message": "Unauthorized; scope does not match"})
        key = unquote(found.group(1))
        if key == CONFLUENCE_SPACE and user == "known":
            return Reply(200, {"id": 98305, "key": key, "name": "Engineering", "type": "global", "status": "current"})
        return Reply(
            404,
            {
                "statusCode": 404,
                "data": {"authorized": False, "valid": True, "errors": [], "successful": False},
                "message": f"No space with key : {key}",
            },
        )

    # --- GitHub ------------------------------------------------------------------------

    def github(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str], token: str
    ) -> Reply:
        docs = "https://docs.github.com/rest"

        def error(status: int, message: str, extra: dict[str, str] | None = None) -> Reply:
            return Reply(status, {"message": message, "documentation_url": docs, "status": str(status)}, extra or {})

        if not self.s.valid(token):
            return error(401, "Bad credentials")
        installation = token == self.s.installation_token
        scopes = {self.s.token: "repo, read:org", self.s.public_token: "public_repo"}
        classic = {"X-OAuth-Scopes": scopes[token]} if token in scopes else {}
        if token == self.s.public_token:  # a classic token made with a 3-day expiration, as GitHub reports it
            soon = time.gmtime(time.time() + 3 * 86400 + 3600)
            classic["GitHub-Authentication-Token-Expiration"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", soon)
        if path == "/user":
            if installation:
                return error(403, "Resource not accessible by integration")
            return Reply(200, {"login": "octo-reader", "id": 1, "type": "User"}, classic)
        if path == "/installation/repositories":
            if not installation:
                return error(
                    403,
                    "You must authenticate with an installation access token in order to list repositories for an "
                    "installation.",
                )
            return Reply(
                200,
                {"total_count": 2, "repository_selection": "selected", "repositories": [{"full_name": GITHUB_REPO}]},
            )
        found = re.fullmatch(r"/repos/([^/]+/[^/]+)(/commits)?", path)
        if found is None:
            return error(404, "Not Found")
        repo, commits = found.group(1), found.group(2)
        if repo == GITHUB_RATE_LIMITED_REPO:
            reset = str(int(time.time()) + 600)
            return error(
                403,
                "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please "
                "include the request ID 0000:0000.",
                {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset},
            )
        if repo == GITHUB_SSO_REPO:
            return error(
                403,
                "Resource protected by organization SAML enforcement. You must grant your Personal Access token "
                "access to this organization.",
                {"X-GitHub-SSO": "required; url=https://github.com/orgs/acme-sso/sso?authorization_request=AAAA"},
            )
        if repo not in (GITHUB_REPO, GITHUB_EMPTY_REPO) or token == self.s.public_token:
            return error(404, "Not Found")
        if not commits:
            return Reply(200, {"id": 42, "full_name": repo, "private": True, "default_branch": "main"}, classic)
        if token == self.s.limited_token:
            return error(
                403,
                "Resource not accessible by personal access token",
                {"X-Accepted-GitHub-Permissions": "contents=read"},
            )
        if repo == GITHUB_EMPTY_REPO:
            return error(409, "Git Repository is empty.")
        return Reply(
            200, [{"sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e", "commit": {"message": "Initial commit"}}]
        )

    # --- Slack -------------------------------------------------------------------------

    def slack(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str], token: str
    ) -> Reply:
        args = {**query, **form}
        if not token:
            return Reply(200, {"ok": False, "error": "not_authed"})
        if not self.s.valid(token):
            return Reply(200, {"ok": False, "error": "invalid_auth"})
        scopes = (
            "chat:write"
            if token == self.s.limited_token
            else "channels:read,channels:history,groups:read,groups:history"
        )
        scope_header = {"X-OAuth-Scopes": scopes}
        if path == "/auth.test":
            return Reply(
                200,
                {
                    "ok": True,
                    "url": "https://acme.slack.com/",
                    "team": "Acme",
                    "user": "sourcecheck",
                    "team_id": "T0001",
                    "user_id": "U0001",
                    "bot_id": "B0001",
                    "is_enterprise_install": False,
                },
                scope_header,
            )
        channels = {
            SLACK_CHANNEL: {
                "id": SLACK_CHANNEL,
                "name": "general",
                "is_channel": True,
                "is_private": False,
                "is_archived": False,
                "is_member": True,
            },
            SLACK_NOT_MEMBER_CHANNEL: {
                "id": SLACK_NOT_MEMBER_CHANNEL,
                "name": "random",
                "is_channel": True,
                "is_private": False,
                "is_archived": False,
                "is_member": False,
            },
        }
        if path in ("/conversations.info", "/conversations.history"):
            needed = "channels:read" if path == "/conversations.info" else "channels:history"
            if token == self.s.limited_token:
                return Reply(
                    200, {"ok": False, "error": "missing_scope", "needed": needed, "provided": scopes}, scope_header
                )
            channel = channels.get(args.get("channel", ""))
            if channel is None:
                return Reply(200, {"ok": False, "error": "channel_not_found"}, scope_header)
            if path == "/conversations.info":
                return Reply(200, {"ok": True, "channel": channel}, scope_header)
            if not channel["is_member"]:
                return Reply(200, {"ok": False, "error": "not_in_channel"}, scope_header)
            return Reply(
                200,
                {
                    "ok": True,
                    "messages": [{"type": "message", "text": "hello", "ts": "1512085950.000216"}],
                    "has_more": True,
                },
                scope_header,
            )
        return Reply(200, {"ok": False, "error": "unknown_method", "req_method": path.lstrip("/")})

    # --- Google ------------------------------------------------------------------------

    def google(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str], token: str
    ) -> Reply:
        def error(
            status: int, message: str, reason: str, state: str | None = None, extra: dict[str, Any] | None = None
        ) -> Reply:
            body: dict[str, Any] = {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
            }
            if state:
                body["status"] = state
            body.update(extra or {})
            return Reply(status, {"error": body})

        if not self.s.valid(token):
            reply = error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "authError",
                "UNAUTHENTICATED",
            )
            reply.headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
            return reply
        if token == self.s.limited_token:
            reply = error(
                403,
                "Request had insufficient authentication scopes.",
                "insufficientPermissions",
                "PERMISSION_DENIED",
                {
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                            "domain": "googleapis.com",
                            "metadata": {
                                "service": "drive.googleapis.com",
                                "method": "google.apps.drive.v3.DriveAbout.Get",
                            },
                        }
                    ]
                },
            )
            reply.headers["WWW-Authenticate"] = (
                'Bearer realm="https://accounts.google.com/", error="insufficient_scope", scope="https://www.googleapis.com/auth/drive.readonly"'
            )
            return reply
        if path == "/drive/v3/about":
            return Reply(
                200,
                {
                    "user": {
                        "kind": "drive#user",
                        "displayName": "Ada Reader",
                        "me": True,
                        "permissionId": "0123",
                        "emailAddress": DRIVE_EMAIL,
                    }
                },
            )
        if path == "/drive/v3/files":
            parent = re.search(r"'([A-Za-z0-9_-]+)' in parents", query.get("q", ""))
            children = _DRIVE_CHILDREN.get(parent.group(1), []) if parent is not None else []
            return Reply(200, {"kind": "drive#fileList", "incompleteSearch": False, "files": children})
        found = re.fullmatch(r"/drive/v3/files/([^/]+)", path)
        if found is None:
            return error(404, "Not Found", "notFound")
        file_id = unquote(found.group(1))
        if query.get("alt") == "media":
            if file_id == DRIVE_LOCKED_FILE_ID:
                return error(403, "The user does not have permission to download this file.", "cannotDownloadFile")
            if file_id != DRIVE_FILE_ID:
                return error(404, f"File not found: {file_id}.", "notFound")
            return ranged(DRIVE_FILE_BYTES, headers, "application/pdf")
        if file_id in (DRIVE_EMPTY_FOLDER_ID, DRIVE_LOCKED_FOLDER_ID, DRIVE_DOCS_FOLDER_ID):
            return Reply(
                200,
                {
                    "id": file_id,
                    "name": {DRIVE_EMPTY_FOLDER_ID: "Empty", DRIVE_LOCKED_FOLDER_ID: "Payroll"}.get(file_id, "Docs"),
                    "mimeType": "application/vnd.google-apps.folder",
                    "trashed": False,
                    "capabilities": {"canListChildren": True},
                },
            )
        if file_id == DRIVE_FOLDER_ID:
            return Reply(
                200,
                {
                    "id": file_id,
                    "name": "Handbook",
                    "mimeType": "application/vnd.google-apps.folder",
                    "trashed": False,
                    "capabilities": {"canListChildren": True},
                },
            )
        if file_id == DRIVE_DOC_ID:
            return Reply(
                200,
                {
                    "id": file_id,
                    "name": "Onboarding",
                    "mimeType": "application/vnd.google-apps.document",
                    "trashed": False,
                    "capabilities": {"canListChildren": False},
                },
            )
        reply = error(404, f"File not found: {file_id}.", "notFound")
        reply.body["error"]["errors"][0].update({"location": "fileId", "locationType": "parameter"})
        return reply

    def google_token(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str], token: str
    ) -> Reply:
        if form.get("grant_type") != "refresh_token":
            return Reply(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "Invalid grant_type: " + form.get("grant_type", ""),
                },
            )
        if form.get("client_id") != self.s.client_id:
            return Reply(401, {"error": "invalid_client", "error_description": "The OAuth client was not found."})
        if not secrets.compare_digest(form.get("client_secret", ""), self.s.client_secret):
            return Reply(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        if not secrets.compare_digest(form.get("refresh_token", ""), self.s.refresh_token):
            return Reply(400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
        access = "ya29." + secrets.token_urlsafe(32)
        self.s.issued.append(access)
        return Reply(
            200,
            {
                "access_token": access,
                "expires_in": 3599,
                "scope": "https://www.googleapis.com/auth/drive.readonly",
                "token_type": "Bearer",
            },
        )

    def google_sa_token(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str], token: str
    ) -> Reply:
        """Google's answers to a service account's JWT bearer grant (the signature is checked)."""

        def invalid(description: str) -> Reply:
            return Reply(400, {"error": "invalid_grant", "error_description": description})

        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "})
        try:
            head, body, signature = form.get("assertion", "").split(".")
            claims = json.loads(_b64decode(body))
            drive_key().public_key().verify(
                _b64decode(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (ValueError, InvalidSignature):
            return invalid("Invalid JWT Signature.")
        account = claims.get("iss")
        if account not in _DRIVE_CLIENT_IDS:
            return invalid("Invalid grant: account not found")
        if claims.get("aud") != self.s.url("/google-sa-token") or "drive" not in str(claims.get("scope")):
            return invalid("Invalid JWT: Failed audience check.")
        if "sub" in claims and _DRIVE_CLIENT_IDS[account] not in DRIVE_DELEGATED_CLIENT_IDS:
            return Reply(
                401,
                {
                    "error": "unauthorized_client",
                    "error_description": "Client is unauthorized to retrieve access tokens using this method, or "
                    "client not authorized for any of the scopes requested.",
                },
            )
        access = "ya29.sa-" + secrets.token_urlsafe(24)
        self.s.issued.append(access)
        return Reply(200, {"access_token": access, "expires_in": 3599, "token_type": "Bearer"})

    def hostile_token(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str], token: str
    ) -> Reply:
        """A token endpoint refusing the grant with a megabyte-long ``error_description``: a
        million spaces between two words, the worst case of a backtracking pattern."""
        return Reply(
            400, {"error": "invalid_grant", "error_description": "Token has been revoked" + " " * 1_000_000 + "."}
        )

    # --- Microsoft ---------------------------------------------------------------------

    def graph(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str], token: str
    ) -> Reply:
        def error(status: int, code: str, message: str) -> Reply:
            inner = {
                "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
            }
            return Reply(status, {"error": {"code": code, "message": message, "innerError": inner}})

        if not self.s.valid(token):
            return error(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE "
                "Compact Serialization Format. (JWS): 'EncodedHeader.EndcodedPayload.EncodedSignature'. (JWE): "
                "'EncodedProtectedHeader.EncodedEncryptedKey.EncodedInitializationVector.EncodedCiphertext.EncodedAuthenticationTag'.",
            )
        path = unquote(path)
        if path == "/v1.0/me":
            if token in self.s.issued_app:
                return error(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            return Reply(
                200, {"displayName": "Ada Reader", "userPrincipalName": "ada@contoso.com", "id": str(uuid.uuid4())}
            )
        if token == self.s.limited_token:
            return error(403, "accessDenied", "Access denied")
        site_id = SHAREPOINT_SITE_ID
        if path in (f"/v1.0/sites/{SHAREPOINT_SITE}", f"/v1.0/sites/{site_id}"):
            return Reply(
                200,
                {
                    "id": site_id,
                    "name": "Marketing",
                    "displayName": "Marketing",
                    "webUrl": "https://contoso.sharepoint.com/sites/Marketing",
                },
            )
        if path.startswith("/v1.0/sites/") and not path.startswith(f"/v1.0/sites/{site_id}/"):
            return error(404, "itemNotFound", "Requested site could not be found")
        if path == f"/v1.0/sites/{site_id}/drive":
            return Reply(200, {"id": "b!documents", **_DRIVES["b!documents"]})
        if path == f"/v1.0/sites/{site_id}/drives":
            return Reply(200, {"value": [{"id": k, "driveType": "documentLibrary", **v} for k, v in _DRIVES.items()]})
        content = re.fullmatch(r"/v1.0/drives/b!documents/items/([^/]+)/content", path)
        if content is not None:
            item = content.group(1)
            if item == "01SECRET":
                return error(403, "accessDenied", "Access denied")
            if item == "01ELSEWHERE":
                return Reply(302, b"", {"Location": "https://169.254.169.254/latest/meta-data/"})
            if item not in ("01REPORT", "01CHILD"):
                return error(404, "itemNotFound", "The resource could not be found.")
            return Reply(302, b"", {"Location": self.s.url(f"/graph-download/{item}?tempauth=v1.eyJ0")})
        found = re.fullmatch(r"/v1.0/drives/([^/]+)/(root|items/[^/]+)(?::/(.*?))?(/children)?", path)
        if found is None or found.group(1) not in _DRIVES:
            return error(404, "itemNotFound", "The resource could not be found.")
        item_path = found.group(3)
        if found.group(2).startswith("items/") and found.group(4) and found.group(2)[6:] in _SHAREPOINT_CHILDREN:
            return Reply(200, {"value": _SHAREPOINT_CHILDREN[found.group(2)[6:]]})
        if item_path is not None:
            if found.group(1) == "b!documents" and item_path in _SHAREPOINT_FOLDERS:
                return Reply(
                    200, {"id": _SHAREPOINT_FOLDERS[item_path], "name": item_path.rsplit("/", 1)[-1], "folder": {}}
                )
            if found.group(1) == "b!documents" and item_path == "Handbook/readme.docx":
                return Reply(
                    200,
                    {
                        "id": "01FILE",
                        "name": "readme.docx",
                        "file": {"mimeType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
                    },
                )
            return error(404, "itemNotFound", "The resource could not be found.")
        if found.group(4):
            return Reply(200, {"value": [{"id": "01CHILD", "name": "Welcome.docx", "file": {}, "size": 512}]})
        return Reply(200, {"id": "01ROOT", "name": "root", "folder": {"childCount": 3}})

    def graph_download(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str], token: str
    ) -> Reply:
        """A pre-authenticated download URL: no token needed (and none should come), Range honoured."""
        if "tempauth" not in query:
            return Reply(401, {"error": {"code": "InvalidAuthenticationToken", "message": "no tempauth"}})
        return ranged(SHAREPOINT_FILE_BYTES, headers, "application/octet-stream")

    def microsoft_token(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str], token: str
    ) -> Reply:
        def error(status: int, code: str, number: int, description: str) -> Reply:
            return Reply(
                status,
                {
                    "error": code,
                    "error_description": f"AADSTS{number}: {description}{_error_trace()}",
                    "error_codes": [number],
                    "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"),
                    "trace_id": str(uuid.uuid4()),
                    "correlation_id": str(uuid.uuid4()),
                },
            )

        found = re.fullmatch(r"([^/]+)/oauth2/v2.0/token", path)
        if found is None:
            return Reply(404, b"")
        tenant = found.group(1)
        if tenant != TENANT:
            return error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
                "into the correct cloud. Check with your subscription administrator, this may happen if there are "
                "no active subscriptions for the tenant.",
            )
        if form.get("client_id") != self.s.client_id:
            return error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory '{TENANT}'. "
                "This can happen if the application has not been installed by the administrator of the tenant or "
                "consented to by any user in the tenant. You may have sent your authentication request to the "
                "wrong tenant.",
            )
        if not secrets.compare_digest(form.get("client_secret", ""), self.s.client_secret):
            return error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                "value, not the client secret ID, for a secret added to app "
                "'00000000-0000-0000-0000-000000000000'.",
            )
        grant = form.get("grant_type")
        if grant == "client_credentials":
            access = "eyJ0eXAiOiJKV1Qi.app." + secrets.token_urlsafe(32)
            self.s.issued_app.append(access)
            return Reply(
                200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access}
            )
        if grant != "refresh_token":
            return error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if not secrets.compare_digest(form.get("refresh_token", ""), self.s.refresh_token):
            return error(
                400,
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new "
                "interactive authorization request for this user and resource.",
            )
        access = "eyJ0eXAiOiJKV1Qi.user." + secrets.token_urlsafe(32)
        self.s.issued.append(access)
        return Reply(
            200,
            {
                "token_type": "Bearer",
                "scope": "https://graph.microsoft.com/Sites.Read.All https://graph.microsoft.com/User.Read",
                "expires_in": 4257,
                "ext_expires_in": 4257,
                "access_token": access,
                "refresh_token": "1.AR" + secrets.token_urlsafe(24),
            },
        )


def _handler(server: SaasServer) -> type[BaseHTTPRequestHandler]:
    app = _App(server)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            form = (
                {k: v[0] for k, v in parse_qs(raw).items()}
                if "form-urlencoded" in headers.get("content-type", "")
                else {}
            )
            server.requests.append(Request(self.command, self.path, headers, form))
            parts = urlsplit(self.path)
            if parts.path.startswith("/hang"):
                server.stopping.wait(30)  # never answers while the server runs
                return
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            reply = app.route(self.command, parts.path, query, form, headers)
            content = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            if not isinstance(reply.body, bytes):
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    return Handler


_SHAREPOINT_FOLDERS = {
    SHAREPOINT_FOLDER: "01FOLDER",
    SHAREPOINT_EMPTY_FOLDER: "01EMPTY",
    SHAREPOINT_ONLY_FOLDERS: "01ARCHIVE",
    SHAREPOINT_LOCKED_FOLDER: "01LOCKED",
    SHAREPOINT_ELSEWHERE_FOLDER: "01AWAY",
}
_SHAREPOINT_CHILDREN: dict[str, list[dict[str, Any]]] = {
    "01FOLDER": [
        {"id": "01SUB", "name": "Drafts", "folder": {"childCount": 2}},
        {"id": "01REPORT", "name": "report.pdf", "file": {"mimeType": "application/pdf"}, "size": 2048},
    ],
    "01EMPTY": [],
    "01ARCHIVE": [{"id": "01OLD", "name": "2019", "folder": {"childCount": 9}}],
    "01LOCKED": [{"id": "01SECRET", "name": "salaries.xlsx", "file": {}, "size": 4096}],
    "01AWAY": [{"id": "01ELSEWHERE", "name": "elsewhere.docx", "file": {}, "size": 4096}],
}

_DRIVE_CLIENT_IDS = {DRIVE_SERVICE_ACCOUNT: "118000000000000000001", DRIVE_UNDELEGATED_ACCOUNT: "118000000000000000002"}


def _drive_file(file_id: str, name: str, mime: str, size: int | None = None) -> dict[str, Any]:
    return {"kind": "drive#file", "id": file_id, "name": name, "mimeType": mime} | (
        {"size": str(size)} if size is not None else {}
    )


_DRIVE_CHILDREN = {
    DRIVE_FOLDER_ID: [
        _drive_file(DRIVE_AGENDA_ID, "Agenda", "application/vnd.google-apps.document"),
        _drive_file(DRIVE_FILE_ID, "Handbook.pdf", "application/pdf", len(DRIVE_FILE_BYTES)),
    ],
    DRIVE_EMPTY_FOLDER_ID: [],
    DRIVE_LOCKED_FOLDER_ID: [_drive_file(DRIVE_LOCKED_FILE_ID, "Salaries.xlsx", "application/vnd.ms-excel", 2048)],
    DRIVE_DOCS_FOLDER_ID: [_drive_file(DRIVE_AGENDA_ID, "Agenda", "application/vnd.google-apps.document")],
}


def ranged(content: bytes, headers: dict[str, str], content_type: str) -> Reply:
    """``content``, or its first bytes for a ``Range: bytes=0-N`` request (206, as the providers answer)."""
    found = re.fullmatch(r"bytes=0-(\d+)", headers.get("range", ""))
    if found is None:
        return Reply(200, content, {"Content-Type": content_type})
    end = min(int(found.group(1)), len(content) - 1)
    return Reply(
        206, content[: end + 1], {"Content-Type": content_type, "Content-Range": f"bytes 0-{end}/{len(content)}"}
    )


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@functools.cache
def drive_key() -> rsa.RSAPrivateKey:
    """The private key of the Drive service accounts (made once, when first needed)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def drive_service_account_json(token_uri: str, account: str = DRIVE_SERVICE_ACCOUNT) -> str:
    """A key file for ``account`` (one of the two Drive service accounts), as the Cloud console downloads it."""
    pem = drive_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "sourcecheck-test",
            "private_key_id": "7a6b5c4d3e2f",
            "private_key": pem.decode(),
            "client_email": account,
            "client_id": _DRIVE_CLIENT_IDS[account],
            "token_uri": token_uri,
        }
    )


@contextmanager
def start_saas_server(test_ca: TestCA) -> Iterator[SaasServer]:
    """The fake APIs over TLS on a free 127.0.0.1 port, until the block ends."""
    httpd = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.tls = server_context(*test_ca.issue())
    port = int(httpd.server_address[1])
    server = SaasServer(base_url=f"https://127.0.0.1:{port}", port=port, ca_pem=test_ca.pem)
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


@pytest.fixture
def saas_server(test_ca: TestCA) -> Iterator[SaasServer]:
    with start_saas_server(test_ca) as server:
        yield server


# --- helpers for the tests that run checks against this server -------------------------


async def run(name: str, config: dict[str, Any], timeout: float = 5.0) -> CheckResult:
    """Parse ``config`` for connector ``name`` and run its check."""
    connector = get_connector(name)
    return await run_check(connector, connector.parse_config(config), timeout=timeout)


def dump(result: CheckResult) -> str:
    """Every text of a result, as the API would show it."""
    return json.dumps(asdict(result), default=str)


def assert_no_secret(result: CheckResult, server: SaasServer) -> None:
    text = dump(result)
    for secret in server.all_secrets():
        assert secret not in text, "a secret leaked into the result"
