"""Google Cloud Storage for the gcs connector: a real emulator, and a stand-in answering Google's bodies.

Fixture ``gcs_emulator`` (session): gcp-storage-emulator (pinned in the ``dev`` extra), a
Cloud Storage JSON API emulator, in a child process on a free 127.0.0.1 port (plain http, in
memory). It does not check credentials; it lists and serves objects as the API does (prefixes,
ranged media downloads)::

    bucket data     reports/2024.csv (3000 bytes), reports/2025.csv, notes/a b+c.txt
    bucket empty    nothing

Fixture ``gcs_standin`` (session): tests.servers.saas's HTTPS server (test CA) with these
routes added (credentials: ``server.token`` valid, ``server.limited_token`` valid without
``storage.objects.list`` or ``storage.buckets.get``; tokens the token endpoint issues valid)::

    /gcs-token                 a Google token endpoint: the JWT bearer grant, whose assertion's
                               RS256 signature is checked with SERVICE_ACCOUNT's public key
                               (and its iss, aud, scope, iat and exp), Google's invalid_grant
                               answers otherwise
    /gcs/storage/v1/...        the JSON API (base_url ``server.url("/gcs")``): bucket ``data``
                               (one object under reports/), ``locked`` (listed, reading denied),
                               ``busy`` (429, Retry-After 120), ``down`` (503); any other bucket
                               does not exist

:func:`service_account_json` is a key file for SERVICE_ACCOUNT (``token_uri`` as given).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest.mock import patch
from urllib.parse import quote, unquote

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.servers import saas
from tests.servers.http import TestCA
from tests.servers.s3 import _free_ports
from tests.servers.saas import Reply, SaasServer, _App, start_saas_server
from tests.servers.webdav import start_child, stop_child

SERVICE_ACCOUNT = "reader@sourcecheck-test.iam.gserviceaccount.com"
SERVICE_ACCOUNT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # a key Google does not know
REPORT = b"year,total\n" + b"".join(b"2024-%04d,%d\n" % (i, i * 7) for i in range(300))[:2989]
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account_json(token_uri: str, *, key: rsa.RSAPrivateKey = SERVICE_ACCOUNT_KEY) -> str:
    """A service account key file, as the Cloud console downloads it."""
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "sourcecheck-test",
            "private_key_id": "1f2e3d4c5b6a",
            "private_key": _pem(key),
            "client_email": SERVICE_ACCOUNT,
            "client_id": "109876543210987654321",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }
    )


# --- the emulator ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """The emulator's base URL (http://127.0.0.1:PORT), with the buckets above."""
    try:
        import gcp_storage_emulator  # noqa: F401
    except ImportError:
        pytest.fail("gcp-storage-emulator is missing: pip install -e '.[dev]' installs it", pytrace=False)
    (port,) = _free_ports(1)
    log = Path(tempfile.mkdtemp(prefix="sourcecheck-gcs-")) / "emulator.log"
    command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port)]
    process = start_child([*command, "--in-memory", "--quiet"], log)
    url = f"http://127.0.0.1:{port}"
    try:
        _fill(process, url, log)
        yield url
    finally:
        stop_child(process)


def _fill(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the emulator exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url + "/", timeout=2)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the emulator did not start within 30 s:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.1)
    for bucket in ("data", "empty"):
        httpx.post(f"{url}/storage/v1/b", json={"name": bucket}, timeout=5).raise_for_status()
    for name, body in (("reports/2024.csv", REPORT), ("reports/2025.csv", b"year,total\n"), ("notes/a b+c.txt", b"x")):
        httpx.post(
            f"{url}/upload/storage/v1/b/data/o",
            params={"uploadType": "media", "name": name},
            content=body,
            headers={"Content-Type": "text/plain"},
            timeout=5,
        ).raise_for_status()


# --- the stand-in ----------------------------------------------------------------------------


