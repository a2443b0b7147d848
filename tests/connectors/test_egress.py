"""The egress policy (connectors/egress.py): what a probe may connect to, proven on real sockets.

A refused address must never see a connection: the tests point checks at listeners that
count every connection they get, and assert the count is 0 (the listener also drains its
backlog, so a connection the kernel completed but nobody accepted counts too).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from connectors import get_connector, run_check
from connectors.base import CheckResult, CheckStatus, Probe, StepStatus
from connectors.egress import (
    DEFAULT_POLICY,
    PRODUCTION_DENY,
    EgressPolicy,
    IPAddress,
    current_policy,
    for_profile,
    parse_networks,
    using,
)
from connectors.errors import DEFAULT_HINTS, RETRYABLE, FailureType, ProbeFailure
from connectors.network import Address, connect_tcp, resolve
from connectors.profile import Profile
from connectors.registry import all_connectors
from connectors.tls import client_context
from connectors.transport import PinnedTransport
from tests import helpers
from tests.servers.http import HttpServer, start_http_server
from tests.servers.postgres import PostgresServer
from tests.servers.ssh import SshServer
from tests.servers.tcp import CountingListener
from worker.settings import Settings


async def check(
    name: str, config: dict[str, Any], egress: EgressPolicy | None, timeout: float = 5.0, profile: Profile | None = None
) -> CheckResult:
    return await helpers.check(name, config, timeout, egress=egress, profile=profile)


PRODUCTION = for_profile("production")


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener("127.0.0.1")
    try:
        yield server
    finally:
        server.close()


def blocked_step(result: CheckResult) -> str:
    """The name of the step that failed with egress_blocked (asserting that one did)."""
    assert result.status == CheckStatus.FAILED, result
    assert result.failure is not None and result.failure.type == FailureType.EGRESS_BLOCKED, result
    assert result.failure.retryable is False
    failed = [s for s in result.steps if s.status == StepStatus.FAILED]
    assert len(failed) == 1, result
    return failed[0].name


# --- the policy itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "169.254.169.254",
        "fd00:ec2::254",
        "169.254.0.1",
        "169.254.255.255",
        "fe80::1",
        "febf::1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
    ],
)
@pytest.mark.parametrize(
    "policy",
    [
        DEFAULT_POLICY,
        EgressPolicy(),
        for_profile("development"),
        PRODUCTION,
        for_profile("production", allow="0.0.0.0/0,::/0,169.254.0.0/16,169.254.169.254/32,fe80::/10,fd00:ec2::254/128"),
    ],
    ids=["default", "empty", "development", "production", "everything-allowed"],
)
def test_metadata_and_link_local_addresses_are_always_refused(ip: str, policy: EgressPolicy) -> None:
    assert policy.refusal(ip) in ("a cloud metadata address", "a link-local address")
    assert not policy.allows(ip)


def test_the_default_policy_allows_everything_else() -> None:
    for ip in (
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.5",
        "fc00::1",
        "100.64.0.1",
        "8.8.8.8",
        "2001:4860:4860::8888",
        "169.253.255.255",
        "169.255.0.0",
    ):
        assert DEFAULT_POLICY.allows(ip), ip
    assert current_policy() == DEFAULT_POLICY  # what a check gets when nobody sets a policy


def test_production_refuses_loopback_private_cgnat_multicast_unspecified_and_allows_public() -> None:
    refused = {
        "127.0.0.1": "a loopback address",
        "127.255.255.254": "a loopback address",
        "::1": "a loopback address",
        "10.0.0.1": "a private address",
        "172.16.0.1": "a private address",
        "172.31.255.255": "a private address",
        "192.168.1.1": "a private address",
        "fc00::1": "a private address",
        "fd12:3456::1": "a private address",
        "100.64.0.1": "a carrier-grade NAT address",
        "100.127.255.255": "a carrier-grade NAT address",
        "224.0.0.1": "a multicast address",
        "ff02::1": "a multicast address",
        "0.0.0.0": "an unspecified address",
        "::": "an unspecified address",
        "255.255.255.255": "a reserved address",
        "::ffff:127.0.0.1": "a loopback address",
        "::ffff:10.0.0.1": "a private address",
    }
    for ip, reason in refused.items():
        assert PRODUCTION.refusal(ip) == reason, ip
    for ip in ("8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"):
        assert PRODUCTION.allows(ip), ip


def test_development_allows_loopback_and_private_networks() -> None:
    development = for_profile("development")
    for ip in ("127.0.0.1", "::1", "10.0.0.1", "192.168.1.1", "fc00::1", "8.8.8.8"):
        assert development.allows(ip), ip


def test_the_most_specific_network_decides_and_deny_wins_a_tie() -> None:
    policy = for_profile("production", allow="127.0.0.2/32, 10.20.0.0/16", deny="10.20.30.0/24, 8.8.8.8")
    assert policy.allows("127.0.0.2")  # /32 allow beats the profile's 127.0.0.0/8
    assert not policy.allows("127.0.0.1")
    assert policy.allows("10.20.1.1")  # the operator opened a peered network
    assert policy.refusal("10.20.30.40") == "an address in SOURCECHECK_EGRESS_DENY"  # and closed a part of it
    assert not policy.allows("10.21.0.1")
    assert policy.refusal("8.8.8.8") == "an address in SOURCECHECK_EGRESS_DENY"
    tie = for_profile("development", allow="192.0.2.0/24", deny="192.0.2.0/24")
    assert not tie.allows("192.0.2.1")
    only = for_profile("development", allow="203.0.113.0/24", deny="0.0.0.0/0,::/0")  # an allow-list only
    assert only.allows("203.0.113.7")
    assert not only.allows("198.51.100.1") and not only.allows("127.0.0.1") and not only.allows("2001:db8::1")


def test_networks_are_parsed_strictly() -> None:
    assert parse_networks(" 10.0.0.0/8 ,, 192.168.1.5 ,fc00::/7,") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.5/32"),
        ipaddress.ip_network("fc00::/7"),
    )
    assert parse_networks("") == ()
    for bad in ("10.0.0.1/8", "10.0.0.0/33", "example.com", "10.0.0.0/8;rm", "1.2.3"):
        with pytest.raises(ValueError, match="not a network"):
            parse_networks(bad)


def test_settings_build_the_policy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SOURCECHECK_EGRESS_ALLOW", "SOURCECHECK_EGRESS_DENY", "SOURCECHECK_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().egress_policy() == for_profile("development")
    monkeypatch.setenv("SOURCECHECK_PROFILE", "production")
    monkeypatch.setenv("SOURCECHECK_SECRET_KEYS", "x" * 43 + "=")
    monkeypatch.setenv("SOURCECHECK_EGRESS_ALLOW", "10.20.0.0/16, 127.0.0.2/32")
    monkeypatch.setenv("SOURCECHECK_EGRESS_DENY", "203.0.113.0/24")
    policy = Settings().egress_policy()
    assert policy.default_deny == PRODUCTION_DENY
    assert policy.allow == parse_networks("10.20.0.0/16,127.0.0.2/32")
    assert policy.deny == parse_networks("203.0.113.0/24")
    assert policy.allows("10.20.0.5") and not policy.allows("10.0.0.5") and not policy.allows("203.0.113.9")
    monkeypatch.setenv("SOURCECHECK_EGRESS_DENY", "10.0.0.1/8")  # host bits set: a typo, refused at start
    with pytest.raises(ValidationError, match="egress_deny"):
        Settings()


def test_egress_blocked_is_a_documented_failure_type() -> None:
    assert RETRYABLE[FailureType.EGRESS_BLOCKED] is False
    assert "egress policy" in DEFAULT_HINTS[FailureType.EGRESS_BLOCKED]
    with open("docs/failure-types.md") as doc:
        assert "| `egress_blocked` | no |" in doc.read()


# --- checks: nothing reaches a refused address ------------------------------------------


async def test_a_check_of_a_refused_address_fails_without_connecting(listener: CountingListener) -> None:
    config = {"url": f"http://127.0.0.1:{listener.port}/ok"}
    result = await check("http", config, PRODUCTION)
    assert blocked_step(result) == "resolve"
    assert "127.0.0.1 (a loopback address)" in result.failure.message  # type: ignore[union-attr]
    assert [s.status for s in result.steps[1:]] == [StepStatus.SKIPPED] * 3
    assert listener.accepted == 0
    # The same check with a policy that allows loopback does reach the listener: the listener works.
    allowed = await check("http", config, for_profile("production", allow="127.0.0.1/32"), timeout=2)
    assert allowed.failure is None or allowed.failure.type != FailureType.EGRESS_BLOCKED
    assert listener.accepted >= 1


@pytest.mark.parametrize("name", sorted(all_connectors()))
async def test_every_connector_refuses_a_blocked_address_before_any_connection(
    name: str, listener: CountingListener
) -> None:
    connector = get_connector(name)
    config = connector.parse_config(connector.example_config("127.0.0.1", listener.port))
    result = await run_check(connector, config, timeout=5, egress=PRODUCTION)
    assert blocked_step(result) == "resolve", result
    assert listener.accepted == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://169.254.1.1:8080/",
    ],
)
async def test_the_metadata_address_is_refused_without_any_policy(url: str) -> None:
    connector = get_connector("http")
    config = connector.parse_config({"url": url})
    for result in (
        await run_check(connector, config, timeout=5),  # no policy given at all: the library default
        await check("http", {"url": url}, EgressPolicy()),  # empty allow and deny lists
        await check("http", {"url": url}, for_profile("development", allow="0.0.0.0/0,::/0")),
    ):
        assert blocked_step(result) == "resolve"
        assert "metadata" in result.failure.message or "link-local" in result.failure.message  # type: ignore[union-attr]


async def test_a_host_name_is_judged_by_the_addresses_it_resolves_to(listener: CountingListener) -> None:
    result = await check("http", {"url": f"http://localhost:{listener.port}/ok"}, PRODUCTION, profile="production")
    assert blocked_step(result) == "resolve"
    message = result.failure.message  # type: ignore[union-attr]
    assert message.startswith("Host 'localhost' resolves only to addresses the egress policy does not allow")
    assert "a loopback address" in message and "127.0.0.1" not in message  # production names no internal address
    assert listener.accepted == 0


async def test_resolve_keeps_the_allowed_addresses_and_says_which_it_dropped() -> None:
    probe = Probe(("resolve", "tcp"), deadline=float("inf"))
    policy = for_profile("development", deny="::1/128")
    with using(policy):
        addresses = await resolve(probe, "localhost", 80)
    ips = {a.ip for a in addresses}
    assert "::1" not in ips and "127.0.0.1" in ips
    assert probe.steps[0].status == StepStatus.SUCCEEDED


async def test_connect_tcp_never_connects_to_a_refused_address_it_is_given(listener: CountingListener) -> None:
    """An Address a connector made itself (not from resolve) is judged again."""
    probe = Probe(("tcp",), deadline=float("inf"))
    address = Address(host="127.0.0.1", ip="127.0.0.1", port=listener.port, family=socket.AF_INET)
    with using(PRODUCTION), pytest.raises(ProbeFailure) as caught:
        await connect_tcp(probe, [address])
    assert caught.value.type == FailureType.EGRESS_BLOCKED
    assert probe.steps[0].status == StepStatus.FAILED
    assert listener.accepted == 0


# --- redirects and other hosts an HTTP check is led to -----------------------------------


@pytest.fixture
def second_loopback_server() -> Iterator[HttpServer]:
    """The test HTTP server on 127.0.0.2, which the policies below allow (and 127.0.0.1 not)."""
    with start_http_server(host="127.0.0.2") as server:
        yield server


ALLOW_SECOND = for_profile("production", allow="127.0.0.2/32")


async def test_the_allowed_server_is_reachable(second_loopback_server: HttpServer) -> None:
    result = await check("http", {"url": second_loopback_server.url("/ok")}, ALLOW_SECOND)
    assert result.status == CheckStatus.SUCCEEDED, result


@pytest.mark.parametrize("target_host", ["127.0.0.1", "localhost"])
async def test_a_redirect_to_a_refused_address_is_not_followed(
    second_loopback_server: HttpServer, listener: CountingListener, target_host: str
) -> None:
    target = f"http://{target_host}:{listener.port}/internal"
    url = second_loopback_server.url(f"/redirect?to={target}")
    result = await check("http", {"url": url}, ALLOW_SECOND, profile="production")
    assert blocked_step(result) == "request"
    assert [s.status for s in result.steps[:2]] == [StepStatus.SUCCEEDED] * 2
    assert "a redirect" in result.failure.message  # type: ignore[union-attr]
    assert "a loopback address" in result.failure.message  # type: ignore[union-attr]
    # Production names an internal address only where the redirect itself gave it.
    assert ("127.0.0.1" in result.failure.message) is (target_host == "127.0.0.1")  # type: ignore[union-attr]
    assert [r.path for r in second_loopback_server.requests] == [f"/redirect?to={target}"]
    assert listener.accepted == 0


async def test_a_redirect_to_the_metadata_address_is_not_followed_even_in_development(
    second_loopback_server: HttpServer,
) -> None:
    url = second_loopback_server.url("/redirect?to=http://169.254.169.254/latest/meta-data/iam/")
    result = await check("http", {"url": url}, None)  # the library default
    assert blocked_step(result) == "request"
    assert "a cloud metadata address" in result.failure.message  # type: ignore[union-attr]


async def test_a_website_check_does_not_follow_a_redirect_to_a_refused_address(
    second_loopback_server: HttpServer, listener: CountingListener
) -> None:
    url = second_loopback_server.url(f"/redirect?to=http://127.0.0.1:{listener.port}/")
    result = await check("website", {"url": url, "user_agent": "sourcecheck"}, ALLOW_SECOND)
    assert blocked_step(result) == "fetch"
    assert listener.accepted == 0


async def test_every_new_connection_of_the_pinned_transport_goes_through_the_policy(listener: CountingListener) -> None:
    """What saas (token endpoints), s3 and website clients use: any host but the pinned one is
    resolved and judged; the pinned one keeps its address."""
    pinned = Address(host="pinned.invalid", ip="127.0.0.1", port=listener.port, family=socket.AF_INET)
    transport = PinnedTransport(client_context(), pinned, for_profile("production", allow="127.0.0.1/32"))
    async with httpx.AsyncClient(transport=transport, timeout=2) as client:
        with pytest.raises(httpx.HTTPError):  # the listener closes the connection: but it was made
            await client.get(f"http://pinned.invalid:{listener.port}/")
    assert listener.accepted == 1
    transport = PinnedTransport(client_context(), pinned, PRODUCTION)
    async with httpx.AsyncClient(transport=transport, timeout=2) as client:
        for url in (f"http://localhost:{listener.port}/", f"http://127.0.0.1:{listener.port}/", "http://[::1]:1/"):
            with pytest.raises(ProbeFailure) as caught:
                await client.get(url)
            assert caught.value.type == FailureType.EGRESS_BLOCKED
    assert listener.accepted == 1
    async with httpx.AsyncClient(transport=PinnedTransport(client_context(), pinned, PRODUCTION), timeout=2) as client:
        with pytest.raises(httpx.ConnectError):  # a name that does not resolve stays a DNS error
            await client.get("http://does-not-exist.invalid/")


# --- SSH tunnels: the policy applies to the bastion only ---------------------------------


@dataclass(frozen=True)
class RecordingPolicy(EgressPolicy):
    """Allows everything and records every address it is asked about."""

    judged: list[str] = field(default_factory=list)

    def refusal(self, ip: str | IPAddress) -> str | None:
        self.judged.append(str(ip))
        return None


async def test_behind_a_tunnel_only_the_bastion_is_judged(
    ssh_server: SshServer, postgres_server: PostgresServer
) -> None:
    """The database is reached by the bastion, from its network: its host (here a name only the
    bastion resolves) is never resolved nor judged by us; nor is the tunnel's local listener."""
    policy = RecordingPolicy()
    config = postgres_server.config(host="localhost", ssh_tunnel=ssh_server.tunnel())
    result = await check("postgres", config, policy, timeout=10)
    assert result.status == CheckStatus.SUCCEEDED, result
    assert policy.judged == [ssh_server.host, ssh_server.host]  # the bastion's address: by resolve, then by tcp


async def test_a_refused_bastion_is_never_contacted(ssh_server: SshServer, postgres_server: PostgresServer) -> None:
    attempts = len(ssh_server.auth_attempts)
    forwards = len(ssh_server.forwards)
    result = await check("postgres", postgres_server.config(ssh_tunnel=ssh_server.tunnel()), PRODUCTION, timeout=10)
    assert blocked_step(result) == "resolve"
    assert "127.0.0.1 (a loopback address)" in result.failure.message  # type: ignore[union-attr]
    assert len(ssh_server.auth_attempts) == attempts and len(ssh_server.forwards) == forwards
