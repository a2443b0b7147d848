"""Fixture ``azurite``: a real Azure Blob Storage emulator (Azurite, from npm) that checks signatures.

Azurite (3.35.0 and its dependencies pinned by ``.ci/azurite/package-lock.json``, installed
under ``.ci/node`` by ``make test``) verifies
Shared Key signatures and SAS signatures, expiries and permissions the way Azure does, and
answers Azure's error codes (``AuthenticationFailed``, ``ContainerNotFound``,
``AuthorizationPermissionMismatch``...). Strict mode (no ``--loose``): it refuses headers and
parameters it does not support, as the real service would not ignore them either.

One server per test session (only if a test asks for it), on a free 127.0.0.1 port, data in a
temp dir; stopped and deleted at the end. What is in it::

    account   ACCOUNT, key server.key (random)
    data      blobs reports/2024.csv, reports/2025.csv (CSV_BODY), reports/big.bin (4 KiB), ODD_NAME
    empty     no blobs

:meth:`AzuriteServer.sas` makes a service SAS for a container, signed independently of the
connector (the "Create a service SAS" string-to-sign).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from connectors.azure_blob import API_VERSION, shared_key_signature

ACCOUNT = "sourcecheck"
CSV_BODY = b"id,value\n1,2\n"
ODD_NAME = "odd/a b+ü&=.csv"  # a name that must be percent-encoded in the URL (and signed so)
ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob"


@dataclass(frozen=True)
class AzuriteServer:
    """A running Azurite Blob service (see the module docstring for its contents)."""

    endpoint_url: str  # http://127.0.0.1:PORT/ACCOUNT
    port: int
    key: str  # base64
    container: str = "data"
    empty_container: str = "empty"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """An ``azure_blob`` configuration (plain JSON) that succeeds; override any field."""
        return {
            "account_name": ACCOUNT,
            "container": self.container,
            "account_key": self.key,
            "endpoint_url": self.endpoint_url,
            **overrides,
        }

    def sas(self, container: str, permissions: str = "rl", *, expires_in: datetime.timedelta | None = None) -> str:
        """A service SAS (sr=c) for ``container``, valid for ``expires_in`` (default a year)."""
        expiry = datetime.datetime.now(datetime.UTC) + (expires_in or datetime.timedelta(days=365))
        se = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = [permissions, "", se, f"/blob/{ACCOUNT}/{container}", "", "", "", API_VERSION, "c", "", ""]
        string_to_sign = "\n".join([*fields, "", "", "", "", ""])
        digest = hmac.new(base64.b64decode(self.key), string_to_sign.encode(), hashlib.sha256).digest()
        query = {"sv": API_VERSION, "sr": "c", "sp": permissions, "se": se, "sig": base64.b64encode(digest).decode()}
        return urlencode(query)

    def put(self, path: str, params: dict[str, str] | None = None, body: bytes = b"", **headers: str) -> None:
        """A Shared Key signed PUT of ``path`` under the account (a container or a blob)."""
        url = httpx.URL(f"{self.endpoint_url}/{path}", params=params or {})
        sent = {"x-ms-version": API_VERSION, "x-ms-date": formatdate(usegmt=True), **headers}
        sent["Content-Length"] = str(len(body))
        sent["Authorization"] = shared_key_signature(base64.b64decode(self.key), ACCOUNT, "PUT", url, sent)
        answer = httpx.put(url, headers=sent, content=body, timeout=10)
        if answer.status_code not in (201, 200):
            raise RuntimeError(f"PUT {path} answered {answer.status_code}: {answer.text[:500]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    if not AZURITE.exists():
        pytest.fail(f"Azurite is missing ({AZURITE}): run `make test` (it installs .ci/azurite's lock)", pytrace=False)
    key = base64.b64encode(secrets.token_bytes(64)).decode()
    workdir = Path(tempfile.mkdtemp(prefix="sourcecheck-azurite-"))
    port = _free_port()
    log = workdir / "azurite.log"
    env = {**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{key}"}
    args = [
        str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(workdir / "data"),
        "--disableTelemetry", "--disableProductStyleUrl", "--silent",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent
        )
    server = AzuriteServer(endpoint_url=f"http://127.0.0.1:{port}/{ACCOUNT}", port=port, key=key)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"azurite exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Azurite did not start within 60 s:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.1)
        for container in ("data", "empty"):
            server.put(container, {"restype": "container"})
        blob = {"x-ms-blob-type": "BlockBlob"}
        for name in ("reports/2024.csv", "reports/2025.csv"):
            server.put(f"data/{name}", body=CSV_BODY, **blob)
        server.put("data/reports/big.bin", body=b"x" * 4096, **blob)
        server.put(f"data/{quote(ODD_NAME)}", body=CSV_BODY, **blob)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


# --- a hostile or overloaded stand-in ------------------------------------------------------

_LISTING = (
    '<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs>'
    + "".join(
        f"<Blob><Name>b{i}</Name><Properties><Content-Length>9</Content-Length></Properties></Blob>"
        for i in range(5000)
    )
    + "</Blobs></EnumerationResults>"
).encode()


class _StandIn(BaseHTTPRequestHandler):
    """``/busy/...``: 503 ServerBusy (Retry-After 120); ``/down/...``: 500 InternalError; ``/limit/...``:
    429 (Retry-After 3600); ``/disabled/...``: 403 AccountIsDisabled;
    ``/huge/...``: a 5000-blob listing, then Get Blob ignoring the range (8 MiB)."""

    def log_message(self, *args: Any) -> None:
        pass

    def _error(self, status: int, code: str, **headers: str) -> None:
        body = f'<?xml version="1.0"?><Error><Code>{code}</Code><Message>{code}\nRequestId:x</Message></Error>'
        self.send_response(status)
        self.send_header("x-ms-error-code", code)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body.encode())

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook
        if self.path.startswith("/busy/"):
            return self._error(503, "ServerBusy", Retry_After="120")
        if self.path.startswith("/down/"):
            return self._error(500, "InternalError")
        if self.path.startswith("/limit/"):
            return self._error(429, "TooManyRequests", Retry_After="3600")
        if self.path.startswith("/disabled/"):
            return self._error(403, "AccountIsDisabled")
        if "comp=properties" in self.path:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if "comp=list" in self.path:
            self.send_response(200)
            self.send_header("Content-Length", str(len(_LISTING)))
            self.end_headers()
            self.wfile.write(_LISTING)
            return None
        size = 8 * 1024 * 1024
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            for _ in range(size // 65536):
                self.wfile.write(b"y" * 65536)
        except OSError:
            pass  # the client stopped reading, as it should
        return None


@pytest.fixture(scope="session")
def azure_standin() -> Iterator[str]:
    """The base URL (http://127.0.0.1:PORT) of :class:`_StandIn`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
