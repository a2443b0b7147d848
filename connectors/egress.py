"""The egress policy: which addresses a probe may connect to (protection against SSRF).

A probe connects wherever a caller's configuration points it, from inside the service's
network; without a policy a caller could make it reach the cloud's metadata service or
an internal system. The policy is applied to the *resolved* addresses a probe actually
connects to (:func:`connectors.network.resolve` and :func:`~connectors.network.connect_tcp`
filter them, and :class:`connectors.transport.PinnedBackend` checks every host an HTTP redirect
leads to the same way), so a name that resolves to a forbidden address (DNS rebinding
included) is refused like the address itself.

How an address is judged, in order:

1. Always refused, whatever the lists say: link-local addresses (``169.254.0.0/16``,
   ``fe80::/10``) and the cloud metadata addresses (``169.254.169.254``,
   ``fd00:ec2::254``). An IPv4 address written as IPv6 (``::ffff:169.254.169.254``, the
   NAT64 prefix ``64:ff9b::/96``) is judged as the IPv4 address it carries.
2. Otherwise the most specific network (longest prefix) among the operator's ``deny``,
   the operator's ``allow`` and the profile's defaults (``default_deny``) that contains the
   address decides. On a tie, ``deny`` beats ``allow``, which beats the profile's default.
3. An address no network contains is allowed.

So ``allow=127.0.0.2/32`` opens one loopback address in production, ``deny=0.0.0.0/0,::/0``
with ``allow=203.0.113.0/24`` allows only that network, and ``deny=10.1.0.0/16`` closes a
part of a network the profile allows.

:class:`EgressPolicy` with no arguments (what a check gets when nobody sets a policy, e.g.
``connectors`` used from a plain Python shell) refuses only the always-refused addresses.
The service sets one per check from its settings (``worker.settings``; see
:func:`for_profile` for the profile defaults) through ``run_check(..., egress=...)``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from connectors.errors import FailureType, ProbeFailure
from connectors.profile import Profile, is_production

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES: tuple[IPAddress, ...] = (
    ipaddress.IPv4Address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean...
    ipaddress.IPv6Address("fd00:ec2::254"),  # AWS IMDS over IPv6 (Nitro)
)
LINK_LOCAL: tuple[Network, ...] = (ipaddress.IPv4Network("169.254.0.0/16"), ipaddress.IPv6Network("fe80::/10"))

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _networks(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


LOOPBACK = _networks("127.0.0.0/8", "::1/128")
PRIVATE = _networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
CGNAT = _networks("100.64.0.0/10")
MULTICAST = _networks("224.0.0.0/4", "ff00::/8")
UNSPECIFIED = _networks(
    "0.0.0.0/8", "::/128"
)  # 0.0.0.0/8: "this network"; connecting to 0.0.0.0 reaches the host itself
RESERVED = _networks("240.0.0.0/4")  # "future use", with the broadcast address

PRODUCTION_DENY: tuple[Network, ...] = LOOPBACK + PRIVATE + CGNAT + MULTICAST + UNSPECIFIED + RESERVED
"""What the production profile refuses unless the operator allows it (SOURCECHECK_EGRESS_ALLOW)."""

_KINDS: tuple[tuple[tuple[Network, ...], str], ...] = (
    (LOOPBACK, "a loopback address"),
    (PRIVATE, "a private address"),
    (CGNAT, "a carrier-grade NAT address"),
    (MULTICAST, "a multicast address"),
    (UNSPECIFIED, "an unspecified address"),
    (RESERVED, "a reserved address"),
)


def parse_networks(text: str | Iterable[str]) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.168.1.5"`` → networks (a bare address is a /32 or /128).

    Raises ValueError naming the entry that is not a network, e.g. one with host bits set
    (``10.0.0.1/8``: write ``10.0.0.0/8``), so a typo is not silently widened.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    networks: list[Network] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a network in CIDR notation ({exc})") from None
    return tuple(networks)


def _embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped ``::ffff:a.b.c.d``, NAT64), else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses a probe may connect to. See the module's documentation for the rules."""

    allow: tuple[Network, ...] = ()
    """The operator's allowed networks (SOURCECHECK_EGRESS_ALLOW)."""
    deny: tuple[Network, ...] = ()
    """The operator's denied networks (SOURCECHECK_EGRESS_DENY)."""
    default_deny: tuple[Network, ...] = ()
    """The profile's denied networks (production: :data:`PRODUCTION_DENY`)."""

    def refusal(self, ip: str | IPAddress) -> str | None:
        """Why ``ip`` may not be connected to (``"a loopback address"``), or None when it may."""
        # Remembered per policy: a check asks about the same address at each layer (resolve,
        # connect_tcp, the HTTP transport), and a policy never changes.
        cache = self._refusals
        try:
            return cache[ip]
        except KeyError:
            pass
        if len(cache) >= _REFUSALS_KEPT:
            cache.clear()
        verdict = cache[ip] = self._refusal(ip)
        return verdict

    @functools.cached_property
    def _refusals(self) -> dict[str | IPAddress, str | None]:
        return {}

    def _refusal(self, ip: str | IPAddress) -> str | None:
        address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%")[0])
        judged = _embedded_ipv4(address)
        for candidate in {address, judged}:
            if candidate in METADATA_ADDRESSES:
                return "a cloud metadata address"
            if any(candidate in net for net in LINK_LOCAL if net.version == candidate.version):
                return "a link-local address"
        best: tuple[int, int, str] | None = None  # (prefix length, rank, verdict); higher wins
        for rank, networks, verdict in (
            (2, self.deny, "deny"),
            (1, self.allow, "allow"),
            (0, self.default_deny, "default"),
        ):
            for net in networks:
                if net.version == judged.version and judged in net:
                    key = (net.prefixlen, rank, verdict)
                    if best is None or key > best:
                        best = key
        if best is None or best[2] == "allow":
            return None
        if best[2] == "deny":
            return "an address in SOURCECHECK_EGRESS_DENY"
        for networks, kind in _KINDS:
            if any(net.version == judged.version and judged in net for net in networks):
                return kind
        return "an address in a network the service does not allow"

    def allows(self, ip: str | IPAddress) -> bool:
        return self.refusal(ip) is None

    def may_name(self, ip: str | None, host: str | None = None) -> bool:
        """Whether a message may name ``ip`` (or quote a response from it): always in the
        development profile, where it helps; in production only a public address, or the one
        the user typed as ``host``, for the others would map the service's internal network
        for any tenant. An unknown address (None) is treated as non-public."""
        return not is_production() or (ip is not None and (ip == host or is_public(ip)))


