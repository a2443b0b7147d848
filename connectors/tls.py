"""The ``tls`` step, and plain words for what goes wrong in a TLS handshake.

A connector that reaches its server over TLS runs :func:`tls_handshake` right after
``connect_tcp(keep=True)``, on the connection that step opened, so a certificate problem is
reported as one (expired, wrong host, unknown issuer) before any driver gets involved, and
the driver can then use that very connection (:class:`TlsConnection`): one TCP connection
and one handshake per check, not three and two. :func:`tls_failure` turns an ``ssl`` error
met later, inside a driver, into the same :class:`ProbeFailure`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import socket
import ssl
from dataclasses import dataclass

from cryptography import x509

from connectors.base import Probe
from connectors.errors import EXPIRY_WARNING_DAYS, FailureType, ProbeFailure, WarningCode
from connectors.network import Address

TRUST_FIX = "set ca_cert or verify_tls=false"
"""How a user makes an unknown issuer trusted; connectors whose fields differ pass their own."""

# OpenSSL's X509_V_ERR_* codes (``ssl.SSLCertVerificationError.verify_code``); Python has no names for them.
_NOT_YET_VALID, _EXPIRED, _REVOKED = 9, 10, 23
_SELF_SIGNED = {18, 19}
_UNKNOWN_ISSUER = {2, 20, 21}
_WRONG_HOST = {62, 64}

_EXPIRY_WARNING = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsFields:
    """The configuration fields a TLS failure points at, for a form to show: those of a
    connector with ``host``, ``port`` and ``ca_cert`` by default; one with a URL passes its own."""

    host: tuple[str, ...] = ("host",)
    """The server whose certificate is at fault (expired, for another name, revoked)."""
    trust: tuple[str, ...] = ("ca_cert", "verify_tls")
    """What makes a private or self-signed issuer trusted (see :data:`TRUST_FIX`)."""
    endpoint: tuple[str, ...] = ("host", "port")
    """Where a server that does not speak TLS (or closes the handshake) was reached."""


URL_FIELDS = TlsFields(host=("url",), endpoint=("url",))
"""The fields of a connector whose server is a ``url`` (http, website)."""


def client_context(*, verify: bool = True, ca_pem: str | None = None, alpn: str = "http/1.1") -> ssl.SSLContext:
    """A client context for HTTP over TLS trusting the system's CAs plus ``ca_pem``, or
    nothing checked at all; it offers ALPN ``http/1.1`` (another protocol passes its own:
    ``ftp``, which vsftpd requires of a client that offers ALPN at all).

    Shared, not built per check: loading the system's CAs costs more CPU than a whole
    local probe. Contexts are not changed after they are made (httpcore sets the same ALPN
    on a context before each handshake of its own: set here, the ``tls`` step's handshake,
    whose connection carries the request, offers it too, from a process's first check on).
    """
    return _client_context(verify, ca_pem, alpn)


@functools.lru_cache(maxsize=128)
def _client_context(verify: bool, ca_pem: str | None, alpn: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.set_alpn_protocols([alpn])
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    return context


@dataclass(frozen=True)
class PeerCertificate:
    """What a handshake showed: the protocol and the server's leaf certificate."""

    version: str  # "TLSv1.3"
    not_before: dt.datetime
    not_after: dt.datetime
    names: tuple[str, ...]  # DNS names and IP addresses it is valid for
    issuer: str
    self_signed: bool

    @classmethod
    def from_der(cls, version: str, der: bytes) -> PeerCertificate:
        cert = x509.load_der_x509_certificate(der)
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = tuple(sans.get_values_for_type(x509.DNSName)) + tuple(
                str(ip) for ip in sans.get_values_for_type(x509.IPAddress)
            )
        except x509.ExtensionNotFound:
            names = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME))
        cn = cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return cls(
            version=version,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            names=names,
            issuer=str(cn[0].value) if cn else cert.issuer.rfc4514_string(),
            self_signed=cert.issuer == cert.subject,
        )

    def describe(self, *, verified: bool) -> str:
        """``TLS 1.3, certificate valid until 2027-01-01`` (+ a warning when near its end)."""
        now = dt.datetime.now(dt.UTC)
        if self.not_after < now:
            validity = f"expired on {self.not_after:%Y-%m-%d}"
        else:
            validity = f"valid until {self.not_after:%Y-%m-%d}"
            if self.not_after - now < _EXPIRY_WARNING:
                validity += f", expires in {(self.not_after - now).days} days"
        certificate = f"certificate {validity}" if verified else f"certificate not verified ({validity})"
        return f"{self.version.replace('v', ' ')}, {certificate}"


