"""The http connector against real local HTTP(S) servers (tests/servers/http.py)."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from connectors import get_connector
from connectors.base import MASK, CheckResult, CheckStatus, Probe, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.http import HttpConfig, HttpConnector
from connectors.network import Address, connect_tcp, resolve
from connectors.tls import client_context, tls_handshake
from tests import helpers
from tests.helpers import failure_type, messages, step
from tests.servers.http import HttpServer, TestCA, make_ca, self_signed, server_context, start_http_server
from tests.servers.tcp import HostPort


async def check(config: dict[str, Any], timeout: float = 5.0) -> CheckResult:
    return await helpers.check("http", config, timeout)


# --- success and the shape of the result ----------------------------------------------


def test_the_http_connector_is_registered_under_its_name() -> None:
    connector = get_connector("http")
    assert isinstance(connector, HttpConnector)
    assert connector.steps == ("resolve", "tcp", "tls", "request")


async def test_a_reachable_url_succeeds_and_says_status_and_time(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/ok")})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert [(s.name, s.status) for s in result.steps] == [
        ("resolve", StepStatus.SUCCEEDED),
        ("tcp", StepStatus.SUCCEEDED),
        ("tls", StepStatus.SKIPPED),
        ("request", StepStatus.SUCCEEDED),
    ]
    assert re.fullmatch(r"HTTP 200 OK in \d+ ms", step(result, "request").message)
    assert http_server.requests[-1].headers["user-agent"].startswith("sourcecheck/")


async def test_a_failed_plain_http_check_still_lists_tls_before_request(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/missing")})
    assert [s.name for s in result.steps] == ["resolve", "tcp", "tls", "request"]


async def test_head_sends_a_head_request(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/ok"), "method": "HEAD"})
    assert result.status == CheckStatus.SUCCEEDED
    assert http_server.requests[-1].method == "HEAD"


async def test_extra_headers_are_sent(http_server: HttpServer) -> None:
    result = await check(
        {"url": http_server.url("/ok"), "headers": {"Accept": "application/json", "User-Agent": "probe/1"}}
    )
    assert result.status == CheckStatus.SUCCEEDED
    sent = http_server.requests[-1].headers
    assert sent["accept"] == "application/json"
    assert sent["user-agent"] == "probe/1"


async def test_the_request_goes_to_the_address_the_tcp_step_checked(
    http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "service.invalid" cannot resolve: the request can only succeed by reusing the checked address.
    async def fake_resolve(probe: Probe, host: str, port: int) -> list[Address]:
        async with probe.step("resolve"):
            return [Address(host=host, ip="127.0.0.1", port=port, family=2)]

    monkeypatch.setattr("connectors.transport.resolve", fake_resolve)
    result = await check({"url": f"http://service.invalid:{http_server.port}/ok"})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert http_server.requests[-1].headers["host"] == f"service.invalid:{http_server.port}"


# --- credentials ----------------------------------------------------------------------


async def test_the_right_basic_auth_password_succeeds(http_server: HttpServer) -> None:
    auth = {"type": "basic", "username": http_server.username, "password": http_server.password}
    result = await check({"url": http_server.url("/protected"), "auth": auth})
    assert result.status == CheckStatus.SUCCEEDED, result.failure


async def test_a_wrong_basic_auth_password_is_authentication_failed_and_never_shown(http_server: HttpServer) -> None:
    wrong = http_server.password + "-wrong"
    result = await check(
        {"url": http_server.url("/protected"), "auth": {"type": "basic", "username": "alice", "password": wrong}}
    )
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "The server answered 401 Unauthorized: check the credentials"
    assert result.failure.retryable is False
    assert wrong not in messages(result)


async def test_no_credentials_on_a_protected_url_says_it_needs_them(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/protected")})
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None and "needs credentials" in result.failure.message


async def test_the_right_bearer_token_succeeds(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/bearer"), "auth": {"type": "bearer", "token": http_server.token}})
    assert result.status == CheckStatus.SUCCEEDED, result.failure


async def test_a_wrong_bearer_token_fails_without_showing_it(http_server: HttpServer) -> None:
    wrong = "tok-" + http_server.token[::-1]
    result = await check({"url": http_server.url("/bearer"), "auth": {"type": "bearer", "token": wrong}})
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert wrong not in messages(result)


async def test_an_api_key_header_succeeds(http_server: HttpServer) -> None:
    auth = {"type": "header", "name": "X-API-Key", "value": http_server.token}
    result = await check({"url": http_server.url("/apikey"), "auth": auth})
    assert result.status == CheckStatus.SUCCEEDED, result.failure


@pytest.mark.parametrize("auth_type", ["bearer", "header"])
async def test_credentials_are_not_sent_to_another_host_a_redirect_leads_to(
    http_server: HttpServer, auth_type: str
) -> None:
    auth = (
        {"type": "bearer", "token": http_server.token}
        if auth_type == "bearer"
        else {"type": "header", "name": "X-API-Key", "value": http_server.token}
    )
    # 127.0.0.1 and localhost are different hosts to a client, though the same server here.
    elsewhere = f"http://localhost:{http_server.port}/headers"
    result = await check({"url": http_server.url(f"/redirect?to={elsewhere}"), "auth": auth})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    first, last = http_server.requests[-2], http_server.requests[-1]
    assert http_server.token in (first.headers.get("authorization", "") + first.headers.get("x-api-key", ""))
    assert last.path == "/headers"
    assert http_server.token not in json.dumps(last.headers)


async def test_credentials_follow_a_redirect_on_the_same_host(http_server: HttpServer) -> None:
    auth = {"type": "header", "name": "X-API-Key", "value": http_server.token}
    result = await check({"url": http_server.url("/redirect?to=/apikey"), "auth": auth})
    assert result.status == CheckStatus.SUCCEEDED, result.failure


# --- statuses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected", "retryable"),
    [
        ("/forbidden", FailureType.AUTHORIZATION_FAILED, False),
        ("/missing", FailureType.NOT_FOUND, False),
        ("/error", FailureType.PROVIDER_UNAVAILABLE, True),
    ],
)
async def test_an_error_status_maps_to_its_failure_type(
    http_server: HttpServer, path: str, expected: FailureType, retryable: bool
) -> None:
    result = await check({"url": http_server.url(path)})
    assert failure_type(result) == expected
    assert result.failure is not None and result.failure.retryable is retryable
    assert step(result, "request").status == StepStatus.FAILED


async def test_a_redirect_is_followed_and_counted(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/redirect")})
    assert result.status == CheckStatus.SUCCEEDED
    assert step(result, "request").message.endswith("after 1 redirect")


async def test_a_redirect_fails_when_redirects_are_not_followed(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/redirect"), "follow_redirects": False})
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE
    assert result.failure is not None and "follow_redirects" in result.failure.message


async def test_expected_status_makes_a_listed_status_a_success(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/forbidden"), "expected_status": [403]})
    assert result.status == CheckStatus.SUCCEEDED


async def test_expected_status_makes_an_unlisted_2xx_a_failure(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/ok"), "expected_status": [204]})
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE
    assert result.failure is not None and "expected 204" in result.failure.message


# --- network failures -----------------------------------------------------------------


async def test_a_closed_port_is_connection_refused(closed_port: int) -> None:
    result = await check({"url": f"http://127.0.0.1:{closed_port}/ok"})
    assert failure_type(result) == FailureType.CONNECTION_REFUSED
    assert result.failure is not None and "Connection refused" in result.failure.message
    assert [s.status for s in result.steps[2:]] == [StepStatus.SKIPPED, StepStatus.SKIPPED]


async def test_an_unresolvable_host_is_dns_resolution_failed() -> None:
    result = await check({"url": "http://nonexistent.invalid/ok"})
    assert failure_type(result) == FailureType.DNS_RESOLUTION_FAILED
    assert step(result, "resolve").status == StepStatus.FAILED


async def test_a_server_that_never_answers_ends_at_the_deadline_as_timeout(hung_server: HostPort) -> None:
    started = time.monotonic()
    result = await check({"url": f"http://{hung_server.host}:{hung_server.port}/ok"}, timeout=1.5)
    assert time.monotonic() - started < 3
    assert failure_type(result) == FailureType.TIMEOUT
    assert result.failure is not None and result.failure.retryable
    assert step(result, "request").status == StepStatus.FAILED


async def test_a_server_that_never_answers_the_tls_handshake_times_out_in_the_tls_step(hung_server: HostPort) -> None:
    started = time.monotonic()
    result = await check({"url": f"https://{hung_server.host}:{hung_server.port}/ok"}, timeout=1.5)
    assert time.monotonic() - started < 3
    assert failure_type(result) == FailureType.TIMEOUT
    assert step(result, "tls").status == StepStatus.FAILED


async def test_a_redirect_to_an_unresolvable_host_is_dns_resolution_failed(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/redirect?to=http://nonexistent.invalid/ok")})
    assert failure_type(result) == FailureType.DNS_RESOLUTION_FAILED
    assert step(result, "request").status == StepStatus.FAILED


# --- TLS ------------------------------------------------------------------------------


async def test_https_with_the_test_ca_succeeds_and_reports_the_certificate_expiry(https_server: HttpServer) -> None:
    result = await check({"url": https_server.url("/ok"), "ca_cert": https_server.ca_pem})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert re.fullmatch(r"TLS 1\.[23], certificate valid until \d{4}-\d\d-\d\d", step(result, "tls").message)


async def test_https_by_host_name_verifies_the_name(https_server: HttpServer) -> None:
    auth = {"type": "bearer", "token": https_server.token}
    result = await check(
        {"url": f"https://localhost:{https_server.port}/bearer", "ca_cert": https_server.ca_pem, "auth": auth}
    )
    assert result.status == CheckStatus.SUCCEEDED, result.failure


async def test_a_plain_http_check_opens_one_connection(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/ok")})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert len(http_server.connections) == 1  # the tcp step's, which carried the request


async def test_an_https_check_opens_one_connection_and_does_one_handshake(https_server: HttpServer) -> None:
    # The tcp step's connection carries the tls step's handshake and then the request
    # (not a connection per step: three connections and two handshakes).
    auth = {"type": "bearer", "token": https_server.token}
    result = await check({"url": https_server.url("/bearer"), "ca_cert": https_server.ca_pem, "auth": auth})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert len(https_server.connections) == 1
    assert len(https_server.handshakes) == 1
    assert [r.path for r in https_server.requests] == ["/bearer"]


async def test_an_https_redirect_to_the_same_host_goes_on_the_same_connection(https_server: HttpServer) -> None:
    result = await check({"url": https_server.url("/redirect"), "ca_cert": https_server.ca_pem})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [r.path for r in https_server.requests] == ["/redirect", "/ok"]
    assert len(https_server.connections) == len(https_server.handshakes) == 1  # kept alive


async def test_an_https_redirect_to_another_host_opens_a_connection_of_its_own(https_server: HttpServer) -> None:
    # The kept connection is the checked host's; "localhost" (same server, a name its
    # certificate holds) gets a new connection and handshake, made as httpx makes them.
    to = f"https://localhost:{https_server.port}/ok"
    result = await check({"url": https_server.url(f"/redirect?to={to}"), "ca_cert": https_server.ca_pem})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [r.path for r in https_server.requests] == [f"/redirect?to={to}", "/ok"]
    assert len(https_server.connections) == len(https_server.handshakes) == 2


async def test_the_tls_step_secures_the_tcp_steps_socket_and_sends_without_delay(https_server: HttpServer) -> None:
    # Nagle on the kept socket would hold the request until the server ACKs the
    # client's Finished: a round trip more on a remote server (asyncio sets TCP_NODELAY
    # only on connections it opens itself).
    probe = Probe(("resolve", "tcp", "tls"), deadline=time.monotonic() + 5)
    address, sock = await connect_tcp(probe, await resolve(probe, https_server.host, https_server.port), keep=True)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    connection = await tls_handshake(
        probe, sock, address, https_server.host, client_context(ca_pem=https_server.ca_pem)
    )
    try:
        assert connection.writer.get_extra_info("socket").fileno() == sock.fileno()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        connection.writer.write(f"GET /ok HTTP/1.1\r\nHost: {https_server.host}\r\n\r\n".encode())
        assert (await connection.reader.readline()).startswith(b"HTTP/1.1 200")
    finally:
        connection.abort()
    assert len(https_server.connections) == len(https_server.handshakes) == 1


async def test_the_tls_step_offers_http_1_1_by_alpn_as_httpx_would() -> None:
    # The tls step's connection carries the request, so its handshake must offer what
    # httpx's would: the same from a process's first check on, whatever ran before.
    ca = make_ca()  # a CA no other test used: a context no earlier check touched
    server = server_context(*ca.issue())
    server.set_alpn_protocols(["h2", "http/1.1"])
    with start_http_server(server, ca_pem=ca.pem) as https_server:
        probe = Probe(("resolve", "tcp", "tls"), deadline=time.monotonic() + 5)
        address, sock = await connect_tcp(probe, await resolve(probe, https_server.host, https_server.port), keep=True)
        connection = await tls_handshake(probe, sock, address, https_server.host, client_context(ca_pem=ca.pem))
        try:
            assert connection.writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        finally:
            connection.abort()


async def test_https_without_the_ca_is_a_tls_error_that_says_how_to_fix_it(https_server: HttpServer) -> None:
    result = await check({"url": https_server.url("/ok")})
    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None
    assert "unknown authority (sourcecheck test CA)" in result.failure.message
    assert "set ca_cert or verify_tls=false" in result.failure.message
    assert step(result, "request").status == StepStatus.SKIPPED
    assert https_server.requests == []


async def test_https_without_verification_succeeds_and_says_so(https_server: HttpServer) -> None:
    result = await check({"url": https_server.url("/ok"), "verify_tls": False})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert "not verified" in step(result, "tls").message


async def test_an_expired_certificate_is_a_tls_error_with_its_date(expired_https_server: HttpServer) -> None:
    result = await check({"url": expired_https_server.url("/ok"), "ca_cert": expired_https_server.ca_pem})
    assert failure_type(result) == FailureType.TLS_ERROR
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    assert result.failure is not None
    assert result.failure.message == f"The server's certificate has expired on {yesterday:%Y-%m-%d}"


async def test_an_expired_certificate_without_verification_succeeds_but_is_reported(
    expired_https_server: HttpServer,
) -> None:
    result = await check({"url": expired_https_server.url("/ok"), "verify_tls": False})
    assert result.status == CheckStatus.SUCCEEDED
    assert "expired on" in step(result, "tls").message


async def test_a_certificate_for_another_host_is_a_tls_error_naming_both(test_ca: TestCA) -> None:
    with start_http_server(server_context(*test_ca.issue(("other.example",))), ca_pem=test_ca.pem) as server:
        result = await check({"url": server.url("/ok"), "ca_cert": server.ca_pem})
    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None
    assert (
        result.failure.message == "The server's certificate is not valid for host 127.0.0.1 (it is for other.example)"
    )


async def test_https_to_a_plain_http_port_says_the_server_does_not_speak_tls(http_server: HttpServer) -> None:
    result = await check({"url": f"https://127.0.0.1:{http_server.port}/ok"})
    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None and "did not answer with TLS" in result.failure.message


# --- configuration --------------------------------------------------------------------


def test_the_schema_marks_every_secret_and_nothing_else() -> None:
    schema = get_connector("http").connection_specification()
    secret = {
        (model, prop)
        for model, definition in schema["$defs"].items()
        for prop, spec in definition["properties"].items()
        if spec.get("secret")
    }
    assert secret == {("BasicAuth", "password"), ("BearerAuth", "token"), ("HeaderAuth", "value")}
    assert schema["$defs"]["BasicAuth"]["properties"]["password"]["writeOnly"] is True


def test_every_field_has_a_title_a_description_and_examples() -> None:
    schema = get_connector("http").connection_specification()
    models = [schema, *schema["$defs"].values()]
    for model in models:
        for name, spec in model["properties"].items():
            assert {"title", "description"} <= spec.keys(), name
            assert "examples" in spec or name == "type", name


def test_a_dumped_config_masks_the_password() -> None:
    config = HttpConfig.model_validate(
        {"url": "https://h.example/", "auth": {"type": "basic", "username": "u", "password": "pw-123"}}
    )
    assert config.masked()["auth"]["password"] == MASK
    assert config.revealed()["auth"]["password"] == "pw-123"
    assert config.masked()["expected_status"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://alice:pw-in-url@127.0.0.1/ok",
        "http://alice@127.0.0.1/ok",
        " http://127.0.0.1/ok",
        "http://127.0.0.1/ok\n",
        "http://127.0.0.1/o k",
        "ftp://127.0.0.1/",
    ],
)
def test_a_url_with_credentials_whitespace_or_another_scheme_is_rejected(url: str) -> None:
    with pytest.raises(InvalidConfiguration) as info:
        get_connector("http").parse_config({"url": url})
    assert [e.field for e in info.value.errors] == ["url"]
    assert "pw-in-url" not in str(info.value)


@pytest.mark.parametrize(
    "config",
    [
        {"headers": {"Authorization": "Bearer x"}},
        {"headers": {"Bad Name": "x"}},
        {"headers": {"X-Ok": "a\r\nInjected: 1"}},
        {"auth": {"type": "bearer", "token": "tok\nen"}},
        {"auth": {"type": "basic", "username": "a:b", "password": "p"}},
        {"auth": {"type": "bearer", "token": MASK}},
        {"expected_status": [200, 999]},
        {"ca_cert": "not a certificate"},
        {"ca_cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
        {"method": "POST"},
    ],
)
def test_an_invalid_setting_is_rejected(config: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfiguration):
        get_connector("http").parse_config({"url": "https://h.example/", **config})


def test_an_invalid_token_is_rejected_without_showing_it() -> None:
    with pytest.raises(InvalidConfiguration) as info:
        get_connector("http").parse_config(
            {"url": "https://h.example/", "auth": {"type": "bearer", "token": "tok-SECRET\n"}}
        )
    assert "tok-SECRET" not in str(info.value)
    assert info.value.errors[0].field.startswith("auth.bearer.token")


def test_the_test_ca_is_accepted_as_ca_cert(test_ca: TestCA) -> None:
    config = get_connector("http").parse_config({"url": "https://h.example/", "ca_cert": test_ca.pem})
    assert isinstance(config, HttpConfig) and config.ca_cert == test_ca.pem


async def test_a_self_signed_certificate_is_a_tls_error_that_says_how_to_fix_it() -> None:
    with start_http_server(server_context(*self_signed())) as server:
        result = await check({"url": server.url("/ok")})
    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None
    assert result.failure.message == "The server presented a self-signed certificate: set ca_cert or verify_tls=false"


async def test_a_self_signed_certificate_given_as_ca_cert_is_trusted() -> None:
    cert_pem, key_pem = self_signed()
    with start_http_server(server_context(cert_pem, key_pem)) as server:
        result = await check({"url": server.url("/ok"), "ca_cert": cert_pem})
    assert result.status == CheckStatus.SUCCEEDED, result.failure


# --- warnings -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def expiring_https_server(test_ca: TestCA) -> Iterator[HttpServer]:
    """As https_server, but its certificate ends in three days."""
    cert = test_ca.issue(not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=3))
    with start_http_server(server_context(*cert), ca_pem=test_ca.pem) as server:
        yield server


async def test_a_certificate_that_expires_within_two_weeks_is_warned_about(
    expiring_https_server: HttpServer,
) -> None:
    result = await check({"url": expiring_https_server.url("/ok"), "ca_cert": expiring_https_server.ca_pem})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    [warning] = result.warnings
    assert warning.code == WarningCode.CERTIFICATE_EXPIRING
    assert "127.0.0.1" in warning.message and "sourcecheck test CA" in warning.message
    assert re.search(r"expires on \d{4}-\d\d-\d\d .*in 2 days", warning.message), warning.message
    assert "renew" in warning.hint


async def test_a_long_lived_certificate_is_not_warned_about(https_server: HttpServer) -> None:
    result = await check({"url": https_server.url("/ok"), "ca_cert": https_server.ca_pem})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert result.warnings == []


async def test_an_unverified_certificate_is_not_warned_about(expiring_https_server: HttpServer) -> None:
    result = await check({"url": expiring_https_server.url("/ok"), "verify_tls": False})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert result.warnings == []


async def test_credentials_over_plain_http_are_warned_about_as_weak(http_server: HttpServer) -> None:
    auth = {"type": "basic", "username": http_server.username, "password": http_server.password}
    result = await check({"url": http_server.url("/protected"), "auth": auth})
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    [warning] = result.warnings
    assert warning.code == WarningCode.WEAK_AUTHENTICATION
    assert "basic credentials" in warning.message and "plain http://" in warning.message
    assert "https://" in warning.hint
    assert http_server.password not in messages(result)


async def test_credentials_over_https_or_no_credentials_are_not_warned_about(
    http_server: HttpServer, https_server: HttpServer
) -> None:
    bearer = {"type": "bearer", "token": https_server.token}
    secured = await check({"url": https_server.url("/bearer"), "ca_cert": https_server.ca_pem, "auth": bearer})
    assert secured.status == CheckStatus.SUCCEEDED, secured.failure
    assert secured.warnings == []
    anonymous = await check({"url": http_server.url("/ok")})
    assert anonymous.status == CheckStatus.SUCCEEDED, anonymous.failure
    assert anonymous.warnings == []


# --- the fields a failure is about ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "auth", "fields"),
    [
        ("/protected", {"type": "basic", "username": "alice", "password": "wrong"}, ["auth.username", "auth.password"]),
        ("/bearer", {"type": "bearer", "token": "wrong-token"}, ["auth.token"]),
        ("/apikey", {"type": "header", "name": "X-API-Key", "value": "wrong"}, ["auth.name", "auth.value"]),
        ("/protected", {"type": "none"}, ["auth"]),
        ("/missing", {"type": "none"}, ["url"]),
        ("/forbidden", {"type": "none"}, ["url", "auth"]),
    ],
)
async def test_an_answer_that_fails_names_the_fields_to_fix(
    http_server: HttpServer, path: str, auth: dict[str, Any], fields: list[str]
) -> None:
    result = await check({"url": http_server.url(path), "auth": auth})
    assert result.failure is not None
    assert result.failure.fields == fields


async def test_tls_failures_name_the_trust_fields_or_the_url(
    https_server: HttpServer, http_server: HttpServer, test_ca: TestCA
) -> None:
    untrusted = await check({"url": https_server.url("/ok")})
    assert untrusted.failure is not None and untrusted.failure.fields == ["ca_cert", "verify_tls"]
    not_tls = await check({"url": f"https://127.0.0.1:{http_server.port}/ok"})
    assert not_tls.failure is not None and not_tls.failure.fields == ["url"]
    with start_http_server(server_context(*test_ca.issue(("other.example",))), ca_pem=test_ca.pem) as server:
        wrong_host = await check({"url": server.url("/ok"), "ca_cert": server.ca_pem})
    assert wrong_host.failure is not None and wrong_host.failure.fields == ["url"]