def _google_error(status: int, message: str, reason: str, headers: dict[str, str] | None = None) -> Reply:
    error = {"message": message, "domain": "global", "reason": reason}
    if status == 401:
        error |= {"locationType": "header", "location": "Authorization"}
    return Reply(status, {"error": {"code": status, "message": message, "errors": [error]}}, headers or {})


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class _Gcs(_App):
    """tests.servers.saas's routes, plus Google's token endpoint and the Cloud Storage JSON API."""

    def route(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], headers: dict[str, str]
    ) -> Reply:
        if path == "/gcs-token":
            return self.token(form)
        if path.startswith("/gcs/storage/v1/b/"):
            auth = headers.get("authorization", "")
            return self.storage(unquote(path[len("/gcs/storage/v1/b/") :]), query, headers, auth[7:])
        return super().route(method, path, query, form, headers)

    def token(self, form: dict[str, str]) -> Reply:
        def invalid(description: str) -> Reply:
            return Reply(400, {"error": "invalid_grant", "error_description": description})

        if form.get("grant_type") != JWT_GRANT:
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "})
        try:
            head, body, signature = form.get("assertion", "").split(".")
            header, claims = json.loads(_b64decode(head)), json.loads(_b64decode(body))
        except ValueError:
            return invalid("Invalid JWT: it is not well formed")
        if claims.get("iss") != SERVICE_ACCOUNT:
            return invalid("Invalid grant: account not found")
        try:
            SERVICE_ACCOUNT_KEY.public_key().verify(
                _b64decode(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            return invalid("Invalid JWT Signature.")
        now = time.time()
        iat, exp = claims.get("iat", 0), claims.get("exp", 0)
        if header.get("alg") != "RS256" or not (iat - 60 <= now <= exp and exp - iat <= 3600):
            return invalid(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim."
            )
        if claims.get("aud") != self.s.url("/gcs-token") or "devstorage" not in str(claims.get("scope")):
            return invalid("Invalid JWT: Failed audience check.")
        access = "ya29.sa-" + secrets.token_urlsafe(24)
        self.s.issued.append(access)
        return Reply(200, {"access_token": access, "expires_in": 3599, "token_type": "Bearer"})

    def storage(self, path: str, query: dict[str, str], headers: dict[str, str], token: str) -> Reply:
        if not self.s.valid(token):
            return _google_error(401, "Invalid Credentials", "authError")
        found = re.fullmatch(r"([^/]+)(/o(?:/(.+))?)?", path)
        if found is None:
            return _google_error(404, "Not Found", "notFound")
        bucket, objects, name = found.groups()
        who = SERVICE_ACCOUNT if token in self.s.issued else "ada@example.com"
        if bucket == "busy":
            return _google_error(
                429,
                "The rate of requests for bucket busy exceeds the rate limit. Please reduce the rate of requests.",
                "rateLimitExceeded",
                {"Retry-After": "120"},
            )
        if bucket == "down":
            return _google_error(503, "We encountered an internal error. Please try again.", "backendError")
        if bucket not in ("data", "locked"):
            return _google_error(404, "The specified bucket does not exist.", "notFound")
        limited = token == self.s.limited_token
        if objects is None:
            if limited:
                return _google_error(
                    403,
                    f"{who} does not have storage.buckets.get access to the Google Cloud Storage bucket. "
                    f"Permission 'storage.buckets.get' denied on resource (or it may not exist).",
                    "forbidden",
                )
            return Reply(200, {"kind": "storage#bucket", "name": bucket, "location": "EU", "storageClass": "STANDARD"})
        if name is None:
            if limited:
                return _google_error(
                    403,
                    f"{who} does not have storage.objects.list access to the Google Cloud Storage bucket. "
                    f"Permission 'storage.objects.list' denied on resource (or it may not exist).",
                    "forbidden",
                )
            return Reply(200, {"kind": "storage#objects", "items": [{"name": "reports/2024.csv", "size": "2989"}]})
        if bucket == "locked":
            return _google_error(
                403,
                f"{who} does not have storage.objects.get access to the Google Cloud Storage object. "
                f"Permission 'storage.objects.get' denied on resource (or it may not exist).",
                "forbidden",
            )
        if name != "reports/2024.csv" or query.get("alt") != "media":
            return _google_error(404, f"No such object: {bucket}/{quote(name)}", "notFound")
        ranged = re.fullmatch(r"bytes=0-(\d+)", headers.get("range", ""))
        if ranged is None:
            return Reply(200, REPORT, {"Content-Type": "text/csv"})
        end = min(int(ranged.group(1)), len(REPORT) - 1)
        return Reply(
            206, REPORT[: end + 1], {"Content-Type": "text/csv", "Content-Range": f"bytes 0-{end}/{len(REPORT)}"}
        )


@contextmanager
def start_gcs_standin(test_ca: TestCA) -> Iterator[SaasServer]:
    """tests.servers.saas's HTTPS server with :class:`_Gcs` as its app, swapped in only while it is made."""
    with ExitStack() as stack:
        with patch.object(saas, "_App", _Gcs):
            server = stack.enter_context(start_saas_server(test_ca))
        yield server


@pytest.fixture(scope="session")
def gcs_standin(test_ca: TestCA) -> Iterator[SaasServer]:
    with start_gcs_standin(test_ca) as server:
        yield server


def other_key_json(token_uri: str) -> str:
    """A key file for SERVICE_ACCOUNT with a private key Google does not know (deleted, say)."""
    return service_account_json(token_uri, key=OTHER_KEY)
