"""Fixtures ``site`` and ``https_site``: a small real website on a free 127.0.0.1 port, in a thread.

Each test gets a fresh server whose ``routes`` it may change (``site.routes[path] = Route(...)``;
delete ``/robots.txt`` for a site without one). Every request is appended to
``site.requests`` as (path, headers with lower-cased names). What is served (GET and HEAD)::

    /robots.txt          User-agent: *      Disallow: /private/   Crawl-delay: 2
                         User-agent: BadBot Disallow: /
                         Sitemap: <site>/sitemap.xml
    /  /docs/  /private/page     HTML pages
    /redirect            302 to /docs/
    /report.pdf          application/pdf
    /sitemap.xml         <urlset> with two <loc>
    /sitemap-index.xml   <sitemapindex> with one <loc>
    /sitemap.xml.gz      the sitemap, gzipped (application/gzip)
    /sitemap.txt         a plain-text sitemap
    /empty-sitemap.xml   <urlset> without a URL
    /feed.xml            an RSS feed (XML, but not a sitemap)
    /broken.xml          XML cut off before its first <loc>
    /login 401, /forbidden 403, /gone 410, /error 500; any other path 404

``https_site`` serves the same over TLS with a certificate for 127.0.0.1 and localhost signed
by the session's test CA (``site.ca_pem``).
"""

from __future__ import annotations

import gzip
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.servers.http import TestCA, server_context


@dataclass(frozen=True)
class Route:
    status: int = 200
    content_type: str | None = "text/html; charset=utf-8"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Site:
    base_url: str  # no trailing slash
    host: str
    port: int
    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    ca_pem: str | None = None

    def url(self, path: str = "/") -> str:
        return self.base_url + path


def _page(title: str) -> Route:
    return Route(body=f"<!doctype html><html><head><title>{title}</title></head><body>{title}</body></html>".encode())


def _urlset(base: str, *paths: str) -> bytes:
    locs = "".join(f"<url><loc>{base}{p}</loc></url>" for p in paths)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>'.encode()


def default_routes(base: str) -> dict[str, Route]:
    xml = "application/xml"
    robots = (
        "User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n\n"
        f"User-agent: BadBot\nDisallow: /\n\nSitemap: {base}/sitemap.xml\n"
    )
    return {
        "/robots.txt": Route(content_type="text/plain", body=robots.encode()),
        "/": _page("Home"),
        "/docs/": _page("Docs"),
        "/private/page": _page("Private"),
        "/redirect": Route(302, None, headers={"Location": "/docs/"}),
        "/report.pdf": Route(content_type="application/pdf", body=b"%PDF-1.4\n%%EOF\n"),
        "/sitemap.xml": Route(content_type=xml, body=_urlset(base, "/", "/docs/")),
        "/sitemap-index.xml": Route(
            content_type=xml,
            body=(
                '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<sitemap><loc>{base}/sitemap.xml</loc></sitemap></sitemapindex>"
            ).encode(),
        ),
        "/sitemap.xml.gz": Route(content_type="application/gzip", body=gzip.compress(_urlset(base, "/docs/"))),
        "/sitemap.txt": Route(content_type="text/plain; charset=utf-8", body=f"\n{base}/\n{base}/docs/\n".encode()),
        "/empty-sitemap.xml": Route(content_type=xml, body=_urlset(base)),
        "/feed.xml": Route(
            content_type="application/rss+xml",
            body=b'<?xml version="1.0"?><rss version="2.0"><channel><link>https://x.example/</link></channel></rss>',
        ),
        "/broken.xml": Route(content_type=xml, body=b'<?xml version="1.0"?><urlset><url><lo'),
        "/login": Route(401, headers={"WWW-Authenticate": 'Basic realm="site"'}),
        "/forbidden": Route(403),
        "/gone": Route(410),
        "/error": Route(500),
    }


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, *, body: bool) -> None:
            site.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            route = site.routes.get(urlsplit(self.path).path, Route(404, "text/html", b"<h1>Not found</h1>"))
            self.send_response(route.status)
            if route.content_type:
                self.send_header("Content-Type", route.content_type)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            if body:
                self.wfile.write(route.body)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            return super().finish_request(request, client_address)
        request.settimeout(15)  # the handshake runs in the connection's thread, not the accept loop
        with self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False) as tls_socket:
            tls_socket.do_handshake()
            super().finish_request(tls_socket, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed handshakes and dropped clients are what the tests provoke


@contextmanager
def start_site(tls: ssl.SSLContext | None = None, ca_pem: str | None = None) -> Iterator[Site]:
    httpd = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.tls = tls
    port = int(httpd.server_address[1])
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    site = Site(base_url=base, host="127.0.0.1", port=port, routes=default_routes(base), ca_pem=ca_pem)
    httpd.RequestHandlerClass = _handler(site)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def site() -> Iterator[Site]:
    with start_site() as running:
        yield running


@pytest.fixture
def https_site(test_ca: TestCA) -> Iterator[Site]:
    with start_site(server_context(*test_ca.issue()), ca_pem=test_ca.pem) as running:
        yield running
