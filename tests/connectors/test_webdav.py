"""The webdav connector against a real WebDAV server (WsgiDAV, tests/servers/webdav.py)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors import get_connector
from connectors.base import CheckResult, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.webdav import MAX_LISTING_BYTES, WebDavConnector
from tests import helpers
from tests.helpers import failure, messages, step
from tests.servers.http import HttpServer
from tests.servers.tcp import HostPort
from tests.servers.webdav import HostileWebDav, WebDavServer


async def check(config: dict[str, Any], timeout: float = 5.0) -> CheckResult:
    return await helpers.check("webdav", config, timeout)


def codes(result: CheckResult) -> list[WarningCode]:
    return [w.code for w in result.warnings]


def test_the_webdav_connector_is_registered_under_its_name() -> None:
    connector = get_connector("webdav")
    assert isinstance(connector, WebDavConnector)
    assert connector.category == "files"
    assert connector.steps == ("resolve", "tcp", "tls", "authenticate", "access")


# --- success -------------------------------------------------------------------------------


async def test_a_readable_folder_over_https_succeeds_and_reads_the_first_bytes(webdav_server: WebDavServer) -> None:
    result = await check(webdav_server.config())
    assert result.status == CheckStatus.SUCCEEDED, result
    assert [(s.name, s.status) for s in result.steps] == [
        (name, StepStatus.SUCCEEDED) for name in ("resolve", "tcp", "tls", "authenticate", "access")
    ]
    assert step(result, "authenticate").message.startswith("Signed in with user 'reader' (DAV 1")
    assert step(result, "access").message == (
        "The folder '/docs' is readable: read the first 1024 bytes of 'handbook.txt'"
    )
    assert result.warnings == []  # https, and Digest offered too
    assert webdav_server.password not in messages(result)


async def test_basic_only_over_plain_http_is_a_weak_authentication_warning(webdav_server: WebDavServer) -> None:
    result = await check(webdav_server.plain_config())
    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "tls").status == StepStatus.SKIPPED
    assert codes(result) == [WarningCode.WEAK_AUTHENTICATION]
    assert "https://" in result.warnings[0].hint


async def test_an_empty_folder_is_an_empty_location_warning(webdav_server: WebDavServer) -> None:
    result = await check(webdav_server.config(path="empty"))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert codes(result) == [WarningCode.EMPTY_LOCATION]
    assert "'/empty' is empty" in result.warnings[0].message
    assert step(result, "access").message == "The folder '/empty' is readable, but empty"


async def test_a_folder_of_folders_succeeds_without_a_read(webdav_server: WebDavServer) -> None:
    result = await check(webdav_server.config(path="folders"))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert "holds folders only (2 seen)" in step(result, "access").message
    assert result.warnings == []


async def test_the_url_itself_is_the_folder_when_path_is_empty(webdav_server: WebDavServer) -> None:
    result = await check(webdav_server.config(path=""))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert "the WebDAV URL's folder" in step(result, "access").message


# --- credentials and permissions -----------------------------------------------------------


async def test_a_wrong_password_is_authentication_failed_naming_the_fields(webdav_server: WebDavServer) -> None:
    wrong = "Wrong-" + webdav_server.password[::-1]
    result = await check(webdav_server.config(password=wrong))
    found = failure(result)
    assert found.type == FailureType.AUTHENTICATION_FAILED
    assert list(found.fields) == ["username", "password"]
    assert "401" in found.message and "'reader'" in found.message
    assert step(result, "authenticate").status == StepStatus.FAILED
    assert wrong not in messages(result)


async def test_a_token_the_server_does_not_take_is_authentication_failed(webdav_server: WebDavServer) -> None:
    result = await check({"url": webdav_server.plain_url, "token": "tok-nobody-knows"})
    found = failure(result)
    assert found.type == FailureType.AUTHENTICATION_FAILED
    assert list(found.fields) == ["token"]
    assert "The server asks for basic authentication" in found.hint
    assert "tok-nobody-knows" not in messages(result)


async def test_a_file_that_may_be_listed_but_not_read_is_authorization_failed(webdav_server: WebDavServer) -> None:
    result = await check(webdav_server.config(path="locked"))
    found = failure(result)
    assert found.type == FailureType.AUTHORIZATION_FAILED
    assert "reading its file 'denied.txt' is denied (403 Forbidden)" in found.message
    assert list(found.fields) == ["username", "password", "path"]
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_missing_folder_is_not_found_naming_path(webdav_server: WebDavServer) -> None:
    result = await check(webdav_server.config(path="no/such folder"))
    found = failure(result)
    assert found.type == FailureType.NOT_FOUND
    assert list(found.fields) == ["path"]
    assert "'/no/such folder'" in found.message


async def test_a_file_given_as_the_folder_is_not_found_naming_path(webdav_server: WebDavServer) -> None:
    result = await check(webdav_server.config(path="docs/handbook.txt"))
    found = failure(result)
    assert found.type == FailureType.NOT_FOUND
    assert "is a file, not a folder" in found.message
    assert list(found.fields) == ["path"]


# --- not a WebDAV server, unreachable, hostile ---------------------------------------------


async def test_a_web_server_that_is_not_webdav_is_an_unexpected_response(http_server: HttpServer) -> None:
    result = await check({"url": http_server.url("/").rstrip("/"), "token": "not-a-dav-token"})
    found = failure(result)
    assert found.type == FailureType.UNEXPECTED_RESPONSE, found
    assert "this is not a WebDAV server" in found.message
    assert list(found.fields) == ["url"]


async def test_a_closed_port_is_connection_refused(closed_port: int) -> None:
    result = await check({"url": f"http://127.0.0.1:{closed_port}/dav", "token": "t"})
    assert failure(result).type == FailureType.CONNECTION_REFUSED


async def test_a_server_that_never_answers_is_a_timeout(hung_server: HostPort) -> None:
    result = await check({"url": f"http://{hung_server.host}:{hung_server.port}/dav", "token": "t"}, timeout=1.5)
    assert failure(result).type == FailureType.TIMEOUT
    assert step(result, "authenticate").status == StepStatus.FAILED


async def test_a_huge_listing_is_read_only_up_to_its_bound(hostile_webdav: HostileWebDav) -> None:
    result = await check(hostile_webdav.config())
    assert result.status == CheckStatus.SUCCEEDED, result
    assert "holds folders only" in step(result, "access").message
    assert hostile_webdav.sent < MAX_LISTING_BYTES + 6 * 1024 * 1024  # socket buffers, not the 13 MB


async def test_an_entity_bomb_is_refused(hostile_webdav: HostileWebDav) -> None:
    hostile_webdav.mode = "entities"
    found = failure(await check(hostile_webdav.config()))
    assert found.type == FailureType.UNEXPECTED_RESPONSE
    assert "entities" in found.message


async def test_a_listed_file_on_another_host_is_not_fetched(hostile_webdav: HostileWebDav) -> None:
    hostile_webdav.mode = "elsewhere"
    found = failure(await check(hostile_webdav.config()))
    assert found.type == FailureType.UNEXPECTED_RESPONSE
    assert list(found.fields) == ["url"]
    assert "GET" not in hostile_webdav.requests


async def test_a_listed_href_that_is_no_url_is_an_unexpected_response(hostile_webdav: HostileWebDav) -> None:
    hostile_webdav.mode = "garbage"
    found = failure(await check(hostile_webdav.config()))
    assert found.type == FailureType.UNEXPECTED_RESPONSE
    assert "GET" not in hostile_webdav.requests


async def test_a_server_that_ignores_range_is_read_only_for_the_first_bytes(hostile_webdav: HostileWebDav) -> None:
    hostile_webdav.mode = "whole"
    result = await check(hostile_webdav.config())
    assert result.status == CheckStatus.SUCCEEDED, result
    assert "read the first 1024 bytes of 'big.bin'" in step(result, "access").message


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"url": "https://dav.example.com"},  # no credentials
        {"url": "https://dav.example.com", "username": "a"},  # no password
        {"url": "https://dav.example.com", "username": "a", "password": "b", "token": "c"},
        {"url": "https://a:b@dav.example.com", "token": "c"},  # credentials in the URL
        {"url": "ftp://dav.example.com", "token": "c"},
        {"url": "https://dav.example.com", "token": "c", "path": "../etc"},
        {"url": "https://dav.example.com", "token": "c", "path": "a\nb"},
    ],
)
def test_an_invalid_configuration_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfiguration):
        get_connector("webdav").parse_config(config)


def test_the_schema_marks_the_secrets_and_the_destination() -> None:
    schema = get_connector("webdav").connection_specification()
    props = schema["properties"]
    assert props["url"]["x-destination"] is True
    secret = {name for name, p in props.items() if "secret" in str(p)}
    assert secret == {"password", "token"}