@dataclass(frozen=True)
class TlsConnection:
    """A connection whose TLS handshake is complete, as asyncio streams; its holder's to
    close (:meth:`abort`)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server_hostname: str

    @property
    def peer(self) -> PeerCertificate:
        ssl_object = self.writer.get_extra_info("ssl_object")
        return PeerCertificate.from_der(ssl_object.version() or "TLS", ssl_object.getpeercert(binary_form=True))

    def abort(self) -> None:
        # abort, not close: a graceful close waits for the peer's close_notify, up to 30 s.
        self.writer.transport.abort()


async def handshake(
    address: Address, server_hostname: str, context: ssl.SSLContext, *, sock: socket.socket | None = None
) -> TlsConnection:
    """A TLS handshake over ``sock`` (a connected socket, which the connection then owns,
    closed if the handshake fails) or over a new connection to ``address``."""
    if sock is None:
        reader, writer = await asyncio.open_connection(
            address.ip, address.port, ssl=context, server_hostname=server_hostname
        )
    else:
        try:
            # As on a connection asyncio opens itself: without it, the request that follows
            # the handshake waits for the server's ACK of the client's Finished (Nagle): a round trip.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader, writer = await asyncio.open_connection(sock=sock, ssl=context, server_hostname=server_hostname)
        except BaseException:
            sock.close()  # asyncio closes it only once it made a transport of it
            raise
    return TlsConnection(reader, writer, server_hostname)


async def _peer_of_new_connection(address: Address, server_hostname: str, context: ssl.SSLContext) -> PeerCertificate:
    connection = await handshake(address, server_hostname, context)
    try:
        return connection.peer
    finally:
        connection.abort()


async def tls_handshake(
    probe: Probe,
    sock: socket.socket,
    address: Address,
    server_hostname: str,
    context: ssl.SSLContext,
    *,
    trust_fix: str = TRUST_FIX,
    fields: TlsFields | None = None,
) -> TlsConnection:
    """Step ``tls``: a handshake with ``context``'s verification over ``sock``, the ``tcp``
    step's connection to ``address`` (``connect_tcp(keep=True)``); the connection, ready
    for the driver and the caller's to close. Fails with tls_error (``sock`` closed), naming
    the configuration fields of ``fields`` it is about (none without it: run_check then names the
    destination fields)."""
    async with probe.step("tls") as step:
        try:
            connection = await handshake(address, server_hostname, context, sock=sock)
        except ssl.SSLCertVerificationError as exc:
            # A failed handshake shows no certificate; fetch it unverified so the message
            # can say when it expired, whom it is for, who issued it.
            # Bounded, so a server that stalls the second time still gets a tls_error.
            shown: PeerCertificate | None = None
            try:
                async with asyncio.timeout(min(2.0, probe.remaining() / 2)):
                    shown = await _peer_of_new_connection(address, server_hostname, client_context(verify=False))
            except (OSError, ValueError):  # TimeoutError is an OSError
                pass
            raise tls_failure(exc, server_hostname, shown, trust_fix=trust_fix, fields=fields) from None
        except OSError as exc:  # ssl.SSLError is an OSError too
            raise tls_failure(exc, server_hostname, trust_fix=trust_fix, fields=fields) from None
        try:
            peer = connection.peer
            verified = context.verify_mode != ssl.CERT_NONE
            step.message = peer.describe(verified=verified)
            if verified:  # an unverified certificate is not trusted anyway: its end says nothing
                warn_if_expiring(probe, peer, server_hostname)
        except BaseException:
            connection.abort()
            raise
        return connection


RENEW_HINT = (
    "Ask the server's administrator to renew its certificate before then: once it expires, checks and syncs fail."
)


def warn_if_expiring(probe: Probe, peer: PeerCertificate, host: str, *, hint: str = RENEW_HINT) -> None:
    """Warn CERTIFICATE_EXPIRING when ``peer`` (a verified certificate of ``host``) ends within
    EXPIRY_WARNING_DAYS: the check passes today, the sync fails when it ends."""
    left = peer.not_after - dt.datetime.now(dt.UTC)
    if left >= dt.timedelta(days=EXPIRY_WARNING_DAYS):
        return
    names = ", ".join(peer.names[:5]) or host
    when = f"in {left.days} days" if left.days > 1 else ("in 1 day" if left.days == 1 else "within a day")
    probe.warn(
        WarningCode.CERTIFICATE_EXPIRING,
        f"The TLS certificate of {host} (for {names}, issued by {peer.issuer}) expires on "
        f"{peer.not_after:%Y-%m-%d %H:%M} UTC, {when}",
        hint=hint,
    )


def tls_failure(
    exc: OSError,
    host: str,
    peer: PeerCertificate | None = None,
    *,
    trust_fix: str = TRUST_FIX,
    fields: TlsFields | None = None,
) -> ProbeFailure:
    """The ProbeFailure for an error met during a TLS handshake with ``host``, naming the
    fields of ``fields`` it is about (none when it is None)."""
    named = fields or TlsFields(host=(), trust=(), endpoint=())
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = exc.verify_code in _SELF_SIGNED or exc.verify_code in _UNKNOWN_ISSUER
        return ProbeFailure(
            FailureType.TLS_ERROR,
            _verification_message(exc, host, peer, trust_fix),
            fields=named.trust if trusted else named.host,
        )
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or type(exc).__name__
        about = named.host
        if reason in {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"}:
            message = f"The server at {host} did not answer with TLS: is it a plain (non-TLS) port?"
            about = named.endpoint
        elif "PROTOCOL_VERSION" in reason or reason == "UNSUPPORTED_PROTOCOL":
            message = f"The server at {host} and this client have no TLS version in common"
        elif "CERTIFICATE_REQUIRED" in reason:
            message = f"The server at {host} requires a client certificate"
        else:
            message = f"The TLS handshake with {host} failed ({reason})"
        return ProbeFailure(FailureType.TLS_ERROR, message, fields=about)
    if isinstance(exc, ConnectionRefusedError):
        return ProbeFailure(
            FailureType.CONNECTION_REFUSED, f"Connection refused by {host} when starting TLS", fields=named.endpoint
        )
    # EOF or reset mid-handshake: usually a server that is not speaking TLS, or rejected us.
    return ProbeFailure(
        FailureType.TLS_ERROR,
        f"The server at {host} closed the connection during the TLS handshake",
        retryable=True,
        fields=named.endpoint,
    )


def _verification_message(
    exc: ssl.SSLCertVerificationError, host: str, peer: PeerCertificate | None, trust_fix: str
) -> str:
    code = exc.verify_code
    if code == _EXPIRED:
        when = f" on {peer.not_after:%Y-%m-%d}" if peer else ""
        return f"The server's certificate has expired{when}"
    if code == _NOT_YET_VALID:
        when = f" before {peer.not_before:%Y-%m-%d}" if peer else " yet"
        return f"The server's certificate is not valid{when}: check the server's clock and certificate"
    if code in _WRONG_HOST:
        names = f" (it is for {', '.join(peer.names)})" if peer and peer.names else ""
        return f"The server's certificate is not valid for host {host}{names}"
    if code in _SELF_SIGNED or (code in _UNKNOWN_ISSUER and peer and peer.self_signed):
        return f"The server presented a self-signed certificate: {trust_fix}"
    if code in _UNKNOWN_ISSUER:
        issuer = f" ({peer.issuer})" if peer else ""
        return f"The server's certificate is signed by an unknown authority{issuer}: {trust_fix}"
    if code == _REVOKED:
        return "The server's certificate has been revoked"
    return f"The server's certificate could not be verified: {exc.verify_message}"
