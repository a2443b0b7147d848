"""The HTTP transport every HTTP-speaking connector shares (http, s3, website, the SaaS APIs
and their OAuth token endpoints).

:func:`open_pinned` runs the ``resolve``, ``tcp`` and (for https) ``tls`` steps and gives the
connector the :class:`PinnedTransport` its httpx client uses. The first request goes on the
connection those steps opened, so what was checked is what is used and the server sees one
connection and one handshake; every connection goes to the address that was checked, or for
another host (a redirect, a token endpoint) to an address the egress policy allows.

It bounds what any response can cost, whatever the connector reads: it decodes bodies itself
(gzip or deflate, one coding; stacked codings are refused), in pieces, and ends the check as
``unexpected_response`` past :data:`MAX_RESPONSE_BYTES` of one body, :data:`MAX_PROBE_BYTES`
of all bodies of the check, or :data:`MAX_REDIRECT_BODY_BYTES` of a redirect's body (which
httpx reads whole when it follows one).

:func:`transport_failure` says what an httpx error means for the user; :func:`stream` sends a
request with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import select
import socket
import ssl
import time
import typing
import zlib
from collections.abc import AsyncIterator, Iterator
from http import HTTPStatus
from typing import Any

import httpcore
import httpx

from connectors.base import Probe, Step, StepStatus
from connectors.egress import EgressPolicy, blocked, current_policy
from connectors.errors import FailureType, ProbeFailure
from connectors.network import Address, connect_tcp, literal_addrinfo, resolve
from connectors.tls import TRUST_FIX, TlsConnection, TlsFields, tls_failure, tls_handshake

USER_AGENT = "sourcecheck/0.1 (connectivity check)"

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Bytes of one response body a connector may read, counted after decoding (and before:
no more wire bytes either). The largest legitimate read is a sitemap up to its first URL."""

MAX_PROBE_BYTES = 16 * 1024 * 1024
"""Bytes of response bodies, after decoding, all requests of one check may read together
(one :class:`PinnedTransport` per check): robots.txt plus two sitemaps fit."""

MAX_REDIRECT_BODY_BYTES = 64 * 1024
"""Bytes of a redirect's body read (httpx reads it to reuse the connection); nobody uses it."""

ACCEPT_ENCODING = "gzip, deflate"
"""The content codings asked for: those :class:`PinnedTransport` decodes, within the bounds."""

# --- what an error means -------------------------------------------------------------


def transport_failure(exc: httpx.HTTPError, timeout: float, *, trust_fix: str = TRUST_FIX) -> ProbeFailure:
    """What an httpx error means for the user; ``trust_fix`` says how to trust a private CA.
    The error's text is not used: it can hold the URL's query."""
    host = exc.request.url.host if _has_request(exc) else "the server"
    if isinstance(exc, httpx.ConnectTimeout):
        return ProbeFailure(FailureType.CONNECTION_TIMEOUT, f"Could not connect to {host} within {timeout:.1f} s")
    if isinstance(exc, httpx.TimeoutException):
        return ProbeFailure(
            FailureType.TIMEOUT, f"{host} accepted the connection but sent no HTTP answer within {timeout:.1f} s"
        )
    if (ssl_error := find_cause(exc, ssl.SSLError)) is not None:
        # On a host a redirect led to, or a TLS renegotiation.
        return tls_failure(ssl_error, host, trust_fix=trust_fix)
    if isinstance(exc, httpx.ConnectError):  # the checked address was reachable: this is another host
        if find_cause(exc, socket.gaierror) is not None:
            return ProbeFailure(FailureType.DNS_RESOLUTION_FAILED, f"Could not resolve host '{host}'")
        if find_cause(exc, ConnectionRefusedError) is not None:
            return ProbeFailure(FailureType.CONNECTION_REFUSED, f"Connection refused by {host}")
        return ProbeFailure(FailureType.HOST_UNREACHABLE, f"Could not connect to {host}")
    if isinstance(exc, httpx.TooManyRedirects):
        return ProbeFailure(FailureType.UNEXPECTED_RESPONSE, f"{host} redirected too many times: a redirect loop")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE, f"{host} redirected to a URL that is not http:// or https://"
        )
    if isinstance(exc, httpx.RemoteProtocolError):
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"{host} closed the connection or answered with something that is not HTTP",
            retryable=True,
        )
    if isinstance(exc, httpx.NetworkError):
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE, f"The connection to {host} broke during the request", retryable=True
        )
    return ProbeFailure(FailureType.UNEXPECTED_RESPONSE, f"The request to {host} failed ({type(exc).__name__})")


