"""Local HTTPS stand-ins for the file-like SaaS APIs (OneDrive), answering their documented bodies.

Fixture ``saas_files_server`` (session-scoped: started once) yields a
:class:`tests.servers.saas.SaasServer` (its credentials: ``token`` valid, ``limited_token``
valid without the file-read permission, ``client_id``/``client_secret``/``refresh_token``
an OAuth client and live grant) whose routes are::

    /onedrive                          Microsoft Graph, the drive endpoints (onedrive)
    /salesforce                       a Salesforce org (salesforce): REST API, userinfo, token endpoint (JWT bearer)
    /box/api, /box/oauth2/token       Box's API and token endpoint (box); downloads redirect to /onedrive-download
    /dropbox/api, /dropbox/content  Dropbox's API and content hosts (base_url, content_url of dropbox)
    /dropbox/oauth2/token             its token endpoint (RFC 6749 answers)
    /onedrive-download/<id>            the pre-authenticated download URL Graph redirects to (honours Range)
    /login/<tenant>/oauth2/v2.0/token  Microsoft Entra ID's token endpoint (tests.servers.saas's)

OneDrive folders (paths under the drive's root): ``Reports`` (one file), ``Empty``,
``OnlyFolders``, ``Locked`` (its file's download is denied), ``Huge`` (its file's download
ignores Range and sends more than the transport's bound), ``Busy`` (429, Retry-After 120),
``Flaky`` (429, Retry-After 1, once), ``Down`` (503). Every request is appended to
``server.requests``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from unittest.mock import patch
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.servers import saas
from tests.servers.http import TestCA
from tests.servers.saas import TENANT, Reply, Request, SaasServer, _App, start_saas_server

ONEDRIVE_ID = "b!onedrive-ada"
ONEDRIVE_MISSING_ID = "b!no-such-drive"
ONEDRIVE_FILE_BYTES = bytes(range(256)) * 16  # 4 KiB: more than FIRST_BYTES
HUGE_BYTES = 5 * 1024 * 1024

_FILES: dict[str, dict[str, Any]] = {
    "": {
        "value": [
            {"id": "01SUB", "name": "Reports", "folder": {"childCount": 1}},
            {"id": "01WELCOME", "name": "Welcome.docx", "file": {}, "size": 4096},
        ]
    },
    "Reports": {
        "value": [{"id": "01REPORT", "name": "report.pdf", "file": {"mimeType": "application/pdf"}, "size": 4096}]
    },
    "Empty": {"value": []},
    "OnlyFolders": {"value": [{"id": "01SUB2", "name": "2024", "folder": {"childCount": 0}}]},
    "Locked": {"value": [{"id": "01LOCKED", "name": "salaries.xlsx", "file": {}, "size": 4096}]},
    "Huge": {"value": [{"id": "01HUGE", "name": "dump.bin", "file": {}, "size": HUGE_BYTES}]},
}


DROPBOX_TEAM_TOKEN = "team-" + secrets.token_urlsafe(18)
DROPBOX_MEMBER = "dbmid:AAHhy7WsR0x-u4ZCqiDl5Fz5zvuL3kmspwU"
DROPBOX_TEAM_ERROR = (
    'Error in call to API function "users/get_current_account": This API function operates on a single Dropbox '
    "account, but the OAuth 2 access token you provided is for an entire Dropbox Business team.  Since your API "
    "app key has team member file access permissions, you can operate on a team member's Dropbox by providing "
    'the "Dropbox-API-Select-User" HTTP header or "select_user" URL parameter to specify the exact user '
    "<https://www.dropbox.com/developers/documentation/http/teams>."
)
_DROPBOX_STATE = {
    "Busy": Reply(
        429,
        {
            "error_summary": "too_many_requests/..",
            "error": {"reason": {".tag": "too_many_requests"}, "retry_after": 120},
        },
        {"Retry-After": "120"},
    ),
    "Down": Reply(503, b"Service Unavailable", {"Content-Type": "text/plain", "Retry-After": "30"}),
}


BOX_UNAUTHORIZED_CLIENT = "box-app-not-authorized"
BOX_ENTERPRISE = "123456789"
BOX_LOCKED_FILE = "9000001"
BOX_LOOP_FILE = "9000002"
BOX_FOLDERS: dict[str, list[dict[str, Any]] | Reply] = {
    "0": [{"id": "8000001", "name": "Reports", "folder": {}}],
    "8000001": [{"id": "9000000", "name": "report.pdf", "file": {}}],
    "8000002": [],
    "8000003": [{"id": BOX_LOCKED_FILE, "name": "salaries.xlsx", "file": {}}],
    "8000004": [{"id": BOX_LOOP_FILE, "name": "loop.bin", "file": {}}],
    "8000005": Reply(
        429,
        {
            "type": "error",
            "status": 429,
            "code": "rate_limit_exceeded",
            "message": "Request rate limit exceeded, please try again later",
        },
        {"Retry-After": "120"},
    ),
    "8000006": Reply(503, b"<html><body>Service Unavailable</body></html>", {"Content-Type": "text/html"}),
}


SALESFORCE_USER = "ada@example.com"
SALESFORCE_NO_API_USER = "noapi@example.com"
SALESFORCE_GONE_USER = "gone@example.com"
SALESFORCE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SALESFORCE_KEY_PEM = SALESFORCE_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
_FIELDS = [{"name": n, "type": t} for n, t in (("Id", "id"), ("Name", "string"), ("OwnerId", "reference"))]
SALESFORCE_OBJECTS = {
    "Account": Reply(200, {"name": "Account", "label": "Account", "queryable": True, "fields": _FIELDS}),
    "Busy__c": Reply(403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
    "Throttled__c": Reply(
        429, [{"message": "Too many requests", "errorCode": "REQUEST_LIMIT_EXCEEDED"}], {"Retry-After": "120"}
    ),
    "Down__c": Reply(
        503, [{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}], {"Retry-After": "30"}
    ),
}


def _graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    inner = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())}
    return Reply(status, {"error": {"code": code, "message": message, "innerError": inner}}, headers or {})


class _Files:
    def __init__(self, server: SaasServer) -> None:
        self.s = server
        self.saas = _App(server)  # Entra ID's token endpoint
        self.flaky = 0

    def route(self, method: str, path: str, form: dict[str, str], headers: dict[str, str], body: Any) -> Reply:
        auth = headers.get("authorization", "")
        bearer = auth[7:] if auth.startswith("Bearer ") else ""
        if path.startswith("/login/"):
            return self.saas.microsoft_token(method, path[len("/login/") :], {}, form, headers, bearer)
        if path.startswith("/onedrive-download/"):
            return self.download(path[len("/onedrive-download/") :], headers)
        if path.startswith("/salesforce/"):
            return self.salesforce(path[len("/salesforce") :], form, headers, bearer)
        if path.startswith("/box/"):
            return self.box(path[len("/box") :], form, headers, bearer)
        if path.startswith("/dropbox/"):
            return self.dropbox(path[len("/dropbox") :], form, headers, body, bearer)
        if path.startswith("/onedrive/"):
            return self.onedrive(unquote(path[len("/onedrive") :]), bearer)
        return Reply(404, {"message": "Not Found"})

    # --- Salesforce ----------------------------------------------------------------------

    def salesforce(self, path: str, form: dict[str, str], headers: dict[str, str], token: str) -> Reply:
        def error(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> Reply:
            return Reply(status, [{"message": message, "errorCode": code}], extra or {})

        if path == "/services/oauth2/token":
            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
                return self.saas.google_token("POST", path, {}, form, headers, token)
            return self.salesforce_jwt(form.get("assertion", ""))
        if not self.s.valid(token):
            return error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if path == "/services/oauth2/userinfo":
            return Reply(200, {"preferred_username": SALESFORCE_USER, "name": "Ada Reader", "user_id": "005xx"})
        if token == self.s.limited_token:
            return error(403, "API_DISABLED_FOR_ORG", "API is not enabled for this Organization or Partner")
        found = re.fullmatch(r"/services/data/v\d+\.0/sobjects/(\w+)/describe", path)
        if found is None or found.group(1) not in SALESFORCE_OBJECTS:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        return SALESFORCE_OBJECTS[found.group(1)]

    def salesforce_jwt(self, assertion: str) -> Reply:
        def error(code: str, description: str) -> Reply:
            return Reply(400, {"error": code, "error_description": description})

        try:
            head, body, signature = assertion.split(".")
            SALESFORCE_KEY.public_key().verify(
                base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
                f"{head}.{body}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, InvalidSignature):
            return error("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.s.client_id:
            return error("invalid_client_id", "client identifier invalid")
        user = claims.get("sub")
        if user not in (SALESFORCE_USER, SALESFORCE_NO_API_USER, SALESFORCE_GONE_USER) or claims["exp"] < time.time():
            return error("invalid_grant", "user hasn't approved this consumer")
        access = "00Dxx!" + secrets.token_urlsafe(24)
        if user == SALESFORCE_NO_API_USER:  # valid, on a profile without "API Enabled"
            access = self.s.limited_token
        elif user == SALESFORCE_USER:  # SALESFORCE_GONE_USER's token is never valid: a revoked session
            self.s.issued.append(access)
        return Reply(
            200,
            {"access_token": access, "instance_url": self.s.url("/salesforce"), "token_type": "Bearer", "scope": "api"},
        )

    # --- Box -----------------------------------------------------------------------------

    def box(self, path: str, form: dict[str, str], headers: dict[str, str], token: str) -> Reply:
        def error(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> Reply:
            body = {"type": "error", "status": status, "code": code, "message": message, "request_id": uuid.uuid4().hex}
            return Reply(status, body, extra or {})

        if path == "/oauth2/token":
            return self.box_token(form)
        if not self.s.valid(token):
            invalid = 'Bearer realm="Service", error="invalid_token", error_description="The access token is invalid."'
            return Reply(401, b"", {"WWW-Authenticate": invalid})
        if path == "/api/2.0/users/me":
            return Reply(200, {"type": "user", "id": "33333", "name": "Ada Reader", "login": "ada@example.com"})
        if token == self.s.limited_token:
            return error(403, "access_denied_insufficient_permissions", "Access denied - insufficient permission")
        found = re.fullmatch(r"/api/2.0/folders/(\d+)/items", path)
        if found is not None:
            folder = BOX_FOLDERS.get(found.group(1))
            if folder is None:
                return error(404, "not_found", "Not Found")
            if isinstance(folder, Reply):
                return folder
            entries = [{"type": "file" if "file" in e else "folder", "id": e["id"], "name": e["name"]} for e in folder]
            return Reply(200, {"total_count": len(entries), "entries": entries[:1], "offset": 0, "limit": 1})
        found = re.fullmatch(r"/api/2.0/files/(\d+)/content", path)
        if found is not None:
            if found.group(1) == BOX_LOCKED_FILE:
                return error(403, "access_denied_insufficient_permissions", "Access denied - insufficient permission")
            if found.group(1) == BOX_LOOP_FILE:  # a redirect to itself, for ever
                return Reply(302, b"", {"Location": self.s.url(f"/box{path}")})
            return Reply(302, b"", {"Location": self.s.url(f"/onedrive-download/{found.group(1)}?box=1")})
        return error(404, "not_found", "Not Found")

    def box_token(self, form: dict[str, str]) -> Reply:
        if form.get("client_id") == BOX_UNAUTHORIZED_CLIENT:
            return Reply(
                400,
                {
                    "error": "unauthorized_client",
                    "error_description": 'The "box_subject_type" value is unauthorized for this client_id',
                },
            )
        if form.get("client_id") != self.s.client_id or form.get("client_secret") != self.s.client_secret:
            return Reply(400, {"error": "invalid_client", "error_description": "The client credentials are invalid"})
        access = "box-" + secrets.token_urlsafe(24)
        self.s.issued_app.append(access)
        return Reply(200, {"access_token": access, "expires_in": 3600, "token_type": "bearer", "restricted_to": []})

    # --- Dropbox -------------------------------------------------------------------------

    def dropbox(self, path: str, form: dict[str, str], headers: dict[str, str], body: Any, token: str) -> Reply:
        def error(status: int, tag: str, extra: dict[str, Any] | None = None, summary: str = "") -> Reply:
            inner = {".tag": tag, **(extra or {})}
            return Reply(status, {"error_summary": summary or f"{tag}/..", "error": inner})

        if path == "/oauth2/token":  # RFC 6749 answers, as Dropbox's token endpoint gives them
            return self.saas.google_token("POST", path, {}, form, headers, token)
        if token == DROPBOX_TEAM_TOKEN and "dropbox-api-select-user" not in headers:
            return Reply(400, DROPBOX_TEAM_ERROR.encode(), {"Content-Type": "text/plain; charset=utf-8"})
        if not (self.s.valid(token) or token == DROPBOX_TEAM_TOKEN):
            return error(401, "invalid_access_token")
        if path == "/api/2/users/get_current_account":
            return Reply(
                200,
                {
                    "account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc",
                    "name": {"display_name": "Ada Reader", "given_name": "Ada"},
                    "email": "ada@example.com",
                },
            )
        if token == self.s.limited_token:
            return error(401, "missing_scope", {"required_scope": "files.metadata.read"})
        if path == "/api/2/files/list_folder":
            folder = str((body or {}).get("path", "")).lstrip("/")
            if folder in _DROPBOX_STATE:
                return _DROPBOX_STATE[folder]
            if folder not in _FILES:
                return error(409, "path", {"path": {".tag": "not_found"}}, "path/not_found/..")
            entries = [
                {".tag": "file" if "file" in e else "folder", "id": "id:" + e["id"], "name": e["name"]}
                for e in _FILES[folder]["value"]
            ]
            return Reply(200, {"entries": entries[: int((body or {}).get("limit", 100))], "has_more": len(entries) > 1})
        if path == "/content/2/files/download":
            arg = json.loads(headers.get("dropbox-api-arg", "{}"))
            item = str(arg.get("path", "")).removeprefix("id:")
            if item == "01LOCKED":
                return error(409, "path", {"path": {".tag": "restricted_content"}}, "path/restricted_content/..")
            return self.download(item, headers)
        return Reply(404, b"Unknown API function", {"Content-Type": "text/plain"})

    # --- OneDrive (Microsoft Graph) -----------------------------------------------------

    def onedrive(self, path: str, token: str) -> Reply:
        if not self.s.valid(token):
            return _graph_error(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.).",
            )
        drive = {
            "id": ONEDRIVE_ID,
            "name": "OneDrive",
            "driveType": "business",
            "owner": {"user": {"displayName": "Ada Reader", "id": str(uuid.uuid4())}},
        }
        if path in ("/v1.0/me/drive", f"/v1.0/drives/{ONEDRIVE_ID}"):
            return Reply(200, drive)
        if path.startswith("/v1.0/drives/") and not path.startswith(f"/v1.0/drives/{ONEDRIVE_ID}/"):
            return _graph_error(404, "itemNotFound", "The resource could not be found.")
        if token == self.s.limited_token:
            return _graph_error(403, "accessDenied", "Access denied")
        found = re.fullmatch(rf"/v1.0/drives/{re.escape(ONEDRIVE_ID)}/root(?::/(.*?):)?/children", path)
        if found is not None:
            return self.children(found.group(1) or "")
        found = re.fullmatch(rf"/v1.0/drives/{re.escape(ONEDRIVE_ID)}/items/([^/]+)/content", path)
        if found is not None:
            if found.group(1) == "01LOCKED":
                return _graph_error(403, "accessDenied", "Access denied")
            location = self.s.url(f"/onedrive-download/{found.group(1)}?tempauth={uuid.uuid4().hex}")
            return Reply(302, b"", {"Location": location})
        return _graph_error(404, "itemNotFound", "The resource could not be found.")

    def children(self, folder: str) -> Reply:
        if folder == "Busy":
            return _graph_error(429, "activityLimitReached", "The request has been throttled", {"Retry-After": "120"})
        if folder == "Flaky":
            self.flaky += 1
            if self.flaky % 2:
                return _graph_error(429, "activityLimitReached", "The request has been throttled", {"Retry-After": "1"})
            return Reply(200, _FILES["Reports"])
        if folder == "Down":
            return _graph_error(
                503, "serviceNotAvailable", "The service is temporarily unavailable.", {"Retry-After": "30"}
            )
        if folder not in _FILES:
            return _graph_error(404, "itemNotFound", "The resource could not be found.")
        return Reply(200, _FILES[folder])

    def download(self, item: str, headers: dict[str, str]) -> Reply:
        item = item.split("?")[0]
        if item == "01HUGE":  # ignores Range
            return Reply(200, b"\0" * HUGE_BYTES, {"Content-Type": "application/octet-stream"})
        found = re.fullmatch(r"bytes=(\d+)-(\d+)", headers.get("range", ""))
        if found is None:
            return Reply(200, ONEDRIVE_FILE_BYTES, {"Content-Type": "application/octet-stream"})
        start, end = int(found.group(1)), min(int(found.group(2)), len(ONEDRIVE_FILE_BYTES) - 1)
        return Reply(
            206,
            ONEDRIVE_FILE_BYTES[start : end + 1],
            {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {start}-{end}/{len(ONEDRIVE_FILE_BYTES)}",
            },
        )


def entra_oauth(server: SaasServer, **override: Any) -> dict[str, Any]:
    """Credentials ``oauth`` of the Microsoft connectors: the server's client and live grant at its Entra ID."""
    return {
        "type": "oauth",
        "tenant": TENANT,
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "refresh_token": server.refresh_token,
        "token_url": server.url(f"/login/{TENANT}/oauth2/v2.0/token"),
        **override,
    }


