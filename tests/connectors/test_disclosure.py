"""What failures tell about the service's network: in production no non-public address a
name resolved to, and no body of a response from a non-public address; in development both,
where they help."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from connectors import get_connector, run_check
from connectors.base import CheckResult, CheckStatus, Probe
from connectors.egress import EgressPolicy, for_profile, is_public, using
from connectors.errors import FailureType, ProbeFailure
from connectors.network import connect_tcp, resolve
from connectors.profile import Profile
from connectors.profile import using as using_profile
from tests.servers.saas import SaasServer
from tests.servers.tcp import CountingListener
from tests.servers.website import Site

LOOPBACK = "127.0.0.0/8,::1/128"
# (the egress policy, the profile): in production, an operator-opened internal network.
PRODUCTION_ALLOWING_LOOPBACK: tuple[EgressPolicy, Profile] = (for_profile("production", allow=LOOPBACK), "production")
DEVELOPMENT: tuple[EgressPolicy, Profile] = (for_profile("development"), "development")


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener("127.0.0.1")
    try:
        yield server
    finally:
        server.close()


def test_public_addresses_are_told_from_internal_ones() -> None:
    assert is_public("93.184.216.34") and is_public("2606:2800:220:1::1")
    for ip in ("127.0.0.1", "::1", "10.1.2.3", "192.168.0.1", "100.64.0.1", "::ffff:10.0.0.1", "fd00::1", "224.0.0.1"):
        assert not is_public(ip), ip


def test_only_the_production_profile_hides_internal_addresses() -> None:
    policy = EgressPolicy()
    assert policy.may_name("127.0.0.1")  # a plain Python shell (development): nothing to hide from
    with using_profile("production"):
        assert not policy.may_name("127.0.0.1") and not policy.may_name(None)
        assert policy.may_name("127.0.0.1", host="127.0.0.1")  # what the user typed
        assert policy.may_name("93.184.216.34")


@pytest.mark.parametrize(("policy", "named"), [(PRODUCTION_ALLOWING_LOOPBACK, False), (DEVELOPMENT, True)])
async def test_the_resolve_and_tcp_steps_name_internal_addresses_only_in_development(
    policy: tuple[EgressPolicy, Profile], named: bool, listener: CountingListener
) -> None:
    probe = Probe(("resolve", "tcp"), deadline=float("inf"))
    with using(policy[0]), using_profile(policy[1]):
        addresses = await resolve(probe, "localhost", listener.port)
        await connect_tcp(probe, [a for a in addresses if a.family == socket.AF_INET])
    resolved, connected = (step.message or "" for step in probe.steps)
    assert ("127.0.0.1" in resolved) is named, resolved
    assert ("127.0.0.1" in connected) is named, connected
    if not named:
        assert "non-public address" in resolved and connected == f"Connected to localhost:{listener.port}"


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ((for_profile("production"), "production"), False),
        ((for_profile("development", deny=LOOPBACK), "development"), True),
    ],
)
async def test_egress_blocked_names_internal_addresses_only_in_development(
    policy: tuple[EgressPolicy, Profile], named: bool
) -> None:
    probe = Probe(("resolve",), deadline=float("inf"))
    with using(policy[0]), using_profile(policy[1]), pytest.raises(ProbeFailure) as caught:
        await resolve(probe, "localhost", 80)
    assert caught.value.type == FailureType.EGRESS_BLOCKED
    message = caught.value.message
    assert ("127.0.0.1" in message) is named, message
    if not named:
        assert "resolves only to addresses the egress policy does not allow: a loopback address" in message


async def _drive(server: SaasServer, credentials: dict[str, Any], policy: tuple[EgressPolicy, Profile]) -> CheckResult:
    connector = get_connector("google_drive")
    config = connector.parse_config(
        {
            "credentials": credentials,
            "folder_id": "1AbCdEfGhIjKlMnOpQrStUvWxYz012345",
            "base_url": server.url("/google"),
            "ca_cert": server.ca_pem,
        }
    )
    return await run_check(connector, config, timeout=5, egress=policy[0], profile=policy[1])


@pytest.mark.parametrize(("policy", "quoted"), [(PRODUCTION_ALLOWING_LOOPBACK, False), (DEVELOPMENT, True)])
async def test_a_body_of_an_internal_response_is_quoted_only_in_development(
    saas_server: SaasServer, policy: tuple[EgressPolicy, Profile], quoted: bool
) -> None:
    result = await _drive(saas_server, {"type": "token", "access_token": "ya29.expired"}, policy)
    assert result.status == CheckStatus.FAILED and result.failure is not None
    assert result.failure.type == FailureType.AUTHENTICATION_FAILED
    assert result.failure.message.startswith("Google Drive answered 401 Unauthorized")
    assert ("invalid authentication credentials" in result.failure.message) is quoted, result.failure.message


@pytest.mark.parametrize(("policy", "quoted"), [(PRODUCTION_ALLOWING_LOOPBACK, False), (DEVELOPMENT, True)])
async def test_an_internal_token_endpoints_description_is_quoted_only_in_development(
    saas_server: SaasServer, policy: tuple[EgressPolicy, Profile], quoted: bool
) -> None:
    credentials = {
        "type": "oauth",
        "client_id": saas_server.client_id,
        "client_secret": saas_server.client_secret,
        "refresh_token": saas_server.revoked_refresh_token,
        "token_url": saas_server.url("/google-oauth/token"),
    }
    result = await _drive(saas_server, credentials, policy)
    assert result.failure is not None and result.failure.type == FailureType.AUTHENTICATION_FAILED
    assert ("Token has been expired or revoked" in result.failure.message) is quoted, result.failure.message


@pytest.mark.parametrize(("policy", "quoted"), [(PRODUCTION_ALLOWING_LOOPBACK, False), (DEVELOPMENT, True)])
@pytest.mark.parametrize("path", ["/sitemap.xml", "/sitemap.txt"])
async def test_a_sitemap_on_an_internal_address_is_quoted_only_in_development(
    site: Site, policy: tuple[EgressPolicy, Profile], quoted: bool, path: str
) -> None:
    connector = get_connector("website")
    config = connector.parse_config({"url": site.url(path)})
    result = await run_check(connector, config, timeout=5, egress=policy[0], profile=policy[1])
    assert result.status == CheckStatus.SUCCEEDED, result
    fetched = next(s for s in result.steps if s.name == "fetch").message or ""
    assert "lists pages" in fetched
    assert (f"(first: {site.base_url}/)" in fetched) is quoted, fetched
