"""The website connector against real local HTTP(S) sites (tests/servers/website.py)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from connectors import get_connector
from connectors.base import CheckResult, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration
from connectors.website import WebsiteConnector
from tests import helpers
from tests.helpers import failure_type, step
from tests.servers.http import HttpServer
from tests.servers.tcp import HostPort
from tests.servers.website import Route, Site


async def check(config: dict[str, Any], timeout: float = 5.0) -> CheckResult:
    return await helpers.check("website", config, timeout)


# --- success -------------------------------------------------------------------------------


def test_the_website_connector_is_registered_under_its_name() -> None:
    connector = get_connector("website")
    assert isinstance(connector, WebsiteConnector)
    assert connector.category == "web"
    assert connector.steps == ("resolve", "tcp", "tls", "robots", "fetch")


async def test_an_allowed_html_page_succeeds_step_by_step(site: Site) -> None:
    result = await check({"url": site.url("/docs/")})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert [(s.name, s.status) for s in result.steps] == [
        ("resolve", StepStatus.SUCCEEDED),
        ("tcp", StepStatus.SUCCEEDED),
        ("tls", StepStatus.SKIPPED),
        ("robots", StepStatus.SUCCEEDED),
        ("fetch", StepStatus.SUCCEEDED),
    ]
    assert step(result, "robots").message == (
        "robots.txt allows /docs/ for user agent sourcecheck (crawl delay 2 s, 1 sitemap listed)"
    )
    assert re.fullmatch(r"HTML page /docs/: 200 OK in \d+ ms", step(result, "fetch").message)
    assert [path for path, _ in site.requests] == ["/robots.txt", "/docs/"]
    assert all(headers["user-agent"] == "sourcecheck" for _, headers in site.requests)


async def test_a_redirect_to_a_page_is_followed(site: Site) -> None:
    result = await check({"url": site.url("/redirect")})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert site.requests[-1][0] == "/docs/"


async def test_a_site_without_robots_txt_may_be_crawled(site: Site) -> None:
    del site.routes["/robots.txt"]
    result = await check({"url": site.url("/private/page")})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "robots").message == "No robots.txt (answered 404 Not Found): crawling is allowed"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/sitemap.xml", "XML sitemap /sitemap.xml lists pages (first: {base}/)"),
        ("/sitemap-index.xml", "XML sitemap index /sitemap-index.xml lists sitemaps (first: {base}/sitemap.xml)"),
        ("/sitemap.xml.gz", "XML sitemap /sitemap.xml.gz lists pages (first: {base}/docs/)"),
        ("/sitemap.txt", "Text sitemap /sitemap.txt lists pages (first: {base}/)"),
    ],
)
async def test_a_sitemap_as_the_url_succeeds_with_its_first_url(site: Site, path: str, message: str) -> None:
    result = await check({"url": site.url(path)})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "fetch").message == message.format(base=site.base_url)


async def test_a_sitemap_url_is_fetched_after_the_start_page(site: Site) -> None:
    result = await check({"url": site.url("/"), "sitemap_url": site.url("/sitemap.xml")})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "fetch").message.endswith(f"; XML sitemap /sitemap.xml lists pages (first: {site.base_url}/)")
    assert [path for path, _ in site.requests][-2:] == ["/", "/sitemap.xml"]


# --- robots.txt ------------------------------------------------------------------------------


async def test_a_path_robots_txt_disallows_is_authorization_failed(site: Site) -> None:
    result = await check({"url": site.url("/private/page")})
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "robots.txt disallows crawling /private/page for user agent sourcecheck"
    assert "User-agent: sourcecheck" in result.failure.hint and "Allow: /private/page" in result.failure.hint
    assert step(result, "fetch").status == StepStatus.SKIPPED
    assert "/private/page" not in [path for path, _ in site.requests]  # a disallowed page is not fetched


async def test_robots_txt_rules_are_matched_on_the_product_name_of_the_user_agent(site: Site) -> None:
    result = await check({"url": site.url("/docs/"), "user_agent": "BadBot/2.1 (+https://bad.example)"})
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "robots.txt disallows crawling /docs/ for user agent BadBot"
    assert site.requests[-1][1]["user-agent"] == "BadBot/2.1 (+https://bad.example)"


async def test_a_sitemap_robots_txt_disallows_fails_too(site: Site) -> None:
    site.routes["/robots.txt"] = Route(content_type="text/plain", body=b"User-agent: *\nDisallow: /sitemap\n")
    result = await check({"url": site.url("/"), "sitemap_url": site.url("/sitemap.xml")})
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None and "/sitemap.xml" in result.failure.message


async def test_a_failing_robots_txt_is_the_site_unavailable(site: Site) -> None:
    site.routes["/robots.txt"] = Route(503)
    result = await check({"url": site.url("/docs/")})
    assert failure_type(result) == FailureType.PROVIDER_UNAVAILABLE
    assert result.failure is not None and result.failure.retryable
    assert "assume the whole site is disallowed" in result.failure.message
    assert step(result, "robots").status == StepStatus.FAILED


# --- the answer ----------------------------------------------------------------------------


async def test_a_pdf_instead_of_a_page_is_an_unexpected_response(site: Site) -> None:
    result = await check({"url": site.url("/report.pdf")})
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE
    assert result.failure is not None
    assert result.failure.message == "Expected an HTML page at /report.pdf, got application/pdf"
    assert step(result, "fetch").status == StepStatus.FAILED


async def test_an_html_page_as_the_sitemap_is_an_unexpected_response(site: Site) -> None:
    result = await check({"url": site.url("/"), "sitemap_url": site.url("/docs/")})
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE
    assert result.failure is not None
    assert result.failure.message == "Expected a sitemap (XML, gzip or plain text) at /docs/, got text/html"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/empty-sitemap.xml", "it lists no URL (no <loc>)"),
        ("/feed.xml", "its root element is <rss>, not <urlset> or <sitemapindex>"),
        ("/broken.xml", "it is not well-formed XML (line 1)"),
    ],
)
async def test_a_sitemap_without_a_url_is_an_unexpected_response(site: Site, path: str, why: str) -> None:
    result = await check({"url": site.url("/"), "sitemap_url": site.url(path)})
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE
    assert result.failure is not None
    assert result.failure.message == f"{path} is not a usable sitemap: {why}"


@pytest.mark.parametrize(
    ("path", "expected", "retryable"),
    [
        ("/missing", FailureType.NOT_FOUND, False),
        ("/gone", FailureType.NOT_FOUND, False),
        ("/login", FailureType.AUTHENTICATION_FAILED, False),
        ("/forbidden", FailureType.AUTHORIZATION_FAILED, False),
        ("/error", FailureType.PROVIDER_UNAVAILABLE, True),
    ],
)
async def test_an_error_status_maps_to_its_failure_type(
    site: Site, path: str, expected: FailureType, retryable: bool
) -> None:
    result = await check({"url": site.url(path)})
    assert failure_type(result) == expected
    assert result.failure is not None and result.failure.retryable is retryable
    assert step(result, "fetch").status == StepStatus.FAILED


async def test_a_missing_page_says_which(site: Site) -> None:
    result = await check({"url": site.url("/missing")})
    assert result.failure is not None
    assert result.failure.message == "The site answered 404 Not Found for /missing"


# --- network and TLS -----------------------------------------------------------------------


async def test_a_closed_port_is_connection_refused(closed_port: int) -> None:
    result = await check({"url": f"http://127.0.0.1:{closed_port}/"})
    assert failure_type(result) == FailureType.CONNECTION_REFUSED
    assert [s.status for s in result.steps[2:]] == [StepStatus.SKIPPED] * 3


async def test_a_server_that_never_answers_is_a_timeout_in_the_robots_step(hung_server: HostPort) -> None:
    started = time.monotonic()
    result = await check({"url": f"http://{hung_server.host}:{hung_server.port}/"}, timeout=1.5)
    assert time.monotonic() - started < 3
    assert failure_type(result) == FailureType.TIMEOUT
    assert step(result, "robots").status == StepStatus.FAILED


async def test_https_with_the_test_ca_succeeds(https_site: Site) -> None:
    result = await check({"url": https_site.url("/docs/"), "ca_cert": https_site.ca_pem})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert re.fullmatch(r"TLS 1\.[23], certificate valid until \d{4}-\d\d-\d\d", step(result, "tls").message)


async def test_https_without_the_ca_is_a_tls_error_that_says_how_to_fix_it(https_site: Site) -> None:
    result = await check({"url": https_site.url("/docs/")})
    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None
    assert "unknown authority (sourcecheck test CA)" in result.failure.message
    assert step(result, "robots").status == StepStatus.SKIPPED
    assert https_site.requests == []


async def test_https_to_a_plain_http_port_is_a_tls_error(http_server: HttpServer) -> None:
    result = await check({"url": f"https://127.0.0.1:{http_server.port}/"})
    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None and "did not answer with TLS" in result.failure.message


# --- configuration -------------------------------------------------------------------------


def test_every_field_has_a_title_a_description_and_examples() -> None:
    schema = get_connector("website").connection_specification()
    for name, spec in schema["properties"].items():
        assert {"title", "description", "examples"} <= spec.keys(), name
    assert not any("secret" in spec for spec in schema["properties"].values())


@pytest.mark.parametrize(
    "config",
    [
        {"url": "ftp://127.0.0.1/"},
        {"url": "http://user:pw@127.0.0.1/"},
        {"url": " http://127.0.0.1/"},
        {"url": "http://127.0.0.1/", "sitemap_url": "http://other.example/sitemap.xml"},
        {"url": "http://127.0.0.1/", "sitemap_url": "https://127.0.0.1/sitemap.xml"},
        {"url": "http://127.0.0.1/", "user_agent": "bot\r\nX-Injected: 1"},
        {"url": "http://127.0.0.1/", "user_agent": "/1.0"},
        {"url": "http://127.0.0.1/", "ca_cert": "not a certificate"},
        {"url": "http://127.0.0.1/", "depth": 3},
    ],
)
def test_an_invalid_setting_is_rejected(config: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfiguration):
        get_connector("website").parse_config(config)


# --- the fields a failure is about -----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "fields"),
    [
        ({"url": "/nothing-here"}, ["url"]),
        ({"url": "/login"}, ["url"]),
        ({"url": "/forbidden"}, ["url", "user_agent"]),
        ({"url": "/", "sitemap_url": "/gone"}, ["sitemap_url"]),
        ({"url": "/", "sitemap_url": "/docs/"}, ["sitemap_url"]),  # a page, not a sitemap
        ({"url": "/private/page"}, ["user_agent"]),  # robots.txt disallows it
    ],
)
async def test_a_failure_names_the_field_to_fix(site: Site, config: dict[str, str], fields: list[str]) -> None:
    result = await check({name: site.url(path) for name, path in config.items()})
    assert result.failure is not None, result
    assert result.failure.fields == fields


async def test_an_untrusted_certificate_names_the_trust_fields(https_site: Site) -> None:
    result = await check({"url": https_site.url("/docs/")})
    assert result.failure is not None
    assert result.failure.fields == ["ca_cert", "verify_tls"]