@contextlib.asynccontextmanager
async def stream(
    client: httpx.AsyncClient,
    method: str,
    url: str | httpx.URL,
    *,
    timeout: float,
    trust_fix: str = TRUST_FIX,
    **options: Any,
) -> AsyncIterator[httpx.Response]:
    """``client.stream(method, url, timeout=timeout, **options)``: the response, open for the
    block; an httpx error, sending or reading in the block, raised as its :func:`transport_failure`."""
    try:
        async with client.stream(method, url, timeout=timeout, **options) as response:
            yield response
    except httpx.HTTPError as exc:
        raise transport_failure(exc, timeout, trust_fix=trust_fix) from None


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018 - the property raises when the error has no request
    except RuntimeError:
        return False
    return True


_E = typing.TypeVar("_E", bound=BaseException)


def find_cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of ``kind`` among ``exc``'s causes (httpx wraps httpcore wraps OSError)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind) and current is not exc:
            return current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        if isinstance(current, BaseExceptionGroup):
            todo += list(current.exceptions)
    return None


def status_text(status: int) -> str:
    """``404 Not Found``; the standard phrase, not the server's (which can say anything)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the checked address whenever httpcore asks for the checked host:port,
    and holds every other connection (a redirect to another host, a token endpoint) to the
    egress policy.

    The URL keeps its host name, so the Host header, SNI and the certificate check are
    those of the name; only the DNS lookup is replaced. Another host is resolved here, its
    addresses are filtered by ``egress`` (default: the running check's policy) exactly as
    the ``resolve`` step does, and the connection goes to an allowed address; when none is
    allowed the request ends with an ``egress_blocked`` :class:`ProbeFailure` (httpx passes
    exceptions that are not its own through), before any connection is attempted.
    """

    def __init__(
        self, address: Address, egress: EgressPolicy | None = None, *, kept: socket.socket | TlsConnection | None = None
    ) -> None:
        self.address = address
        self.egress = egress or current_policy()
        self.backend = httpcore.AnyIOBackend()
        self.kept = kept
        """A connection to ``address`` (the ``tcp`` step's socket, or the ``tls`` step's
        connection), used for the first connection to it instead of a new one. The stream
        made of it closes it; :meth:`close_unused` closes it when none was made."""

    def close_unused(self) -> None:
        kept, self.kept = self.kept, None
        if isinstance(kept, TlsConnection):
            kept.abort()
        elif kept is not None:
            kept.close()

    # httpcore's interface (timeout parameter included); no unix sockets are used.
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pinned = host.lower() == self.address.host.lower() and port == self.address.port
        ips = [self.address.ip] if pinned else await self._resolve(host, port, timeout)
        refused = {ip: reason for ip in ips if (reason := self.egress.refusal(ip)) is not None}
        allowed = [ip for ip in ips if ip not in refused]
        if not allowed:
            raise blocked(host, refused, what=" (a redirect or another endpoint of the source led there)")
        if self.kept is not None and pinned:
            stream = self._adopt(self.kept, socket_options)
            if stream is not None:
                return stream
        last: httpcore.ConnectError | None = None
        for ip in allowed:
            try:
                return await self.backend.connect_tcp(
                    ip, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    def _adopt(
        self, kept: socket.socket | TlsConnection, socket_options: typing.Iterable[Any] | None
    ) -> httpcore.AsyncNetworkStream | None:
        """The kept connection as an httpcore stream (used once), or None when it is no
        longer connected (the caller then opens a new connection, as without one)."""
        self.kept = None
        if isinstance(kept, TlsConnection):
            if kept.writer.transport.is_closing() or kept.reader.at_eof():
                kept.abort()
                return None
            return AdoptedTlsStream(kept)
        try:
            kept.getpeername()  # still connected (a refused or reset connection is not)
            # As on a connection asyncio (so httpcore's backend) opens.
            kept.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                kept.setsockopt(*option)
        except OSError:
            kept.close()
            return None
        return AdoptedSocketStream(kept)

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[str]:
        """``host``'s addresses, IPv4 first; the errors httpcore itself would raise."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = literal_addrinfo(host, port) or await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:  # socket.gaierror: found as the cause by transport_failure
            raise httpcore.ConnectError(str(exc)) from exc
        ips: dict[str, None] = {}
        for family, _, _, _, sockaddr in sorted(infos, key=lambda i: i[0] != socket.AF_INET):
            if family in (socket.AF_INET, socket.AF_INET6):
                ips.setdefault(str(sockaddr[0]), None)
        if not ips:
            raise httpcore.ConnectError(f"{host} has no address")
        return list(ips)

    async def sleep(self, seconds: float) -> None:
        await self.backend.sleep(seconds)


class _AdoptedStream(httpcore.AsyncNetworkStream):
    """An httpcore stream over a connection made beforehand, with the errors httpcore's own
    streams raise (ReadTimeout, ReadError, WriteTimeout, WriteError, caused by the OSError)."""

    async def _recv(self, max_bytes: int) -> bytes:
        raise NotImplementedError

    async def _send(self, buffer: bytes) -> None:
        raise NotImplementedError

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                return await self._recv(max_bytes)
        except TimeoutError as exc:  # before OSError, of which it is one
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._send(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc


class AdoptedSocketStream(_AdoptedStream):
    """A connected non-blocking socket as an httpcore stream, on the running asyncio loop.

    What ``httpcore.AnyIOBackend.connect_tcp`` returns for a socket connected beforehand
    (the ``tcp`` step's), without anyio's transport, protocol and cancel scopes around
    every read and write (a measurable part of a local request's cost).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    async def _recv(self, max_bytes: int) -> bytes:
        return await asyncio.get_running_loop().sock_recv(self._sock, max_bytes)

    async def _send(self, buffer: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self._sock, buffer)

    async def aclose(self) -> None:
        self._sock.close()  # as anyio's stream does (abort): unsent data is dropped

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        # Not used by the connectors (an https connection is kept after the tls step, as an
        # AdoptedTlsStream); the handshake httpcore would do, should a caller need it.
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    sock=self._sock, ssl=ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._sock.close()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:  # ssl.SSLError included
            self._sock.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return AdoptedTlsStream(TlsConnection(reader, writer, server_hostname or ""))

    def get_extra_info(self, info: str) -> Any:
        try:
            if info == "client_addr":
                return self._sock.getsockname()
            if info == "server_addr":
                return self._sock.getpeername()
        except OSError:
            return None
        if info == "socket":
            return self._sock
        if info == "is_readable":  # for an idle connection: closed by the server, or data pending
            return _readable(self._sock)
        return None  # ssl_object: none on a plain connection


class AdoptedTlsStream(_AdoptedStream):
    """The ``tls`` step's connection (its handshake done) as an httpcore stream. httpcore
    asks every new https connection to start TLS; this one already has, with the same
    context and host name, so it answers itself."""

    def __init__(self, connection: TlsConnection) -> None:
        self._connection = connection

    async def _recv(self, max_bytes: int) -> bytes:
        return await self._connection.reader.read(max_bytes)

    async def _send(self, buffer: bytes) -> None:
        self._connection.writer.write(buffer)
        await self._connection.writer.drain()

    async def aclose(self) -> None:
        self._connection.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        if server_hostname != self._connection.server_hostname:  # not this connection's handshake
            self._connection.abort()
            raise httpcore.ConnectError(
                f"TLS was started for {self._connection.server_hostname}, not {server_hostname}"
            )
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # for an idle connection: closed by the server
            return self._connection.reader.at_eof() or self._connection.writer.transport.is_closing()
        extra = {"client_addr": "sockname", "server_addr": "peername", "socket": "socket", "ssl_object": "ssl_object"}
        return self._connection.writer.get_extra_info(extra[info]) if info in extra else None


def _readable(sock: socket.socket) -> bool:
    if sock.fileno() == -1:
        return True
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return bool(poll.poll(0))


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool with a :class:`PinnedBackend`. ``kept``, a
    connection to ``address`` (the ``tcp`` step's socket or the ``tls`` step's connection),
    carries the first request to it instead of a new connection; closing the transport
    closes it if it was not used.

    Response bodies are bounded and decoded here (see :meth:`handle_async_request`); a check
    uses one transport, so :data:`MAX_PROBE_BYTES` holds for all of its requests together."""

    def __init__(
        self,
        context: ssl.SSLContext,
        address: Address,
        egress: EgressPolicy | None = None,
        *,
        kept: socket.socket | TlsConnection | None = None,
    ) -> None:
        self.backend = PinnedBackend(address, egress, kept=kept)
        # The pool httpx.AsyncHTTPTransport would make (its limits), with our network backend.
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=self.backend,
        )
        self.budget = _Budget(MAX_PROBE_BYTES)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The response with its body decoded here, within the bounds, never by httpx:
        stacked codings are refused before any byte is read."""
        request.headers["Accept-Encoding"] = ACCEPT_ENCODING
        assert isinstance(request.stream, httpx.AsyncByteStream)
        url = request.url
        with _httpx_errors():
            response = await self.pool.handle_async_request(
                httpcore.Request(
                    method=request.method,
                    url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
                    headers=request.headers.raw,
                    content=request.stream,
                    extensions=request.extensions,
                )
            )
        headers = httpx.Headers(response.headers)
        codings = [c.lower() for c in headers.get_list("content-encoding", split_commas=True)]
        codings = [c for c in codings if c not in ("", "identity")]
        if len(codings) > 1:
            await response.aclose()
            raise ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"{url.host} answered with stacked content encodings ({', '.join(codings)}), "
                "which are refused: one coding at most",
            )
        redirect = response.status in (301, 302, 303, 307, 308) and "location" in headers
        limit = MAX_REDIRECT_BODY_BYTES if redirect else MAX_RESPONSE_BYTES
        for name in ("content-encoding", "content-length"):  # the body is handed on decoded
            headers.pop(name, None)
        stream = _BoundedStream(response, codings[0] if codings else None, limit, self.budget, url.host, redirect)
        return httpx.Response(response.status, headers=headers, stream=stream, extensions=response.extensions)

    async def aclose(self) -> None:
        try:
            await self.pool.aclose()
        finally:
            self.backend.close_unused()


_HTTPX_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's errors raised as the httpx errors httpx's own transport makes of them
    (the connectors catch ``httpx.HTTPError``), caused by the httpcore error."""
    try:
        yield
    except Exception as exc:
        mapped = next((_HTTPX_ERRORS[c] for c in type(exc).__mro__ if c in _HTTPX_ERRORS), None)
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"


def too_large(what: str, limit: int, scope: str) -> ProbeFailure:
    """The failure of bodies over their bound: ``what`` was larger than ``limit``, the limit for ``scope``."""
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"{what} was too large: more than {_size(limit)}, the limit for {scope}",
        hint="Point the check at an endpoint that answers briefly (an API root, a page, a listing).",
    )


class _Budget:
    """Decoded bytes left for all responses of one check."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


_PIECE = 64 * 1024  # the most a decoder makes at once: memory stays near the bound


class _Decoder:
    """gzip or deflate (zlib-wrapped or raw, as servers send both), in bounded pieces."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        wbits = 16 + zlib.MAX_WBITS if coding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self.inflate = zlib.decompressobj(wbits)
        self.started = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        while data and not self.inflate.eof:  # after the end of the stream: ignored
            try:
                piece = self.inflate.decompress(data, _PIECE)
            except zlib.error:
                if self.started or self.coding != "deflate":
                    raise
                self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate
                self.started = True
                continue
            self.started = True
            data = self.inflate.unconsumed_tail
            if piece:
                yield piece


class _BoundedStream(httpx.AsyncByteStream):
    """A response body, decoded here, that ends the check as too large past its bound."""

    def __init__(
        self,
        raw: httpcore.Response,
        coding: str | None,
        limit: int,
        budget: _Budget,
        host: str,
        redirect: bool,
    ) -> None:
        self.raw, self.coding, self.limit, self.budget, self.host = raw, coding, limit, budget, host
        self.what = f"The body of a redirect from {host}" if redirect else f"The response from {host}"
        self.scope = "a redirect's body" if redirect else "one response"
        self.read = self.decoded = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.coding not in (None, "gzip", "x-gzip", "deflate"):
            raise ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"{self.host} answered with content encoding {self.coding}, which was not asked for "
                f"(only {ACCEPT_ENCODING})",
            )
        decoder = _Decoder(self.coding) if self.coding else None
        with _httpx_errors():
            async for data in self.raw.aiter_stream():
                self.read += len(data)
                if self.read > self.limit:
                    raise too_large(self.what, self.limit, self.scope)
                try:
                    for piece in decoder.decode(data) if decoder else (data,):
                        self._count(len(piece))
                        yield piece
                except zlib.error:
                    raise ProbeFailure(
                        FailureType.UNEXPECTED_RESPONSE,
                        f"{self.host} answered with a body that is not valid {self.coding}",
                    ) from None

    def _count(self, size: int) -> None:
        self.decoded += size
        self.budget.used += size
        if self.decoded > self.limit:
            raise too_large(self.what, self.limit, self.scope)
        if self.budget.used > self.budget.limit:
            raise too_large("What the responses of this check held together", self.budget.limit, "one check")

    async def aclose(self) -> None:
        await self.raw.aclose()


async def open_pinned(
    probe: Probe,
    host: str,
    port: int,
    context: ssl.SSLContext,
    *,
    https: bool,
    plain: str,
    trust_fix: str = TRUST_FIX,
    tls_fields: TlsFields | None = None,
) -> PinnedTransport:
    """Steps ``resolve``, ``tcp`` and ``tls`` to ``host``:``port`` (``tls`` skipped, saying
    ``plain``, when not ``https``), and a transport pinned to the address that answered
    whose first request goes on the connection those steps opened: the server sees one
    connection and one handshake per check, and a remote https check saves the round
    trips of two more. The transport (a client closes it) closes that connection.
    ``tls_fields``: the configuration fields a failed handshake names (see :func:`tls_handshake`)."""
    address, sock = await connect_tcp(probe, await resolve(probe, host, port), keep=True)
    if not https:
        probe.steps.append(Step(name="tls", status=StepStatus.SKIPPED, message=plain))
        return PinnedTransport(context, address, kept=sock)
    connection = await tls_handshake(probe, sock, address, host, context, trust_fix=trust_fix, fields=tls_fields)
    return PinnedTransport(context, address, kept=connection)


MAX_RETRY_AFTER = 86400.0
"""A Retry-After beyond a day is read as a day (a hostile or broken header)."""


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """The seconds a Retry-After header (delta-seconds or an HTTP date, RFC 9110) asks to
    wait, at most a day; None when there is no such header or it is not valid."""
    value = headers.get("retry-after", "").strip()[:64]
    if not value:
        return None
    if value.isdigit():
        return min(float(value[:6]), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER)


def retry_after(headers: httpx.Headers) -> str:
    """``in 30 s`` from a Retry-After header, else ``later``."""
    wait = retry_after_seconds(headers)
    return f"in {wait:.0f} s" if wait is not None else "later"


def busy_failure(status: int, headers: httpx.Headers, answered: str) -> ProbeFailure | None:
    """A 429 or a 5xx is the server's own state, not the configuration's: ``rate_limited``
    (with when to retry, from Retry-After) or ``provider_unavailable``; None for other statuses."""
    if status == 429:
        return ProbeFailure(
            FailureType.RATE_LIMITED,
            f"{answered}: it is rate limiting these requests",
            hint=f"Try again {retry_after(headers)}; if it persists, other clients may be using up the same quota.",
            retry_after_s=retry_after_seconds(headers),
        )
    if status >= 500:
        return ProbeFailure(
            FailureType.PROVIDER_UNAVAILABLE,
            answered,
            hint="The server could not handle the request now: check its health, then try again.",
        )
    return None
