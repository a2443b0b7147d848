"""What every SaaS connector shares (connectors/saas.py, connectors/oauth.py): the network
steps against base_url, timeouts, TLS trust, the configuration schema, and secrets."""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from connectors.base import MASK, CheckStatus, Probe, StepStatus
from connectors.errors import FailureType, InvalidConfiguration
from connectors.oauth import AccessToken, token_error
from connectors.registry import get_connector
from connectors.saas import (
    ApiClient,
    ApiResponse,
    open_api,
    provider_message,
)
from connectors.transport import MAX_RETRY_AFTER, retry_after_seconds
from tests.helpers import failure_type, step
from tests.servers.saas import SaasServer, dump, run
from tests.servers.tcp import HostPort

SAAS = ["notion", "confluence", "github", "slack", "google_drive", "sharepoint"]

# The prefix of each provider on the stand-in server (what base_url points at).
PREFIX = {
    "notion": "/notion",
    "confluence": "/confluence/wiki",
    "github": "/github",
    "slack": "/slack/api",
    "google_drive": "/google",
    "sharepoint": "/graph",
}


def example(name: str, host: str, port: int, **override: Any) -> dict[str, Any]:
    return {**get_connector(name).example_config(host, port), **override}


def with_token(name: str, config: dict[str, Any], token: str) -> dict[str, Any]:
    """``config`` with its credential replaced by ``token``."""
    if name in ("notion", "github", "slack"):
        return {**config, "token": token}
    if name == "confluence":
        return {**config, "credentials": {"type": "bearer", "token": token}}
    return {**config, "credentials": {"type": "token", "access_token": token}}


# --- the connectors are registered and described -----------------------------------------


@pytest.mark.parametrize("name", SAAS)
def test_the_connector_is_registered_as_a_saas_source(name: str) -> None:
    connector = get_connector(name)
    assert connector.name == name
    assert connector.category == "saas"
    assert connector.title and connector.icon
    assert connector.documentation_url and connector.documentation_url.startswith("https://")
    assert connector.steps[:3] == ("resolve", "tcp", "tls")
    assert connector.steps[-2:] == ("authenticate", "access")


@pytest.mark.parametrize("name", SAAS)
def test_every_field_has_a_title_a_description_and_examples(name: str) -> None:
    schema = get_connector(name).connection_specification()
    for model in [schema, *schema.get("$defs", {}).values()]:
        for field, spec in model.get("properties", {}).items():
            assert {"title", "description"} <= spec.keys(), (name, field)
            assert "examples" in spec or field == "type", (name, field)


@pytest.mark.parametrize("name", SAAS)
def test_the_base_url_defaults_to_the_real_api(name: str) -> None:
    properties = get_connector(name).connection_specification()["properties"]
    default = properties["base_url"].get("default")
    if name == "confluence":
        assert default is None  # every Confluence site has its own URL
    else:
        assert default is not None and default.startswith("https://") and "127.0.0.1" not in default


@pytest.mark.parametrize("name", SAAS)
def test_secret_fields_are_marked_masked_and_absent_from_the_repr(name: str) -> None:
    connector = get_connector(name)
    config = connector.parse_config(example(name, "127.0.0.1", 443))
    secrets = config.secret_values()
    assert secrets, "the example must hold a secret"
    assert all(s not in repr(config) and s not in json.dumps(config.masked()) for s in secrets)
    assert MASK in json.dumps(config.masked())
    schema = json.dumps(connector.connection_specification())
    assert '"secret": true' in schema


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://api.example.com",
        "https://user:pw-in-url@api.example.com",
        "https://api.example.com/?token=x",
        " https://api.example.com",
        "api.example.com",
    ],
)
def test_a_bad_base_url_is_rejected_without_echoing_it(base_url: str) -> None:
    with pytest.raises(InvalidConfiguration) as info:
        get_connector("notion").parse_config(example("notion", "127.0.0.1", 443, base_url=base_url))
    assert [e.field for e in info.value.errors] == ["base_url"]
    assert "pw-in-url" not in str(info.value)


def test_a_base_url_keeps_its_path_and_loses_a_trailing_slash() -> None:
    config = get_connector("github").parse_config(
        example("github", "127.0.0.1", 443, base_url="https://ghe.example.com/api/v3/")
    )
    assert config.base_url == "https://ghe.example.com/api/v3"  # type: ignore[attr-defined]


# --- network failures, the same for each connector -----------------------------------------


@pytest.mark.parametrize("name", SAAS)
async def test_a_closed_port_is_connection_refused(name: str, closed_port: int) -> None:
    result = await run(name, example(name, "127.0.0.1", closed_port))
    assert failure_type(result) == FailureType.CONNECTION_REFUSED
    assert step(result, "tcp").status == StepStatus.FAILED
    assert all(s.status == StepStatus.SKIPPED for s in result.steps[2:])
    connector = get_connector(name)
    planned = connector.planned_steps(connector.parse_config(example(name, "127.0.0.1", closed_port)))
    assert [s.name for s in result.steps] == list(planned)


