"""Response bombs against every connector that speaks HTTP (tests/servers/bomb.py).

Each check ends ``failed``/``unexpected_response`` saying the response was too large, within
seconds, with the process's Python memory growing by far less than the bomb, while a healthy
check of another server in the same event loop succeeds promptly.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from typing import Any

import httpx
import pytest

from connectors import get_connector, run_check
from connectors.base import CheckResult, CheckStatus
from connectors.errors import FailureType, ProbeFailure
from connectors.network import Address
from connectors.tls import client_context
from connectors.transport import MAX_PROBE_BYTES, PinnedTransport
from tests.servers.bomb import BombServer, MiB
from tests.servers.http import HttpServer
from tests.servers.saas import SaasServer

MEMORY_BOUND = 24 * MiB  # the bombs decode to 50 MiB and more; the bounds keep a check to a few MiB


async def run(name: str, config: dict[str, Any]) -> CheckResult:
    connector = get_connector(name)
    return await run_check(connector, connector.parse_config(config), timeout=20.0)


async def attack(name: str, config: dict[str, Any], healthy: HttpServer) -> CheckResult:
    """Run the hostile check next to a healthy one; assert time, memory and the healthy one."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        started = time.monotonic()
        hostile = asyncio.create_task(run(name, config))
        good = await run("http", {"url": healthy.url("/ok")})
        result = await hostile
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert good.status == CheckStatus.SUCCEEDED, good.failure
    assert good.duration_ms < 5000
    assert elapsed < 10, elapsed
    assert peak < MEMORY_BOUND, f"memory grew by {peak / MiB:.0f} MiB"
    return result


def assert_too_large(result: CheckResult, limit: str) -> None:
    assert result.status == CheckStatus.FAILED, result
    assert result.failure is not None
    assert result.failure.type == FailureType.UNEXPECTED_RESPONSE
    assert "too large" in result.failure.message, result.failure.message
    assert limit in result.failure.message


def assert_stacked_refused(result: CheckResult) -> None:
    assert result.status == CheckStatus.FAILED, result
    assert result.failure is not None
    assert result.failure.type == FailureType.UNEXPECTED_RESPONSE
    assert "stacked content encodings (gzip, gzip)" in result.failure.message


# --- http ---------------------------------------------------------------------------------


async def test_http_a_double_gzip_answer_is_refused(bomb_server: BombServer, http_server: HttpServer) -> None:
    bomb_server.mode = "double-gzip"
    assert_stacked_refused(await attack("http", {"url": bomb_server.url("/")}, http_server))


async def test_http_a_redirect_with_a_huge_body_is_too_large(bomb_server: BombServer, http_server: HttpServer) -> None:
    bomb_server.mode = "redirect"
    result = await attack("http", {"url": bomb_server.url("/")}, http_server)
    assert_too_large(result, "64 KiB")
    assert result.failure is not None
    assert "redirect" in result.failure.message
    assert bomb_server.sent < 64 * MiB  # the rest of the 1 GiB was never asked for


# --- saas (github), s3, website: the same transport ------------------------------------------


@pytest.mark.parametrize("mode", ["double-gzip", "gzip", "redirect"])
async def test_github_bombs_are_refused(mode: str, bomb_server: BombServer, http_server: HttpServer) -> None:
    bomb_server.mode = mode
    config = {"token": "ghp_example", "repository": "octo/repo", "base_url": bomb_server.url("/api")}
    result = await attack("github", config, http_server)
    if mode == "double-gzip":
        assert_stacked_refused(result)
    else:
        assert_too_large(result, "64 KiB" if mode == "redirect" else "4 MiB")


@pytest.mark.parametrize("mode", ["double-gzip", "gzip", "redirect"])
async def test_s3_bombs_are_refused(mode: str, bomb_server: BombServer, http_server: HttpServer) -> None:
    bomb_server.mode = mode
    config = {
        "bucket": "data",
        "endpoint_url": bomb_server.base_url,
        "access_key_id": "example-key",
        "secret_access_key": "example-secret",
    }
    result = await attack("s3", config, http_server)
    if mode == "double-gzip":
        assert_stacked_refused(result)
    elif mode == "gzip":
        assert_too_large(result, "4 MiB")
    else:  # s3 follows no redirect: the 302 is judged, its body is only read up to the bound
        assert_too_large(result, "64 KiB")


