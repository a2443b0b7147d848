"""Local HTTPS stand-ins for the file-like SaaS APIs (OneDrive), answering their documented bodies.

Fixture ``saas_files_server`` (session-scoped: started once) yields a
:class:`tests.servers.saas.SaasServer` (its credentials: ``token`` valid, ``limited_token``
valid without the file-read permission, ``client_id``/``client_secret``/``refresh_token``
an OAuth client and live grant) whose routes are::

    /onedrive                          Microsoft Graph, the drive endpoints (onedrive)
    /onedrive-download/<id>            the pre-authenticated download URL Graph redirects to (honours Range)
    /login/<tenant>/oauth2/v2.0/token  Microsoft Entra ID's token endpoint (tests.servers.saas's)

OneDrive folders (paths under the drive's root): ``Reports`` (one file), ``Empty``,
``OnlyFolders``, ``Locked`` (its file's download is denied), ``Huge`` (its file's download
ignores Range and sends more than the transport's bound), ``Busy`` (429, Retry-After 120),
``Flaky`` (429, Retry-After 1, once), ``Down`` (503). Every request is appended to
``server.requests``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest.mock import patch
from urllib.parse import unquote

import pytest

from tests.servers import saas
from tests.servers.http import TestCA
from tests.servers.saas import TENANT, Reply, SaasServer, _App, start_saas_server

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


def _graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    inner = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())}
    return Reply(status, {"error": {"code": code, "message": message, "innerError": inner}}, headers or {})


class _Files:
    def __init__(self, server: SaasServer) -> None:
        self.s = server
        self.saas = _App(server)  # Entra ID's token endpoint
        self.flaky = 0

    def route(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str]
    ) -> Reply:
        auth = headers.get("authorization", "")
        bearer = auth[7:] if auth.startswith("Bearer ") else ""
        if path.startswith("/login/"):
            return self.saas.microsoft_token(method, path[len("/login/") :], query, form, headers, bearer)
        if path.startswith("/onedrive-download/"):
            return self.download(path[len("/onedrive-download/") :], headers)
        if path.startswith("/onedrive/"):
            return self.onedrive(unquote(path[len("/onedrive") :]), bearer)
        return Reply(404, {"message": "Not Found"})

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


@contextmanager
def start_saas_files_server(test_ca: TestCA) -> Iterator[SaasServer]:
    """tests.servers.saas's HTTPS server (its handler, TLS and shutdown), routing to :class:`_Files`:
    its ``_App`` is swapped only while the server's handler class is made."""
    with ExitStack() as stack:
        with patch.object(saas, "_App", _Files):
            server = stack.enter_context(start_saas_server(test_ca))
        yield server


@pytest.fixture(scope="session")
def saas_files_server(test_ca: TestCA) -> Iterator[SaasServer]:
    with start_saas_files_server(test_ca) as server:
        yield server
