"""Real HTTP(S) servers on free loopback ports, each in a thread.

Fixtures (function-scoped; each yields an :class:`HttpServer`):

``http_server``          plain HTTP on 127.0.0.1
``https_server``         the same app over TLS; its certificate (for 127.0.0.1, ::1 and
                         ``localhost``) is signed by a CA made for the test session, whose
                         PEM is ``server.ca_pem``: trust it to connect
``expired_https_server`` as ``https_server``, but the certificate expired yesterday
``test_ca``              the session's :class:`TestCA` (to issue more certificates)

Paths served (GET and HEAD)::

    /ok         200
    /protected  200 with basic auth ``server.username`` / ``server.password``, else 401 + WWW-Authenticate
    /bearer     200 with ``Authorization: Bearer <server.token>``, else 401
    /apikey     200 with header ``X-API-Key: <server.token>``, else 401
    /forbidden  403
    /missing    404 (so is any unknown path)
    /error      500
    /redirect   302 to /ok;  /redirect?to=<absolute URL>  302 to that URL
    /headers    200, the request's headers as a JSON object

Any path takes ``?delay=<seconds>`` (at most 10): the server waits that long before it
answers, so a probe can be kept in flight while a test does something else.

Every request is appended to ``server.requests`` (method, path, headers) so a test can
assert what was sent; every connection accepted to ``server.connections`` and every TLS
handshake completed to ``server.handshakes`` (the client's address), so it can count them.
``server.password`` and ``server.token`` are random per server, so a test can search any
output for them.

For a server of another scope or with another certificate, use the helpers directly::

    with start_http_server(server_context(*test_ca.issue(("other.example",))), ca_pem=test_ca.pem) as server: ...
    with start_http_server(server_context(*self_signed())) as server: ...
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import secrets
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names lower-cased


@dataclass(frozen=True)
class HttpServer:
    """A running test server. ``base_url`` has no trailing slash: ``server.url("/ok")``."""

    base_url: str
    host: str
    port: int
    username: str
    password: str
    token: str
    ca_pem: str | None = None  # https only: the CA that signed the server's certificate
    requests: list[RecordedRequest] = field(default_factory=list)
    connections: list[tuple[str, int]] = field(default_factory=list)
    handshakes: list[tuple[str, int]] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return self.base_url + path


# --- certificates --------------------------------------------------------------------


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def _leaf(
    names: tuple[str, ...],
    issuer: x509.Name | None,
    signer: ec.EllipticCurvePrivateKey | None,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
) -> tuple[str, str]:
    """A server certificate for ``names``, signed by ``signer`` (by its own key when None)."""
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    signer = signer or key
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        .sign(signer, hashes.SHA256())
    )
    return _pem(cert, key)


@dataclass(frozen=True)
class TestCA:
    """A throw-away certificate authority; ``pem`` is what a client must trust."""

    __test__ = False  # not a test class, despite the name

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(
        self,
        names: tuple[str, ...] = LOOPBACK_NAMES,
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> tuple[str, str]:
        """(cert PEM, key PEM) of a server certificate for ``names`` signed by this CA."""
        return _leaf(names, self.cert.subject, self.key, not_before, not_after)


def make_ca(common_name: str = "sourcecheck test CA") -> TestCA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return TestCA(cert=cert, key=key)


def self_signed(names: tuple[str, ...] = LOOPBACK_NAMES) -> tuple[str, str]:
    """(cert PEM, key PEM) of a server certificate that signs itself, as appliances ship."""
    return _leaf(names, None, None, None, None)


def server_context(cert_pem: str, key_pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain only reads files.
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_text(cert_pem)
        key_file.write_text(key_pem)
        context.load_cert_chain(cert_file, key_file)
    return context


# --- the app -------------------------------------------------------------------------


def _handler(server: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15  # a silent client must not hold a thread forever

        def do_GET(self) -> None:
            self._route(body=True)

        def do_HEAD(self) -> None:
            self._route(body=False)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _route(self, *, body: bool) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            server.requests.append(RecordedRequest(self.command, self.path, headers))
            parts = urlsplit(self.path)
            time.sleep(min(float(parse_qs(parts.query).get("delay", ["0"])[0]), 10.0))
            auth = headers.get("authorization", "")
            basic = "Basic " + base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
            match parts.path:
                case "/ok":
                    self._send(200, body=body)
                case "/protected" if secrets.compare_digest(auth, basic):
                    self._send(200, body=body)
                case "/protected":
                    self._send(401, {"WWW-Authenticate": 'Basic realm="test"'}, body=body)
                case "/bearer" if secrets.compare_digest(auth, f"Bearer {server.token}"):
                    self._send(200, body=body)
                case "/bearer":
                    self._send(401, {"WWW-Authenticate": "Bearer"}, body=body)
                case "/apikey" if secrets.compare_digest(headers.get("x-api-key", ""), server.token):
                    self._send(200, body=body)
                case "/apikey":
                    self._send(401, body=body)
                case "/forbidden":
                    self._send(403, body=body)
                case "/error":
                    self._send(500, body=body)
                case "/redirect":
                    target = parse_qs(parts.query).get("to", ["/ok"])[0]
                    self._send(302, {"Location": target}, body=body)
                case "/headers":
                    self._send(200, {"Content-Type": "application/json"}, json.dumps(headers).encode(), body=body)
                case _:
                    self._send(404, body=body)

        def _send(
            self, status: int, headers: dict[str, str] | None = None, content: bytes | None = None, *, body: bool
        ) -> None:
            content = content if content is not None else f"{status}\n".encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if body:
                self.wfile.write(content)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # server_close() must not wait for a client that keeps its connection
    tls: ssl.SSLContext | None = None
    record: HttpServer | None = None  # counts connections and handshakes (start_http_server's)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.record is not None:
            self.record.connections.append(client_address)
        # The TLS handshake runs here, in the connection's own thread, so a client that
        # stalls or rejects the certificate cannot block the accept loop.
        if self.tls is None:
            return super().finish_request(request, client_address)
        request.settimeout(15)
        # wrap_socket takes over the socket's fd: the TLS socket is the one to close.
        with self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False) as tls_socket:
            tls_socket.do_handshake()
            if self.record is not None:
                self.record.handshakes.append(client_address)
            super().finish_request(tls_socket, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed handshakes and dropped clients are what the tests provoke


@contextmanager
def start_http_server(
    tls: ssl.SSLContext | None = None, ca_pem: str | None = None, host: str = "127.0.0.1"
) -> Iterator[HttpServer]:
    """Run the app on a free port of ``host`` (over TLS with ``tls``) until the block ends.

    Any 127.x.y.z works as ``host`` on Linux (the egress tests use 127.0.0.2 as a second,
    separately allowed, loopback address)."""
    httpd = _Server((host, 0), BaseHTTPRequestHandler)
    httpd.tls = tls
    port = int(httpd.server_address[1])
    scheme = "https" if tls else "http"
    server = HttpServer(
        base_url=f"{scheme}://{host}:{port}",
        host=host,
        port=port,
        username="alice",
        password=secrets.token_urlsafe(16),  # random: a test can search messages for it
        token=secrets.token_urlsafe(24),
        ca_pem=ca_pem,
    )
    httpd.RequestHandlerClass = _handler(server)
    httpd.record = server
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def test_ca() -> TestCA:
    return make_ca()


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    with start_http_server() as server:
        yield server


@pytest.fixture
def https_server(test_ca: TestCA) -> Iterator[HttpServer]:
    with start_http_server(server_context(*test_ca.issue()), ca_pem=test_ca.pem) as server:
        yield server


@pytest.fixture
def expired_https_server(test_ca: TestCA) -> Iterator[HttpServer]:
    now = dt.datetime.now(dt.UTC)
    cert = test_ca.issue(not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1))
    with start_http_server(server_context(*cert), ca_pem=test_ca.pem) as server:
        yield server