def is_public(ip: str | IPAddress) -> bool:
    """Whether ``ip`` is a globally reachable unicast address (an IPv4 one written as IPv6 is
    judged as the IPv4 address it carries)."""
    try:
        address = ipaddress.ip_address(ip.split("%")[0]) if isinstance(ip, str) else ip
    except ValueError:
        return False
    judged = _embedded_ipv4(address)
    return judged.is_global and not judged.is_multicast


def for_profile(
    profile: Profile | str,
    *,
    allow: str | Iterable[str] = (),
    deny: str | Iterable[str] = (),
) -> EgressPolicy:
    """The policy of a service profile: production refuses :data:`PRODUCTION_DENY` (loopback,
    private, CGNAT, multicast, unspecified, reserved) unless allowed; development refuses
    only what is always refused, so a database on localhost can be tested."""
    default = PRODUCTION_DENY if profile == "production" else ()
    return EgressPolicy(allow=parse_networks(allow), deny=parse_networks(deny), default_deny=default)


# --- the policy of the running check ---------------------------------------------------

_REFUSALS_KEPT = 1024  # addresses whose verdict a policy remembers

DEFAULT_POLICY = EgressPolicy()
_current: ContextVar[EgressPolicy] = ContextVar("sourcecheck_egress_policy", default=DEFAULT_POLICY)


def current_policy() -> EgressPolicy:
    """The policy of the check running in this task (``run_check`` sets it)."""
    return _current.get()


@contextmanager
def using(policy: EgressPolicy | None) -> Iterator[EgressPolicy]:
    """Make ``policy`` the current one inside the block (None: keep the current one)."""
    if policy is None:
        yield _current.get()
        return
    token = _current.set(policy)
    try:
        yield policy
    finally:
        _current.reset(token)


def blocked(host: str, refusals: dict[str, str], *, what: str = "") -> ProbeFailure:
    """The ``egress_blocked`` failure for ``host`` whose addresses were all refused.

    ``refusals`` maps each address to why (:meth:`EgressPolicy.refusal`); ``what`` says how
    the host was reached (``" (a redirect led there)"``).
    """
    policy = current_policy()
    listed = ", ".join(f"{ip} ({reason})" if policy.may_name(ip, host) else reason for ip, reason in refusals.items())
    if list(refusals) == [host]:
        message = f"Connecting to {listed} is not allowed by the egress policy{what}"
    else:
        message = f"Host '{host}' resolves only to addresses the egress policy does not allow: {listed}{what}"
    return ProbeFailure(FailureType.EGRESS_BLOCKED, message)