def _handler(server: SaasServer) -> type[BaseHTTPRequestHandler]:
    """A handler that hands :class:`_Files` the JSON body too (Dropbox's RPC arguments)."""
    files = _Files(server)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self.answer()

        do_POST = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            raw = self.rfile.read(int(headers.get("content-length") or 0)).decode()
            kind = headers.get("content-type", "")
            form = {k: v[0] for k, v in parse_qs(raw).items()} if "form-urlencoded" in kind else {}
            server.requests.append(Request(self.command, self.path, headers, form))
            parts = urlsplit(self.path)
            if parts.path.startswith("/hang"):
                server.stopping.wait(30)
                return
            try:
                body = json.loads(raw) if "json" in kind and raw else None
            except ValueError:
                body = None
            reply = files.route(self.command, parts.path, form, headers, body)
            out = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            extra = {} if isinstance(reply.body, bytes) else {"Content-Type": "application/json"}
            for name, value in {**extra, **reply.headers, "Content-Length": str(len(out))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(out)

    return Handler


@contextmanager
def start_saas_files_server(test_ca: TestCA) -> Iterator[SaasServer]:
    """tests.servers.saas's HTTPS server (TLS, thread, shutdown) with :func:`_handler`, swapped in only while
    the server is made."""
    with ExitStack() as stack:
        with patch.object(saas, "_handler", _handler):
            server = stack.enter_context(start_saas_server(test_ca))
        yield server


@pytest.fixture(scope="session")
def saas_files_server(test_ca: TestCA) -> Iterator[SaasServer]:
    with start_saas_files_server(test_ca) as server:
        yield server
