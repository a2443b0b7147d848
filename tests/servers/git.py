"""Fixture ``git_server``: Debian git's real ``git http-backend`` behind a small HTTPS server with basic auth.

Usage::

    def test_something(git_server: GitServer) -> None:
        config = get_connector("git").parse_config(git_server.config())

What it gives (one server for the session, on 127.0.0.1 and a free port, in a thread; its
certificate is issued by the session's test CA, ``ca_pem``; the same over plain HTTP on
``plain_port``):

- ``/docs.git``: branches ``main`` (HEAD) and ``release``, served by ``git http-backend`` (CGI)
  to ``user`` with ``password``, or any user name with ``token``; a wrong or missing credential
  gets 401 with ``WWW-Authenticate``.
- ``/empty.git``: a repository without a commit. ``/secret.git``: exists, but ``user`` may not
  read it (403). Any other repository: ``git http-backend``'s own 404.
- ``/flood.git``: not git: a 200 advertisement that never ends (refs without end), to bound.
- ``/page.git``: a 200 HTML page, as a web front end answers for a URL that is not a clone URL.

Every request's path is appended to ``requests``. git is Debian's ``git`` package; the fixture
fails when ``git`` or ``git-http-backend`` is missing.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.servers.http import TestCA, _Server, server_context

HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")


@dataclass(frozen=True)
class GitServer:
    host: str
    port: int
    user: str
    password: str
    token: str
    ca_pem: str
    root: Path
    plain_port: int
    requests: list[str] = field(default_factory=list)

    def url(self, repository: str = "docs.git", *, plain: bool = False) -> str:
        if plain:
            return f"http://{self.host}:{self.plain_port}/{repository}"
        return f"https://{self.host}:{self.port}/{repository}"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A ``git`` configuration for ``/docs.git``, branch ``main``, basic auth; override any field."""
        return {
            "url": self.url(),
            "auth": {"type": "basic", "username": self.user, "password": self.password},
            "branch": "main",
            "ca_cert": self.ca_pem,
            **overrides,
        }


def _git(*args: str, cwd: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=30)


def _make_repositories(root: Path) -> None:
    work = root / "work"
    work.mkdir()
    _git("init", "-q", "-b", "main", ".", cwd=work)
    (work / "README.md").write_text("# docs\n")
    _git("add", "README.md", cwd=work)
    _git("commit", "-q", "-m", "first", cwd=work)
    _git("branch", "release", cwd=work)
    for name in ("docs.git", "secret.git"):
        _git("clone", "-q", "--bare", str(work), str(root / "repos" / name), cwd=root)
    _git("init", "-q", "--bare", "-b", "main", str(root / "repos" / "empty.git"), cwd=root)


def _handler(info: GitServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            info.requests.append(self.path)
            parts = urlsplit(self.path)
            if parts.path.startswith("/flood.git/"):
                return self._flood()
            if parts.path.startswith("/page.git/"):
                return self._send(200, b"<html><body>Sign in</body></html>", "text/html")
            user = self._user()
            if user is None:
                return self._send(401, b"Authentication required\n", headers={"WWW-Authenticate": 'Basic realm="git"'})
            if parts.path.startswith("/secret.git/"):
                return self._send(403, b"You may not read this repository\n")
            self._backend(parts.path, parts.query, user)

        def _user(self) -> str | None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return None
            if (user == info.user and secrets.compare_digest(password, info.password)) or secrets.compare_digest(
                password, info.token
            ):
                return user
            return None

        def _backend(self, path: str, query: str, user: str) -> None:
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(info.root / "repos"),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "REQUEST_METHOD": "GET",
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "REMOTE_USER": user,
                "REMOTE_ADDR": "127.0.0.1",
            }
            done = subprocess.run([str(HTTP_BACKEND)], env=env, capture_output=True, timeout=30, check=False)
            head, _, body = done.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, body = done.stdout.partition(b"\n\n")
            status, headers = 200, {}
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split(" ")[0])
                elif name:
                    headers[name.strip()] = value.strip()
            self._send(status, body, headers.pop("Content-Type", "text/plain"), headers=headers)

        def _flood(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-git-upload-pack-advertisement")
            self.end_headers()  # no length: the body ends when the connection does
            self.wfile.write(b"001e# service=git-upload-pack\n0000")
            oid = "a" * 40
            line = f"{oid} HEAD\0symref=HEAD:refs/heads/main agent=flood\n"
            self.wfile.write(f"{len(line) + 4:04x}{line}".encode())
            try:
                for n in range(10_000_000):
                    ref = f"{oid} refs/tags/v{n}\n"
                    self.wfile.write(f"{len(ref) + 4:04x}{ref}".encode())
            except OSError:
                pass
            self.close_connection = True

        def _send(
            self, status: int, body: bytes, kind: str = "text/plain", *, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture(scope="session")
def git_server(test_ca: TestCA) -> Iterator[GitServer]:
    if shutil.which("git") is None or not HTTP_BACKEND.exists():
        pytest.fail("git and git-http-backend are needed (apt-get install git)")
    root = Path(tempfile.mkdtemp(prefix="sc-git-"))
    _make_repositories(root)
    httpd = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.tls = server_context(*test_ca.issue())
    plain = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    info = GitServer(
        host="127.0.0.1",
        port=int(httpd.server_address[1]),
        user="reader",
        password="git-" + secrets.token_hex(8),
        token="tok-" + secrets.token_hex(12),
        ca_pem=test_ca.pem,
        root=root,
        plain_port=int(plain.server_address[1]),
    )
    threads = []
    for server in (httpd, plain):
        server.RequestHandlerClass = _handler(info)
        threads.append(threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True))
        threads[-1].start()
    try:
        yield info
    finally:
        for server, thread in zip((httpd, plain), threads, strict=True):
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        shutil.rmtree(root, ignore_errors=True)
