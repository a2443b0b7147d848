"""The ``website`` connector: may and can this site (or its sitemap) be crawled?

Steps: ``resolve`` the host, open ``tcp``, for https complete a ``tls`` handshake, then
``robots`` (fetch /robots.txt and ask :mod:`urllib.robotparser` whether our user agent may
crawl the start URL) and ``fetch`` (GET the start URL, and the sitemap when one is set:
a page must be HTML, a sitemap XML, gzip or plain text with at least one URL).

Every request goes through :class:`~connectors.transport.PinnedTransport`, so the site is
reached at the address the ``tcp`` step checked. A page's body is never read; a sitemap's
is read only until its first ``<loc>`` (at most :data:`~connectors.transport.MAX_RESPONSE_BYTES`),
parsed with defusedxml.

Known limits: :mod:`urllib.robotparser` matches rules by plain prefix, in file order, so
the ``*`` and ``$`` wildcards of RFC 9309 are not understood and the first matching rule
wins (not the longest).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser
from xml.etree.ElementTree import ParseError

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser
from pydantic import AfterValidator, ConfigDict, Field, HttpUrl, model_validator

from connectors.base import Connector, ConnectorConfig, Probe
from connectors.errors import FailureType, ProbeFailure
from connectors.fields import Destination, PemCertificates, WebUrl
from connectors.saas import may_quote_response
from connectors.text import server_text
from connectors.tls import URL_FIELDS, client_context
from connectors.transport import MAX_RESPONSE_BYTES, busy_failure, open_pinned, status_text, stream

# --- configuration -------------------------------------------------------------------

SiteUrl = WebUrl


def _user_agent(value: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise ValueError("must be printable ASCII (no line breaks or control characters)")
    if not value.split("/")[0].strip():
        raise ValueError("must start with a product name, e.g. sourcecheck or MyCrawler/1.0")
    return value


def _origin(url: HttpUrl) -> tuple[str, str, int]:
    host = (url.host or "").lower()
    return url.scheme, host, url.port or (443 if url.scheme == "https" else 80)


class WebsiteConfig(ConnectorConfig):
    """The site to crawl and how the crawler presents itself."""

    model_config = ConfigDict(title="Website")

    url: Annotated[SiteUrl, Destination] = Field(
        title="Start URL",
        description=(
            "The http:// or https:// page the crawl starts from, or a sitemap URL (ending in .xml, .xml.gz or .txt)."
        ),
        examples=["https://docs.example.com/", "https://www.example.com/sitemap.xml"],
    )
    sitemap_url: Annotated[SiteUrl | None, Destination] = Field(
        None,
        title="Sitemap URL",
        description=(
            "A sitemap of the same site to crawl from as well (XML, gzip or plain text). Empty: only the start URL."
        ),
        examples=["https://docs.example.com/sitemap.xml"],
    )
    user_agent: Annotated[str, AfterValidator(_user_agent)] = Field(
        "sourcecheck",
        min_length=1,
        max_length=200,
        title="User agent",
        description=(
            "Sent in the User-Agent header; its product name (before any /) is the one robots.txt rules are "
            "matched against."
        ),
        examples=["sourcecheck", "AcmeBot/1.0 (+https://acme.example/bot)"],
    )
    verify_tls: bool = Field(
        True,
        title="Verify TLS certificate",
        description=(
            "Check that an https site's certificate is trusted, current and for this host. Turn off only for tests."
        ),
        examples=[True],
    )
    ca_cert: PemCertificates = Field(
        None,
        title="CA certificate (PEM)",
        description="A certificate to trust in addition to the system's, e.g. a private CA of an intranet site. "
        "Ignored when verify_tls is off.",
        examples=["-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"],
    )

    @model_validator(mode="after")
    def _one_site(self) -> WebsiteConfig:
        # The network steps check one host; robots.txt rules are per scheme, host and port.
        if self.sitemap_url is not None and _origin(self.sitemap_url) != _origin(self.url):
            raise ValueError("sitemap_url must be on the same site (scheme, host and port) as url")
        return self

    def robots_token(self) -> str:
        return self.user_agent.split("/")[0].strip()


# --- the connector -------------------------------------------------------------------

_SITEMAP_SUFFIXES = (".xml", ".xml.gz", ".txt")
_HTML = {"text/html", "application/xhtml+xml"}
_XML = {"application/xml", "text/xml"}
_GZIP = {"application/gzip", "application/x-gzip", "application/octet-stream"}
_MAX_ROBOTS = 512 * 1024  # RFC 9309: crawlers must parse at least 500 KiB
_MAX_SITEMAP = MAX_RESPONSE_BYTES  # read (after gunzip) until the first <loc>, but never more than this


class WebsiteConnector(Connector):
    name = "website"
    title = "Website"
    category = "web"
    icon = "globe"
    documentation_url = "https://www.rfc-editor.org/rfc/rfc9309.html"
    config_model = WebsiteConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "robots", "fetch")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return {"url": f"http://{netloc}/docs/", "user_agent": "sourcecheck"}

    async def check(self, config: WebsiteConfig, probe: Probe) -> None:
        scheme, host, port = _origin(config.url)
        host = host.strip("[]")  # pydantic keeps IPv6 brackets; sockets want none
        context = client_context(verify=config.verify_tls, ca_pem=config.ca_cert)
        transport = await open_pinned(
            probe, host, port, context, https=scheme == "https", plain="http:// URL: no TLS", tls_fields=URL_FIELDS
        )
        async with httpx.AsyncClient(
            transport=transport,
            headers={"User-Agent": config.user_agent},
            follow_redirects=True,
            max_redirects=10,
            trust_env=False,  # no proxy from the environment: requests go where tcp/tls went
        ) as client:
            async with probe.step("robots") as step:
                step.message = await _robots(client, probe, config)
            async with probe.step("fetch") as step:
                step.message = await _fetch(client, probe, config)


# --- robots -------------------------------------------------------------------------------


def _robots_url(url: HttpUrl) -> str:
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}/robots.txt"


def _path(url: str) -> str:
    """The path of ``url`` for a message: no query string (it can hold a token)."""
    return urlsplit(url).path or "/"


async def _robots(client: httpx.AsyncClient, probe: Probe, config: WebsiteConfig) -> str:
    async with stream(client, "GET", _robots_url(config.url), timeout=probe.remaining()) as response:
        body = await _read(response, _MAX_ROBOTS) if response.status_code == 200 else b""
    status = response.status_code
    agent = config.robots_token()
    if 400 <= status < 500 and status != 429:
        # RFC 9309 2.3.1.3: an "unavailable" robots.txt (any 4xx) allows everything.
        return f"No robots.txt (answered {status_text(status)}): crawling is allowed"
    disallowed = "until it answers, crawlers must assume the whole site is disallowed"
    if busy := busy_failure(status, response.headers, f"robots.txt answered {status_text(status)} ({disallowed})"):
        raise busy
    if status != 200:
        raise ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"robots.txt answered {status_text(status)}: until it answers, crawlers must assume the whole site is "
            "disallowed",
            hint="robots.txt must answer 200 (or 404 when there is none): check the site's health, then try again.",
            retryable=True,
            fields=("url",),
        )
    parser = RobotFileParser()
    parser.parse(body.decode("utf-8", errors="replace").splitlines())
    urls = [str(config.url)] + ([str(config.sitemap_url)] if config.sitemap_url else [])
    for url in urls:
        if not parser.can_fetch(agent, url):
            path = _path(url)
            raise ProbeFailure(
                FailureType.AUTHORIZATION_FAILED,
                f"robots.txt disallows crawling {path} for user agent {agent}",
                hint=f"Ask the site's owner to allow it in robots.txt (a group 'User-agent: {agent}' with "
                f"'Allow: {urlsplit(url).path or '/'}'), or set user_agent to an agent that the site allows.",
                fields=("user_agent",),
            )
    notes = []
    if (delay := parser.crawl_delay(agent)) is not None:
        notes.append(f"crawl delay {delay} s")
    if sitemaps := parser.site_maps():
        notes.append(f"{len(sitemaps)} sitemap{'s' if len(sitemaps) > 1 else ''} listed")
    extra = f" ({', '.join(notes)})" if notes else ""
    return f"robots.txt allows {_path(str(config.url))} for user agent {agent}{extra}"


async def _read(response: httpx.Response, limit: int) -> bytes:
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= limit:
            return data[:limit]
    return data


# --- fetch --------------------------------------------------------------------------------


def _looks_like_sitemap(url: str) -> bool:
    return urlsplit(url).path.lower().endswith(_SITEMAP_SUFFIXES)


async def _fetch(client: httpx.AsyncClient, probe: Probe, config: WebsiteConfig) -> str:
    start = str(config.url)
    found = [await _get(client, probe, config, start, sitemap=_looks_like_sitemap(start), field="url")]
    if config.sitemap_url is not None:
        found.append(await _get(client, probe, config, str(config.sitemap_url), sitemap=True, field="sitemap_url"))
    return "; ".join(found)


async def _get(
    client: httpx.AsyncClient, probe: Probe, config: WebsiteConfig, url: str, *, sitemap: bool, field: str
) -> str:
    """GET ``url``, the value of the configuration field ``field``; what it is, or its failure."""
    accept = (
        "application/xml,text/xml;q=0.9,*/*;q=0.5" if sitemap else "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
    )
    started = time.perf_counter()
    async with stream(client, "GET", url, headers={"Accept": accept}, timeout=probe.remaining()) as response:
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise _status_failure(response, config, field)
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        what = "sitemap" if sitemap else "page"
        if not sitemap and kind in _HTML:
            return f"HTML {what} {_path(url)}: {status_text(200)} in {elapsed_ms:.0f} ms"
        gzipped = kind in _GZIP or (kind == "" and url.lower().endswith(".gz"))
        if kind in _XML or kind.endswith("+xml") or (sitemap and gzipped):
            # A start URL that answers XML is taken as a sitemap, as the crawler would.
            return await _sitemap(response, url, gzipped=gzipped)
        if sitemap and kind == "text/plain":
            return await _text_sitemap(response, url)
        expected = "a sitemap (XML, gzip or plain text)" if sitemap else "an HTML page"
        hint = (
            "Check the sitemap URL: it must serve the sitemap file itself."
            if sitemap
            else "Point url at an HTML page of the site (or at its sitemap); this connector crawls web pages."
        )
        raise ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"Expected {expected} at {_path(url)}, got {kind or 'no content type'}",
            hint=hint,
            fields=(field,),
        )


def _status_failure(response: httpx.Response, config: WebsiteConfig, field: str) -> ProbeFailure:
    """What an answer other than 200 to the URL of ``field`` means."""
    status = response.status_code
    path = response.url.path or "/"
    answered = f"The site answered {status_text(status)} for {path}"
    if status == 401:
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"{answered}: it needs a login, which a crawler does not have",
            hint="Crawl a public part of the site, or ask its owner to make these pages public.",
            fields=(field,),
        )
    if status == 403:
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"{answered}: the site refuses this crawler",
            hint=f"The site may block unknown user agents or the workers' addresses: ask its owner to allow "
            f"user agent {config.robots_token()} and the workers' IP addresses.",
            fields=(field, "user_agent"),
        )
    if status in (404, 410):
        return ProbeFailure(FailureType.NOT_FOUND, answered, hint="Check the path of the URL.", fields=(field,))
    if busy := busy_failure(status, response.headers, answered):
        return busy
    return ProbeFailure(FailureType.UNEXPECTED_RESPONSE, f"{answered}, expected 200 OK", fields=(field,))


# --- sitemaps -----------------------------------------------------------------------------


@dataclass
class _SitemapTarget:
    """An XML parser target that notes the root element and the text of the first <loc>."""

    root: str | None = None
    depth: int = 0
    in_loc: bool = False
    text: list[str] = field(default_factory=list)
    first_loc: str | None = None

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        name = tag.rsplit("}", 1)[-1]
        if self.root is None:
            self.root = name
        self.depth += 1
        if name == "loc" and self.first_loc is None:
            self.in_loc, self.text = True, []

    def end(self, tag: str) -> None:
        self.depth -= 1
        if self.in_loc:
            self.in_loc = False
            self.first_loc = "".join(self.text).strip() or None

    def data(self, data: str) -> None:
        if self.in_loc:
            self.text.append(data)

    def close(self) -> None:
        pass


def _not_a_sitemap(url: str, why: str) -> ProbeFailure:
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"{_path(url)} is not a usable sitemap: {why}",
        hint="A sitemap is a <urlset> (or <sitemapindex>) with a <loc> per page, see https://www.sitemaps.org/protocol.html.",
    )


async def _sitemap(response: httpx.Response, url: str, *, gzipped: bool) -> str:
    quote = may_quote_response(response)  # what the body says is shown only where it may be
    target = _SitemapTarget()
    parser = DefusedXMLParser(target=target)
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    fed = 0
    try:
        async for chunk in response.aiter_bytes():
            if inflate is not None:
                chunk = inflate.decompress(chunk, _MAX_SITEMAP - fed)
            fed += len(chunk)
            parser.feed(chunk)
            if target.first_loc is not None or fed >= _MAX_SITEMAP:
                break  # enough: the rest of the file is not read
        else:
            parser.close()
    except zlib.error:
        raise _not_a_sitemap(url, "it is not valid gzip") from None
    except (ParseError, DefusedXmlException) as exc:
        if target.first_loc is None:  # malformed after the first URL is good enough to start from
            position = getattr(exc, "position", None)
            where = f" (line {position[0]})" if position else ""
            raise _not_a_sitemap(url, f"it is not well-formed XML{where}") from None
    if target.root not in ("urlset", "sitemapindex"):
        root = f"<{server_text(target.root, 100)}>" if quote else "another element"
        raise _not_a_sitemap(url, f"its root element is {root}, not <urlset> or <sitemapindex>")
    if target.first_loc is None:
        limit = f" in its first {_MAX_SITEMAP // (1024 * 1024)} MB" if fed >= _MAX_SITEMAP else ""
        raise _not_a_sitemap(url, f"it lists no URL (no <loc>{limit})")
    kind, lists = ("sitemap index", "sitemaps") if target.root == "sitemapindex" else ("sitemap", "pages")
    return f"XML {kind} {_path(url)} lists {lists}" + (f" (first: {_shorten(target.first_loc)})" if quote else "")


def _url_line(line: bytes) -> str | None:
    text = line.decode("utf-8", errors="replace").strip()
    return text if text.startswith(("http://", "https://")) else None


async def _text_sitemap(response: httpx.Response, url: str) -> str:
    """A plain-text sitemap: one URL per line."""
    quote = may_quote_response(response)
    read = 0
    pending = b""
    async for chunk in response.aiter_bytes():
        read += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if first := _url_line(line):
                return f"Text sitemap {_path(url)} lists pages" + (f" (first: {_shorten(first)})" if quote else "")
        if read >= _MAX_SITEMAP:
            break
    else:
        if first := _url_line(pending):
            return f"Text sitemap {_path(url)} lists pages" + (f" (first: {_shorten(first)})" if quote else "")
    raise _not_a_sitemap(url, "it is plain text without a single http(s) URL")


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