@pytest.mark.parametrize("name", SAAS)
async def test_a_server_that_never_answers_is_a_timeout_at_the_deadline(name: str, hung_server: HostPort) -> None:
    started = time.monotonic()
    result = await run(name, example(name, hung_server.host, hung_server.port), timeout=1.5)
    assert time.monotonic() - started < 3
    assert failure_type(result) == FailureType.TIMEOUT
    assert result.failure is not None and result.failure.retryable
    assert step(result, "tls").status == StepStatus.FAILED


@pytest.mark.parametrize("name", ["notion", "sharepoint"])
async def test_an_api_that_accepts_the_request_but_never_answers_times_out_in_authenticate(
    name: str, saas_server: SaasServer
) -> None:
    config = example(name, "127.0.0.1", saas_server.port, base_url=saas_server.url("/hang"), ca_cert=saas_server.ca_pem)
    started = time.monotonic()
    result = await run(name, config, timeout=1.5)
    assert time.monotonic() - started < 3
    assert failure_type(result) == FailureType.TIMEOUT
    assert step(result, "authenticate").status == StepStatus.FAILED


@pytest.mark.parametrize("name", SAAS)
async def test_a_certificate_from_an_unknown_authority_is_a_tls_error_saying_to_set_ca_cert(
    name: str, saas_server: SaasServer
) -> None:
    result = await run(name, example(name, "127.0.0.1", saas_server.port))
    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None and "set ca_cert" in result.failure.message
    assert saas_server.requests == []  # no credential was sent to an untrusted server


async def test_an_unresolvable_api_host_is_dns_resolution_failed() -> None:
    result = await run("slack", example("slack", "127.0.0.1", 443, base_url="https://slack.invalid/api"))
    assert failure_type(result) == FailureType.DNS_RESOLUTION_FAILED


@pytest.mark.parametrize("name", SAAS)
async def test_a_base_url_that_is_not_the_api_is_unexpected_response_pointing_at_base_url(
    name: str, saas_server: SaasServer
) -> None:
    # Another product's API: the endpoint every account has is missing (404), which is
    # a wrong base_url, not a missing resource.
    elsewhere = "/google" if name != "google_drive" else "/notion"
    config = example(name, "127.0.0.1", saas_server.port, base_url=saas_server.url(elsewhere))
    config["ca_cert"] = saas_server.ca_pem
    result = await run(name, with_token(name, config, saas_server.token))
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE, result.failure
    assert result.failure is not None and "base_url" in result.failure.hint
    assert step(result, "authenticate").status == StepStatus.FAILED


# --- secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAAS)
async def test_no_secret_reaches_the_logs(name: str, saas_server: SaasServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = example(name, "127.0.0.1", saas_server.port, ca_cert=saas_server.ca_pem)
    result = await run(name, config)
    assert result.status == CheckStatus.FAILED  # the example's secret is not a valid one
    for secret in [*saas_server.all_secrets(), *get_connector(name).parse_config(config).secret_values()]:
        assert secret not in caplog.text
        assert secret not in dump(result)


@pytest.mark.parametrize("refresh", ["good", "revoked"])
async def test_no_oauth_secret_or_issued_token_reaches_the_logs_or_the_result(
    refresh: str, saas_server: SaasServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = {
        "type": "oauth",
        "client_id": saas_server.client_id,
        "client_secret": saas_server.client_secret,
        "refresh_token": saas_server.refresh_token if refresh == "good" else saas_server.revoked_refresh_token,
        "token_url": saas_server.url("/google-oauth/token"),
    }
    config = {
        "credentials": credentials,
        "folder_id": "root",
        "base_url": saas_server.url("/google"),
        "ca_cert": saas_server.ca_pem,
    }
    result = await run("google_drive", config)
    assert step(result, "token").status == (StepStatus.SUCCEEDED if refresh == "good" else StepStatus.FAILED)
    assert saas_server.issued or refresh == "revoked"
    for secret in saas_server.all_secrets():
        assert secret not in caplog.text
        assert secret not in dump(result)


def _client(*secrets: str) -> ApiClient:
    client = ApiClient(
        provider="Example",
        base_url="https://api.example.com",
        probe=Probe(("token",), deadline=time.monotonic() + 5),
        http=httpx.AsyncClient(),
    )
    client.add_secret(*secrets)
    return client


def test_clean_masks_known_secrets_and_keeps_one_short_line() -> None:
    client = _client("sekrit-token")
    text = client.clean("bad token sekrit-token\r\nTrace ID: 1" + " padding" * 100)
    assert "sekrit-token" not in text and MASK in text
    assert "\n" not in text and len(text) <= 300
    assert "sekrit-token" not in repr(client)


def test_an_access_token_is_not_in_the_repr_of_what_the_token_endpoint_returned() -> None:
    assert "abc-access" not in repr(AccessToken(value="abc-access", expires_in=3599))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"message": "Bad credentials"}, "Bad credentials"),  # GitHub, Notion, Confluence
        ({"error": {"code": 403, "message": "Insufficient Permission"}}, "Insufficient Permission"),  # Google, Graph
        (
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
            "Token has been expired or revoked.",
        ),
        ({"ok": False, "error": "invalid_auth"}, "invalid_auth"),  # Slack
        ([], None),
    ],
)
def test_provider_message_reads_the_usual_error_shapes(body: Any, expected: str | None) -> None:
    assert provider_message(body) == expected


