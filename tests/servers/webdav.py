"""Fixture ``webdav_server``: a real WebDAV server (WsgiDAV on cheroot) that checks a user's password.

WsgiDAV (pinned in the ``dev`` extra, with cheroot) runs in a child process, started once per
session (only if a test asks for it), serving one folder tree on two free 127.0.0.1 ports:

- ``server.url``: https (a certificate of the session's test CA, ``server.ca_pem``), Basic and
  Digest authentication offered (Digest in the challenge, as WsgiDAV does by default);
- ``server.plain_url``: plain http, Basic only (the ``weak_authentication`` warning).

Both check the user ``server.username`` / ``server.password`` with WsgiDAV's own
SimpleDomainController. What is in the tree::

    docs/handbook.txt         3000 bytes (more than a first-bytes read)
    docs/archive/             a subfolder
    empty/                    nothing
    folders/a/, folders/b/    folders only
    locked/denied.txt         listed, but every read of it answers 403 (WsgiDAV's provider API)

Fixture ``hostile_webdav``: a stand-in that signs in and then answers PROPFIND with whatever
``server.mode`` says (``huge``: megabytes of folder entries; ``entities``: an entity-expansion
bomb; ``elsewhere``: a file on another host; ``garbage``: a file whose href is no URL;
``whole``: a 3 MiB file that ignores Range).

Run as ``python -m tests.servers.webdav CONFIG.json``, this module is that child process.
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers.http import TestCA, _Server
from tests.servers.s3 import _die_with_parent, _free_ports

REPO = Path(__file__).resolve().parents[2]
HANDBOOK = b"".join(b"line %04d of the handbook\n" % i for i in range(116))[:3000]


@dataclass(frozen=True)
class WebDavServer:
    url: str  # https://127.0.0.1:PORT
    plain_url: str  # http://127.0.0.1:PORT (Basic only)
    port: int
    plain_port: int
    username: str
    password: str
    ca_pem: str

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A configuration for the https server and the folder docs, with ``overrides``."""
        return {
            "url": self.url,
            "path": "docs",
            "username": self.username,
            "password": self.password,
            "ca_cert": self.ca_pem,
            **overrides,
        }

    def plain_config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "url": self.plain_url,
            "path": "docs",
            "username": self.username,
            "password": self.password,
            **overrides,
        }


def _tree(root: Path) -> None:
    (root / "docs" / "archive").mkdir(parents=True)
    (root / "docs" / "handbook.txt").write_bytes(HANDBOOK)
    (root / "empty").mkdir()
    (root / "folders" / "a").mkdir(parents=True)
    (root / "folders" / "b").mkdir()
    (root / "locked").mkdir()
    (root / "locked" / "denied.txt").write_bytes(b"not for you\n")