@pytest.mark.parametrize("mode", ["double-gzip", "gzip", "redirect"])
async def test_website_bombs_are_refused(mode: str, bomb_server: BombServer, http_server: HttpServer) -> None:
    bomb_server.mode = mode
    result = await attack("website", {"url": bomb_server.url("/sitemap.xml")}, http_server)
    if mode == "double-gzip":
        assert_stacked_refused(result)
    elif mode == "redirect":
        assert_too_large(result, "64 KiB")
    else:  # robots.txt is read up to 512 KiB; the sitemap's XML (all white space) up to the bound
        assert result.status == CheckStatus.FAILED, result
        assert result.failure is not None
        assert result.failure.type == FailureType.UNEXPECTED_RESPONSE
        assert "is not a usable sitemap" in result.failure.message


@pytest.mark.parametrize("mode", ["double-gzip", "gzip", "redirect"])
async def test_an_oauth_token_endpoint_bomb_fails_the_token_step(
    mode: str, bomb_server: BombServer, saas_server: SaasServer, http_server: HttpServer
) -> None:
    bomb_server.mode = mode
    credentials = {
        "type": "oauth",
        "client_id": saas_server.client_id,
        "client_secret": saas_server.client_secret,
        "refresh_token": saas_server.refresh_token,
        "token_url": bomb_server.url("/token"),
    }
    config = {
        "credentials": credentials,
        "folder_id": "folder",
        "base_url": saas_server.url("/google"),
        "ca_cert": saas_server.ca_pem,
    }
    result = await attack("google_drive", config, http_server)
    assert next(s for s in result.steps if s.name == "token").status == "failed"
    if mode == "double-gzip":
        assert_stacked_refused(result)
    else:
        assert_too_large(result, "64 KiB" if mode == "redirect" else "4 MiB")


async def test_a_coding_that_was_not_asked_for_is_refused_when_read(
    bomb_server: BombServer, http_server: HttpServer
) -> None:
    bomb_server.mode = "brotli"
    config = {"token": "ghp_example", "repository": "octo/repo", "base_url": bomb_server.url("/api")}
    result = await attack("github", config, http_server)
    assert result.failure is not None
    assert result.failure.type == FailureType.UNEXPECTED_RESPONSE
    assert "content encoding br, which was not asked for" in result.failure.message


# --- what is within the bounds ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["gzip-small", "deflate-small", "raw-deflate"])
async def test_an_encoded_answer_within_the_bounds_is_decoded(mode: str, bomb_server: BombServer) -> None:
    bomb_server.mode = mode
    address = Address(host="127.0.0.1", ip="127.0.0.1", port=bomb_server.port, family=2)
    async with httpx.AsyncClient(transport=PinnedTransport(client_context(), address)) as client:
        response = await client.get(bomb_server.url("/"))
    assert response.content == b" " * MiB
    assert "content-encoding" not in response.headers  # decoded by the transport, not again by httpx


# --- the bound of a whole check ----------------------------------------------------------------


async def test_responses_of_one_check_are_bounded_together(bomb_server: BombServer) -> None:
    bomb_server.mode = "big"  # 3 MiB each: every one is under the bound of one response
    address = Address(host="127.0.0.1", ip="127.0.0.1", port=bomb_server.port, family=2)
    async with httpx.AsyncClient(transport=PinnedTransport(client_context(), address)) as client:
        read = 0
        with pytest.raises(ProbeFailure) as raised:
            for _ in range(MAX_PROBE_BYTES // bomb_server.big + 2):
                read += len((await client.get(bomb_server.url("/"))).content)
    assert raised.value.type == FailureType.UNEXPECTED_RESPONSE
    assert "more than 16 MiB, the limit for one check" in raised.value.message
    assert read <= MAX_PROBE_BYTES