@pytest.mark.parametrize(
    ("body", "expected", "words"),
    [
        (
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
            FailureType.AUTHENTICATION_FAILED,
            "Token has been expired or revoked.",
        ),
        ({"error": "invalid_client"}, FailureType.AUTHENTICATION_FAILED, "client id or secret is wrong"),
        (
            {
                "error": "invalid_grant",
                "error_description": (
                    "AADSTS65001: The user or administrator has not consented to use the application.\r\nTrace ID: x"
                ),
            },
            FailureType.AUTHORIZATION_FAILED,
            "lacks consent",
        ),
        ({"error": "invalid_scope", "error_description": "bad scope"}, FailureType.AUTHORIZATION_FAILED, "bad scope"),
        ({"error": "bad_refresh_token"}, FailureType.AUTHENTICATION_FAILED, "expired or been revoked"),
        ({"error": "temporarily_unavailable"}, FailureType.UNEXPECTED_RESPONSE, "temporarily_unavailable"),
    ],
)
def test_token_endpoint_errors_map_to_failures(body: dict[str, Any], expected: FailureType, words: str) -> None:
    failure = token_error(_client(), "Example", body, 400, what="the refresh token")
    assert failure.type == expected
    assert words in failure.message
    assert "Trace ID" not in failure.message


# --- a provider's rate limit ----------------------------------------------------------------


class _Endpoint:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.ca_cert = None


@contextlib.contextmanager
def _busy_api(retry_after: str, busy_answers: int) -> Iterator[tuple[str, list[float]]]:
    """An HTTP API answering 429 with ``Retry-After: retry_after`` to its first ``busy_answers``
    requests, then 200 ``{"ok": true}``; yields its URL and the times requests came in."""
    seen: list[float] = []

    class Busy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(time.monotonic())
            busy = len(seen) <= busy_answers
            body = b'{"message": "slow down"}' if busy else b'{"ok": true}'
            self.send_response(429 if busy else 200)
            if busy:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


async def _call(base_url: str, deadline_s: float) -> ApiResponse:
    probe = Probe(("resolve", "tcp", "tls"), deadline=time.monotonic() + deadline_s)
    async with open_api(probe, _Endpoint(base_url), "Busy") as api:
        return await api.call("GET", "/thing")


async def test_a_retry_after_that_fits_in_the_deadline_is_waited_out_once() -> None:
    with _busy_api("1", busy_answers=1) as (url, seen):
        response = await _call(url, deadline_s=5)
    assert response.status == 200 and len(seen) == 2
    assert seen[1] - seen[0] >= 0.95  # it waited as asked, not less


async def test_a_retry_after_as_an_http_date_is_understood() -> None:
    when = email.utils.formatdate(time.time() + 1.5, usegmt=True)
    with _busy_api(when, busy_answers=1) as (url, seen):
        response = await _call(url, deadline_s=6)
    assert response.status == 200 and len(seen) == 2
    assert seen[1] - seen[0] >= 0.4


async def test_a_retry_after_beyond_the_deadline_is_not_waited_and_fails_rate_limited_saying_when() -> None:
    with _busy_api("120", busy_answers=5) as (url, seen):
        started = time.monotonic()
        response = await _call(url, deadline_s=5)
        assert time.monotonic() - started < 2
    assert response.status == 429 and len(seen) == 1
    probe = Probe((), deadline=time.monotonic() + 5)
    failure = ApiClient(provider="Busy", base_url=url, probe=probe, http=httpx.AsyncClient()).status_failure(response)
    assert failure.type == FailureType.RATE_LIMITED and failure.retryable
    assert failure.retry_after_s == 120 and "in 120 s" in failure.hint


async def test_a_second_rate_limit_in_a_row_is_not_waited_again() -> None:
    with _busy_api("1", busy_answers=5) as (url, seen):
        response = await _call(url, deadline_s=8)
    assert response.status == 429 and len(seen) == 2


def test_a_hostile_retry_after_is_bounded() -> None:
    probe = Probe((), deadline=time.monotonic() + 5)
    api = ApiClient(provider="Busy", base_url="https://x", probe=probe, http=httpx.AsyncClient())
    for value, expected in (("9" * 5000, MAX_RETRY_AFTER), ("soon", None), ("-5", None), ("Mon, 99 Foo", None)):
        response = ApiResponse(
            status=429, headers=httpx.Headers({"Retry-After": value}), data=None, text="", url=httpx.URL("https://x")
        )
        assert retry_after_seconds(response.headers) == expected, value
        assert api.status_failure(response).type == FailureType.RATE_LIMITED
