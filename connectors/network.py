"""The steps every network connector starts with: resolve the name, open TCP.

Each is a step of its own so the result says which layer is broken (the name, the
route, the port) before any driver is involved. Drivers then connect to the address
that answered here, so what was checked is what is used.

Both steps apply the egress policy of the running check (:mod:`connectors.egress`) to the
resolved addresses: ``resolve`` drops the refused ones and fails with ``egress_blocked``
when none is left, and ``connect_tcp`` never opens a connection to a refused address (it
checks again, for addresses a connector made itself). A driver that connects to
``Address.ip`` therefore only ever reaches an allowed address, whatever DNS answers later.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

from connectors.base import Probe
from connectors.egress import blocked, current_policy
from connectors.errors import FailureType, ProbeFailure
from connectors.threads import ThreadPool


@dataclass(frozen=True)
class Address:
    """One resolved address of a host (``ip`` is a literal IPv4 or IPv6 address)."""

    host: str
    ip: str
    port: int
    family: int


DNS_THREADS = 16
"""Threads of each process's own pool for name lookups (``getaddrinfo`` blocks).

Its own: the event loop's default pool is shared with other blocking work, and a lookup
must not wait behind work that cannot be cancelled (another probe's key decryption).
"""

_dns_threads = ThreadPool(DNS_THREADS, "dns")


async def resolve(probe: Probe, host: str, port: int, *, fields: Sequence[str] = ()) -> list[Address]:
    """Step ``resolve``: the host's addresses the egress policy allows, IPv4 first.

    Fails with dns_resolution_failed, or egress_blocked when the policy refuses every address,
    naming ``fields``: the configuration field(s) ``host`` comes from (``["ssh_tunnel.host"]``).
    Without them run_check names all the destination fields, right for a connector with one
    destination (``url``), too wide for one that has two (a database behind a tunnel).
    """
    async with probe.step("resolve", fields=fields) as step:
        try:
            infos = literal_addrinfo(host, port)
            if infos is None:
                infos = await _lookup(host, port)
        except socket.gaierror as exc:
            raise ProbeFailure(
                FailureType.DNS_RESOLUTION_FAILED,
                f"Could not resolve host '{host}' ({exc.strerror})",
                fields=list(fields),
            ) from None
        seen: dict[str, Address] = {}
        for family, _, _, _, sockaddr in sorted(infos, key=lambda i: i[0] != socket.AF_INET):
            ip = str(sockaddr[0])
            seen.setdefault(ip, Address(host=host, ip=ip, port=port, family=family))
        if not seen:
            raise ProbeFailure(FailureType.DNS_RESOLUTION_FAILED, f"Host '{host}' has no address", fields=list(fields))
        policy = current_policy()
        refused = {ip: reason for ip in seen if (reason := policy.refusal(ip)) is not None}
        addresses = [a for ip, a in seen.items() if ip not in refused]
        if not addresses:
            raise _naming(blocked(host, refused), fields)
        step.message = f"{host} resolved to {_listed([a.ip for a in addresses], host)}"
        if refused:
            step.message += f" (not used, the egress policy does not allow: {_listed(list(refused), host)})"
        return addresses


def _listed(ips: list[str], host: str) -> str:
    """``ips`` for a message: those the egress policy may name, and a count of the others."""
    policy = current_policy()
    shown = [ip for ip in ips if policy.may_name(ip, host)]
    hidden = len(ips) - len(shown)
    if hidden:
        shown.append(f"{hidden} non-public address{'es' if hidden > 1 else ''} (not shown in production)")
    return ", ".join(shown)


async def _lookup(host: str, port: int) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` of a name, in the DNS threads."""
    lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    return list(await _dns_threads.run(lookup))


def literal_addrinfo(host: str, port: int) -> list[tuple[Any, ...]] | None:
    """What ``getaddrinfo`` answers for ``host`` when it is an IP address literal, found
    without a thread: a literal needs no lookup (AI_NUMERICHOST never blocks and gives the
    same answer as a full lookup of a literal). None for a name, to be looked up."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, ValueError):  # not a literal (gaierror), or one the full lookup judges
        return None


_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}


@overload
async def connect_tcp(
    probe: Probe, addresses: list[Address], *, keep: Literal[False] = False, fields: Sequence[str] = ()
) -> Address: ...
@overload
async def connect_tcp(
    probe: Probe, addresses: list[Address], *, keep: Literal[True], fields: Sequence[str] = ()
) -> tuple[Address, socket.socket]: ...
async def connect_tcp(
    probe: Probe, addresses: list[Address], *, keep: bool = False, fields: Sequence[str] = ()
) -> Address | tuple[Address, socket.socket]:
    """Step ``tcp``: the first address that accepts a TCP connection.

    The connection is closed again at once; with ``keep=True`` it is returned instead
    (a connected non-blocking socket, the caller's to close) for the driver to use, so the
    server sees one connection, not a probe and then the real one (MySQL counts every
    connection that closes before logging in as a connect error, and blocks the client's
    address after ``max_connect_errors`` of them).

    Fails with connection_refused ("Connection refused"), host_unreachable, or, when the
    deadline passes during the handshake, connection_timeout (see ``run_check``); with
    egress_blocked, before any connection is attempted, when the egress policy refuses
    every address (refused ones are skipped). Each failure names ``fields``, the configuration
    fields the host and port come from (``["ssh_tunnel.host", "ssh_tunnel.port"]``; see :func:`resolve`).
    """
    async with probe.step("tcp", fields=fields) as step:
        policy = current_policy()
        refused = {a.ip: reason for a in addresses if (reason := policy.refusal(a.ip)) is not None}
        if refused and len(refused) == len({a.ip for a in addresses}):
            raise _naming(blocked(addresses[0].host, refused), fields)
        addresses = [a for a in addresses if a.ip not in refused]
        last: OSError | None = None
        for index, address in enumerate(addresses):
            # Each address but the last gets a fair share of the time left, so one that
            # drops packets does not use up the deadline of the others.
            left = len(addresses) - index
            try:
                if left == 1:
                    sock = await _open(address)
                else:
                    async with asyncio.timeout(probe.remaining() / left):
                        sock = await _open(address)
            except TimeoutError:
                last = TimeoutError(errno.ETIMEDOUT, "timed out")
                continue
            except OSError as exc:
                last = exc
                continue
            step.message = f"Connected to {_hostport(address)}"
            if keep:
                return address, sock
            sock.close()
            return address
        assert last is not None
        where = ", ".join(_hostport(a) for a in addresses)
        if isinstance(last, TimeoutError):
            raise ProbeFailure(
                FailureType.CONNECTION_TIMEOUT, f"Connection timed out ({where})", fields=list(fields)
            ) from None
        if isinstance(last, ConnectionRefusedError):
            raise ProbeFailure(
                FailureType.CONNECTION_REFUSED, f"Connection refused ({where})", fields=list(fields)
            ) from None
        if last.errno in _UNREACHABLE:
            raise ProbeFailure(
                FailureType.HOST_UNREACHABLE, f"Host unreachable ({where})", fields=list(fields)
            ) from None
        raise ProbeFailure(
            FailureType.CONNECTION_REFUSED, f"Could not connect to {where}: {last.strerror}", fields=list(fields)
        ) from None


def _naming(failure: ProbeFailure, fields: Sequence[str]) -> ProbeFailure:
    failure.fields = failure.fields or list(fields)
    return failure


async def _open(address: Address) -> socket.socket:
    """A TCP connection to ``address`` as a connected non-blocking socket (closed if cancelled)."""
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (address.ip, address.port))
    except BaseException:
        sock.close()
        raise
    return sock


def shown(address: Address) -> str:
    """How a message names ``address``: its IP, or its host name when the egress policy may
    not name the IP (a non-public address in production)."""
    return address.ip if current_policy().may_name(address.ip, address.host) else address.host


def _hostport(address: Address) -> str:
    name = shown(address)
    return f"[{name}]:{address.port}" if ":" in name else f"{name}:{address.port}"