def _wait_ready(process: subprocess.Popen[bytes], urls: list[str], ca_pem: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"wsgidav exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            httpx.request("OPTIONS", pending[0], verify=ssl.create_default_context(cadata=ca_pem), timeout=2)
            pending.pop(0)
        except httpx.HTTPError:
            time.sleep(0.1)
    if pending:
        raise TimeoutError(f"WsgiDAV did not start within 30 s:\n{log.read_text()[-3000:]}")


def start_child(command: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """A server process writing to ``log``, killed with the test process if that dies first."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, before exec
        )


def stop_child(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def webdav_server(test_ca: TestCA) -> Iterator[WebDavServer]:
    try:
        import cheroot  # noqa: F401
        import wsgidav  # noqa: F401
    except ImportError:
        pytest.fail("wsgidav and cheroot are missing: pip install -e '.[dev]' installs them", pytrace=False)
    workdir = Path(tempfile.mkdtemp(prefix="sourcecheck-webdav-"))
    root = workdir / "root"
    _tree(root)
    cert, key = test_ca.issue()
    (workdir / "cert.pem").write_text(cert)
    (workdir / "key.pem").write_text(key)
    port, plain_port = _free_ports(2)
    username, password = "reader", "pw-" + secrets.token_urlsafe(18)
    settings = workdir / "webdav.json"
    settings.write_text(
        json.dumps(
            {
                "root": str(root),
                "port": port,
                "plain_port": plain_port,
                "cert": str(workdir / "cert.pem"),
                "key": str(workdir / "key.pem"),
                "users": {username: {"password": password}},
            }
        )
    )
    settings.chmod(0o600)
    log = workdir / "wsgidav.log"
    process = start_child([sys.executable, "-m", "tests.servers.webdav", str(settings)], log, cwd=REPO)
    try:
        url, plain_url = f"https://127.0.0.1:{port}", f"http://127.0.0.1:{plain_port}"
        _wait_ready(process, [url, plain_url], test_ca.pem, log)
        yield WebDavServer(url, plain_url, port, plain_port, username, password, test_ca.pem)
    finally:
        stop_child(process)


# --- the child process ---------------------------------------------------------------------


def _serve(settings_file: str) -> None:
    """Run both WsgiDAV servers until killed."""
    from cheroot import wsgi
    from cheroot.ssl.builtin import BuiltinSSLAdapter
    from wsgidav.dav_error import HTTP_FORBIDDEN, DAVError
    from wsgidav.fs_dav_provider import FileResource, FilesystemProvider
    from wsgidav.wsgidav_app import WsgiDAVApp

    settings = json.loads(Path(settings_file).read_text())

    class DeniedFile(FileResource):
        def get_content(self) -> Any:
            raise DAVError(HTTP_FORBIDDEN, "read denied")

    class Provider(FilesystemProvider):
        def get_resource_inst(self, path: str, environ: dict[str, Any]) -> Any:
            resource = super().get_resource_inst(path, environ)
            if isinstance(resource, FileResource) and path.rsplit("/", 1)[-1].startswith("denied"):
                return DeniedFile(path, environ, str(Path(self.root_folder_path, path.lstrip("/"))))
            return resource

    def app(*, digest: bool) -> WsgiDAVApp:
        return WsgiDAVApp(
            {
                "provider_mapping": {"/": Provider(settings["root"], readonly=True, fs_opts={})},
                "simple_dc": {"user_mapping": {"*": settings["users"]}},
                "http_authenticator": {
                    "domain_controller": None,  # SimpleDomainController
                    "accept_basic": True,
                    "accept_digest": digest,
                    "default_to_digest": digest,
                },
                "verbose": 1,
                "logging": {"enable_loggers": []},
                "dir_browser": {"enable": False},
                "lock_storage": True,
                "property_manager": True,
            }
        )

    secure = wsgi.Server(("127.0.0.1", settings["port"]), app(digest=True))
    secure.ssl_adapter = BuiltinSSLAdapter(settings["cert"], settings["key"])
    plain = wsgi.Server(("127.0.0.1", settings["plain_port"]), app(digest=False))
    threading.Thread(target=plain.start, daemon=True).start()
    secure.start()


# --- a hostile server ----------------------------------------------------------------------

MiB = 1024 * 1024


@dataclass
class HostileWebDav:
    port: int
    mode: str = "huge"
    sent: int = 0
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dav"

    def config(self) -> dict[str, Any]:
        return {"url": self.url, "token": "hostile-token"}


def _entity_bomb() -> bytes:
    entities = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10 if i else "boom"}">' for i in range(10))
    return (
        f'<?xml version="1.0"?><!DOCTYPE d:multistatus [{entities}]>'
        '<d:multistatus xmlns:d="DAV:"><d:response><d:href>&e9;</d:href></d:response></d:multistatus>'
    ).encode()


def _hostile_handler(server: HostileWebDav) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self._write(body)

        def _write(self, body: bytes) -> None:
            try:
                for i in range(0, len(body), 64 * 1024):
                    self.wfile.write(body[i : i + 64 * 1024])
                    server.sent += min(64 * 1024, len(body) - i)
            except OSError:
                pass  # the client stopped reading, as it should

        def do_OPTIONS(self) -> None:
            server.requests.append("OPTIONS")
            if "authorization" not in {k.lower() for k in self.headers}:
                self._send(401, b"", {"WWW-Authenticate": 'Bearer realm="dav"'})
            else:
                self._send(200, b"", {"DAV": "1, 2", "Allow": "OPTIONS, PROPFIND, GET"})

        def do_PROPFIND(self) -> None:
            server.requests.append("PROPFIND")
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            entry = b"<d:response><d:href>/dav/%s/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/>"
            entry += b"</d:resourcetype></d:prop></d:propstat></d:response>"
            head = b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:">'
            if server.mode == "entities":
                body = _entity_bomb()
            elif server.mode in ("elsewhere", "whole", "garbage"):
                hrefs = {"elsewhere": b"https://elsewhere.example/file.txt", "whole": b"/dav/big.bin"}
                href = hrefs.get(server.mode, b"http://[::1")
                body = head + b"<d:response><d:href>" + href + b"</d:href></d:response></d:multistatus>"
            else:  # huge: folders only, far past every bound
                body = head + b"".join(entry % b"f%06d" % i for i in range(100000)) + b"</d:multistatus>"
            self._send(207, body, {"Content-Type": "application/xml"})

        def do_GET(self) -> None:
            server.requests.append("GET")
            self._send(200, b"x" * (3 * MiB), {"Content-Type": "application/octet-stream"})

    return Handler


@pytest.fixture
def hostile_webdav() -> Iterator[HostileWebDav]:
    server = HostileWebDav(port=0)
    with _Server(("127.0.0.1", 0), _hostile_handler(server)) as httpd:  # closed by the with
        server.port = int(httpd.server_address[1])
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        yield server  # pytest resumes a fixture after its test, whatever the outcome
        httpd.shutdown()


if __name__ == "__main__":
    _serve(sys.argv[1])
