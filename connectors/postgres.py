"""The ``postgres`` connector: can this worker log in to a PostgreSQL database and use a schema?

Steps: ``resolve`` and ``tcp`` (shared with every network connector), then ``tls`` (the
PostgreSQL SSLRequest handshake done by hand, so a certificate problem is reported as
such rather than as a libpq string), ``authenticate`` (a real psycopg login to the very
address the tcp step reached) and ``access`` (``SELECT 1`` and USAGE on the schema).

With ``ssh_tunnel`` set, ``resolve`` and ``tcp`` are those of the bastion, then come
``ssh``, ``ssh_auth`` and ``tunnel`` (connectors.ssh: the bastion opens the connection to
host:port), and the database steps run through a listener on 127.0.0.1 that forwards each
connection made by this process through the bastion (libpq needs a host and port, not a
socket; other local processes are closed at once).

libpq reports connection failures as text only (psycopg gives no SQLSTATE before the
login completes), so those are recognised by the server's English message; anything
not recognised is passed on, minus the password, as ``unexpected_response``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import ssl
import struct
import tempfile
from collections.abc import Callable
from typing import Any, Literal

import psycopg
from psycopg.rows import TupleRow
from pydantic import Field

from connectors.base import ConnectorConfig, Probe, Secret, Step, StepStatus
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import DestinationHost, DestinationPort, Name, PemCertificates
from connectors.network import Address, connect_tcp, resolve, shown
from connectors.profile import is_production
from connectors.ssh import TUNNEL_STEPS, OptionalTunnel, TunnelledConnector, open_tunnel
from connectors.text import mask_secrets, server_text
from connectors.tls import PeerCertificate, warn_if_expiring

SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]

PRODUCTION_SSL_MODE: SslMode = "require"
"""The ``ssl_mode`` of a source that sets none, in the production profile: TLS or no connection."""
DEVELOPMENT_SSL_MODE: SslMode = "prefer"
"""The ``ssl_mode`` of a source that sets none, in development (a local cluster often has no TLS)."""
NO_CLEARTEXT = "!password"
"""libpq's ``require_auth`` on a connection without TLS: a server asking for the password in
cleartext gets no answer (libpq >= 16; the bundled one is newer)."""


class PostgresConfig(ConnectorConfig):
    """Where the database is and who logs in to it."""

    host: DestinationHost = Field(
        title="Host",
        description="Host name or IP address of the PostgreSQL server (no scheme, no port); as seen from the "
        "bastion when ssh_tunnel is set.",
        examples=["db.example.com", "10.0.0.12"],
    )
    port: DestinationPort = Field(5432, title="Port", description="TCP port of the server.", examples=[5432])
    database: Name = Field(
        min_length=1,
        max_length=63,
        title="Database",
        description="Name of the database to connect to.",
        examples=["app"],
    )
    user: Name = Field(min_length=1, max_length=63, title="User", description="Role to log in as.", examples=["reader"])
    password: Secret = Field(title="Password", description="Password of the role.")
    ssl_mode: SslMode | None = Field(
        None,
        title="SSL mode",
        description=(
            "As libpq's sslmode: disable (no TLS), prefer (TLS if offered, unverified), require (TLS, unverified "
            "unless a root certificate is given), verify-ca (trusted issuer), verify-full (trusted issuer and host "
            "name). Empty: require in the production profile, prefer in development. Without TLS the password is "
            "never sent in cleartext."
        ),
        examples=["require", "verify-full"],
    )
    ssl_root_cert: PemCertificates = Field(
        None,
        title="Root certificate",
        description="PEM text of the CA certificate(s) that signed the server's certificate. Empty: the system's CAs.",
        examples=["-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"],
    )
    schema_name: Name = Field(
        "public",
        min_length=1,
        max_length=63,
        title="Schema",
        description="Schema the role must be able to use (USAGE privilege).",
        examples=["public", "analytics"],
    )
    ssh_tunnel: OptionalTunnel = None

    def mode(self) -> SslMode:
        """``ssl_mode``, or the profile's default when it is not set."""
        if self.ssl_mode is not None:
            return self.ssl_mode
        return PRODUCTION_SSL_MODE if is_production() else DEVELOPMENT_SSL_MODE

    def verifies_certificate(self) -> bool:
        # libpq's rule: require with a root certificate behaves as verify-ca.
        mode = self.mode()
        return mode in ("verify-ca", "verify-full") or (mode == "require" and self.ssl_root_cert is not None)


class PostgresConnector(TunnelledConnector):
    name = "postgres"
    title = "PostgreSQL"
    category = "database"
    documentation_url = "https://www.postgresql.org/docs/current/libpq-connect.html"
    config_model = PostgresConfig
    steps = ("resolve", "tcp", *TUNNEL_STEPS, "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {"host": host, "port": port, "database": "app", "user": "reader", "password": "example-password"}

    async def check(self, config: PostgresConfig, probe: Probe) -> None:
        if config.ssh_tunnel is None:
            addresses = await resolve(probe, config.host, config.port, fields=["host"])
            address = await connect_tcp(probe, addresses, fields=["host", "port"])
            await self._check_database(config, probe, address)
            return
        async with open_tunnel(probe, config.ssh_tunnel) as tunnel:
            await tunnel.reach(probe, config.host, config.port)
            await self._check_database(config, probe, await tunnel.listen())

    async def _check_database(self, config: PostgresConfig, probe: Probe, address: Address) -> None:
        """Steps ``tls``, ``authenticate`` and ``access`` against ``address`` (the server, or the tunnel's listener)."""
        if config.mode() == "disable":
            # Recorded in its place: run_check would append it after the later steps, out of order.
            probe.steps.append(Step(name="tls", status=StepStatus.SKIPPED, message="ssl_mode is 'disable': no TLS"))
            encrypted = False
        else:
            encrypted = await _check_tls(probe, config, address)
        conn = await _authenticate(probe, config, address, encrypted=encrypted)
        try:
            await _check_access(probe, config, conn)
        finally:
            await conn.close()  # no await inside that can hang: it only closes the socket


# PostgreSQL's SSLRequest: length 8, then the magic code 1234.5679.
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def _ssl_context(config: PostgresConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not config.verifies_certificate():
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context.check_hostname = config.mode() == "verify-full"
    if config.ssl_root_cert:
        context.load_verify_locations(cadata=config.ssl_root_cert)
    else:
        context.load_default_certs()
    return context


_RENEW = "Renew the server's certificate (ssl_cert_file in postgresql.conf) and reload the server before then."

_UNTRUSTED_HINT = (
    "Paste the CA certificate that signed the server's certificate into ssl_root_cert, "
    "or use ssl_mode 'require' to encrypt without verifying the certificate."
)


def _verify_failure(exc: ssl.SSLCertVerificationError, host: str) -> ProbeFailure:
    # OpenSSL X509_V_ERR_* codes: turn the common ones into words and an action.
    what, hint = {
        9: ("is not valid yet", "Check the clocks of the server and the worker, or reissue the certificate."),
        10: ("has expired", "Renew the server's certificate (ssl_cert_file in postgresql.conf) and reload the server."),
        18: ("is not trusted (self-signed)", _UNTRUSTED_HINT),
        19: ("is not trusted (self-signed certificate in the chain)", _UNTRUSTED_HINT),
        20: ("is not trusted (issued by an unknown authority)", _UNTRUSTED_HINT),
        21: ("is not trusted (issued by an unknown authority)", _UNTRUSTED_HINT),
        62: (
            f"is not valid for host '{host}'",
            "Use a host name the certificate was issued for, or ssl_mode 'verify-ca' to check the issuer only.",
        ),
    }.get(exc.verify_code, (f"failed verification ({exc.verify_message})", None))
    trusted = hint == _UNTRUSTED_HINT
    fields = ("ssl_root_cert", "ssl_mode") if trusted else ("host",)  # the server's certificate is at fault
    return ProbeFailure(FailureType.TLS_ERROR, f"The server's certificate {what}", hint=hint, fields=fields)


async def _check_tls(probe: Probe, config: PostgresConfig, address: Address) -> bool:
    """Step ``tls``: ask for TLS as libpq does and run the handshake with libpq's checks for the
    mode. True when TLS was established; False when ``prefer`` goes on without it."""
    mode = config.mode()
    where = f"{shown(address)} port {address.port}"
    async with probe.step("tls") as step:
        try:
            reader, writer = await asyncio.open_connection(address.ip, address.port)
        except OSError as exc:
            raise ProbeFailure(
                FailureType.CONNECTION_REFUSED,
                f"Could not connect again to {where}: {exc.strerror}",
                fields=("host", "port"),
            ) from None
        try:
            writer.write(_SSL_REQUEST)
            await writer.drain()
            answer = await reader.read(1)
            if answer == b"N":
                if mode == "prefer":
                    step.message = "The server does not offer TLS: the connection will not be encrypted"
                    return False
                raise _no_tls_failure(config)
            if answer != b"S":
                said = f"with {answer!r}" if answer else "by closing the connection"
                raise ProbeFailure(
                    FailureType.UNEXPECTED_RESPONSE,
                    f"The server answered the SSL request {said}: is this a PostgreSQL server on port {address.port}?",
                    fields=("host", "port"),
                )
            try:
                await writer.start_tls(_ssl_context(config), server_hostname=config.host)
            except ssl.SSLCertVerificationError as exc:
                raise _verify_failure(exc, config.host) from None
            except (ssl.SSLError, ConnectionError) as exc:
                reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
                if mode == "prefer":  # libpq then retries without TLS, so the check goes on
                    step.message = f"TLS handshake failed ({reason}): the connection will not be encrypted"
                    return False
                raise ProbeFailure(
                    FailureType.TLS_ERROR, f"TLS handshake with the server failed ({reason})", fields=("ssl_mode",)
                ) from None
            tls = writer.get_extra_info("ssl_object")
            der = tls.getpeercert(binary_form=True) if tls else None
            if der and config.verifies_certificate():
                warn_if_expiring(probe, PeerCertificate.from_der(tls.version() or "TLS", der), config.host, hint=_RENEW)
            verified = {"verify-full": "issuer and host name verified", "verify-ca": "issuer verified"}.get(
                mode, "issuer verified" if config.verifies_certificate() else "certificate not verified"
            )
            step.message = f"{tls.version() if tls else 'TLS'} established ({verified})"
            return True
        finally:
            writer.close()
            # Bounded: a TLS close waits for the peer's close_notify, which a broken server may never send.
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(min(1.0, probe.remaining())):
                    await writer.wait_closed()


def _no_tls_failure(config: PostgresConfig) -> ProbeFailure:
    opt_out = "or set ssl_mode to 'prefer' or 'disable' on this source if an unencrypted connection is acceptable."
    if config.ssl_mode is None:  # the profile's default, not the user's choice: say so
        return ProbeFailure(
            FailureType.TLS_ERROR,
            "The server does not support SSL, and sources without an ssl_mode require it in production",
            hint=f"Turn on TLS in the server (ssl = on in postgresql.conf, with a certificate), {opt_out}",
            fields=("ssl_mode",),
        )
    return ProbeFailure(
        FailureType.TLS_ERROR,
        f"The server does not support SSL, but ssl_mode '{config.ssl_mode}' requires it",
        hint=f"Turn on TLS in the server (ssl = on in postgresql.conf, with a certificate), {opt_out}",
        fields=("ssl_mode",),
    )


def _libpq_tls(config: PostgresConfig, encrypted: bool) -> tuple[SslMode, str | None]:
    """libpq's sslmode and require_auth for the login, given what the tls step found.

    ``prefer`` is pinned to what the tls step saw, so the login cannot be silently
    downgraded in between; without TLS the server may not ask for a cleartext password.
    """
    mode = config.mode()
    if mode == "prefer":
        mode = "require" if encrypted else "disable"
    return mode, NO_CLEARTEXT if mode == "disable" else None


def _root_cert_file(config: PostgresConfig) -> tuple[str | None, bool]:
    """libpq's sslrootcert for this config and whether it is a temp file to delete afterwards."""
    if not config.verifies_certificate():
        return None, False
    if config.ssl_root_cert:
        # libpq reads root certificates from a file only. They are public: no secret is written.
        with tempfile.NamedTemporaryFile("w", suffix=".pem", prefix="sourcecheck-", delete=False) as f:
            f.write(config.ssl_root_cert)
        return f.name, True
    paths = ssl.get_default_verify_paths()
    cafile = next((p for p in (paths.cafile, paths.openssl_cafile) if p and os.path.exists(p)), None)
    # The same CAs the tls step trusted; "system" is libpq's own (allowed with verify-full only).
    return cafile or "system", False


async def _authenticate(
    probe: Probe, config: PostgresConfig, address: Address, *, encrypted: bool
) -> psycopg.AsyncConnection[TupleRow]:
    """Step ``authenticate``: a real login, to ``address.ip`` (hostaddr) so nothing is resolved again."""
    async with probe.step("authenticate") as step:
        rootcert, temporary = _root_cert_file(config)
        sslmode, require_auth = _libpq_tls(config, encrypted)
        try:
            conn = await psycopg.AsyncConnection.connect(
                host=config.host,  # still given: libpq checks the certificate against it
                hostaddr=address.ip,
                port=address.port,  # config.port, or the tunnel's listener
                dbname=config.database,
                user=config.user,
                password=config.password.get_secret_value(),
                sslrootcert=rootcert,
                sslmode=sslmode,
                require_auth=require_auth,  # None: left out, any method
                gssencmode="disable",  # no Kerberos attempt: this checks password logins
                connect_timeout=max(2, math.ceil(probe.remaining())),  # libpq's minimum is 2 s
                application_name="sourcecheck",
                autocommit=True,
            )
        except psycopg.Error as exc:
            raise _driver_failure(exc, config) from None
        finally:
            if temporary and rootcert:
                os.unlink(rootcert)
        version = (conn.info.parameter_status("server_version") or "?").split()[0]
        tls = "TLS" if conn.pgconn.ssl_in_use else "no TLS"
        if not conn.pgconn.ssl_in_use and conn.pgconn.used_password:
            probe.warn(
                WarningCode.WEAK_AUTHENTICATION,
                f'"{config.user}" logged in with a password over a connection without TLS: whoever records the '
                "login can attack the password offline, a man-in-the-middle can take the session over, and "
                "every row read travels unencrypted",
                hint="Turn on TLS in the server (ssl = on in postgresql.conf, with a certificate) and set ssl_mode to "
                "'verify-full' (or 'require').",
            )
        step.message = f'Logged in as "{config.user}" to database "{config.database}" (PostgreSQL {version}, {tls})'
        return conn


async def _check_access(probe: Probe, config: PostgresConfig, conn: psycopg.AsyncConnection[TupleRow]) -> None:
    """Step ``access``: a query runs, and the schema exists and may be used (USAGE)."""
    schema, user = config.schema_name, config.user
    async with probe.step("access") as step:
        try:
            # One round trip: 1 proves a query runs; NULL means no such schema.
            cursor = await conn.execute(
                "SELECT 1, (SELECT has_schema_privilege(current_user, n.oid, 'USAGE')"
                " FROM pg_catalog.pg_namespace n WHERE n.nspname = %s)",
                (schema,),
            )
            row = await cursor.fetchone()
        except psycopg.Error as exc:
            raise _driver_failure(exc, config) from None
        if row is None or row[0] != 1:
            raise ProbeFailure(FailureType.UNEXPECTED_RESPONSE, "SELECT 1 did not return 1")
        if row[1] is None:
            raise ProbeFailure(
                FailureType.NOT_FOUND,
                f'schema "{schema}" does not exist in database "{config.database}"',
                hint="Check the schema name (case matters); list them with: SELECT nspname FROM pg_namespace",
                fields=("schema_name",),
            )
        if not row[1]:
            raise ProbeFailure(
                FailureType.AUTHORIZATION_FAILED,
                f'user "{user}" has no USAGE privilege on schema "{schema}"',
                hint="As the schema's owner or a superuser run: "
                f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {_ident(user)}",
                fields=("user", "schema_name"),
            )
        step.message = f'"{user}" may use schema "{schema}"'


def _ident(name: str) -> str:
    """``name`` as SQL would need it typed in the hint (quoted unless a plain lower-case name)."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def _named_missing(what: str) -> Callable[[str], bool]:
    """Whether a line of a text says ``<what> <name> does not exist`` (string search: linear)."""

    def says(text: str) -> bool:
        for line in text.splitlines():
            start = line.find(what + " ")
            if start != -1 and line.find(" does not exist", start + len(what)) != -1:
                return True
        return False

    return says


def _any_of(*tests: Callable[[str], object]) -> Callable[[str], bool]:
    return lambda text: any(test(text) for test in tests)


# SQLSTATE guessed from the server's English text when psycopg has none (all login failures).
# Alternations of literals and string searches only: linear in any text.
_STATE_BY_TEXT: list[tuple[Callable[[str], object], str]] = [
    (re.compile(r"password authentication failed|no password supplied").search, "28P01"),
    (
        _any_of(
            re.compile(r"pg_hba\.conf|not permitted to log in|authentication failed").search, _named_missing("role")
        ),
        "28000",
    ),
    (_named_missing("database"), "3D000"),
    (re.compile(r"permission denied").search, "42501"),
    (re.compile(r"too many (clients|connections)|connection slots are reserved").search, "53300"),
    (
        re.compile(r"database system is (starting up|shutting down|in recovery)|not yet accepting connections").search,
        "57P03",
    ),
]


def _state_by_text(text: str) -> str | None:
    return next((state for says, state in _STATE_BY_TEXT if says(text)), None)


def _server_text(exc: psycopg.Error) -> str:
    """The useful part of a psycopg message: the server's FATAL/ERROR text, else libpq's own."""
    text = server_text(str(exc))
    found = re.search(r"(?:FATAL|ERROR):\s+(.*)", text)  # starts only at the literals: linear
    if found:
        return found.group(1).strip()
    last = text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
    # libpq's own errors start with where it was connecting: the step already says that.
    return re.sub(
        r'^(connection failed: )?connection to server at "[^"]*"( \([^)]*\))?, port \d+ failed: ', "", last
    ).strip()


def _driver_failure(exc: psycopg.Error, config: PostgresConfig) -> ProbeFailure:
    """A psycopg error as a failure type, a message and a hint someone can act on."""
    # The driver may echo connection parameters; never pass the password on.
    said = _server_text(exc)
    text = mask_secrets(said, [config.password.get_secret_value()])
    state = exc.sqlstate or _state_by_text(said)
    user, db = config.user, config.database
    if state == "28P01":
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f'password authentication failed for user "{user}"',
            hint=f"Check the password for user '{user}' (and that the role exists and may log in).",
            fields=("user", "password"),
        )
    if state == "28000" and "pg_hba" in said:
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            text,
            hint=f"The server's pg_hba.conf does not let user '{user}' reach database '{db}' from the workers' "
            "address with this ssl_mode: add a matching host/hostssl line and reload the server.",
            fields=("user", "database", "ssl_mode"),
        )
    if state == "28000":
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            text,
            hint=f"Check the user name '{user}' and that the role may log in (LOGIN).",
            fields=("user",),
        )
    if state == "3D000":
        return ProbeFailure(
            FailureType.NOT_FOUND,
            f'database "{db}" does not exist',
            hint="Check the database name (case matters); list them with: SELECT datname FROM pg_database",
            fields=("database",),
        )
    if state == "42501":
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            text,
            hint="As the database's owner or a superuser run: "
            f"GRANT CONNECT ON DATABASE {_ident(db)} TO {_ident(user)}",
            fields=("user", "database"),
        )
    if state in ("53300", "57P03"):
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The server refused the connection for now: {text}",
            hint="The server is busy or restarting: try again later; if it persists, close idle connections "
            "or raise max_connections (or the role's CONNECTION LIMIT).",
            retryable=True,
        )
    if "requested a cleartext password" in said:  # libpq refused it: require_auth=!password
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            "The server asked for the password in cleartext over a connection without TLS: it was not sent",
            hint="Turn on TLS in the server and set ssl_mode to 'require' or stricter, or let the role log in "
            "with scram-sha-256 (password_encryption and the pg_hba.conf line's method).",
            fields=("ssl_mode", "user"),
        )
    if re.search(r"SSL|certificate|TLS", said):
        return ProbeFailure(FailureType.TLS_ERROR, text, fields=("ssl_mode", "ssl_root_cert"))
    if "timeout expired" in said:
        return ProbeFailure(FailureType.TIMEOUT, "The server did not complete the login in time")
    if "Connection refused" in said:
        return ProbeFailure(FailureType.CONNECTION_REFUSED, f"Connection refused ({text})", fields=("host", "port"))
    return ProbeFailure(FailureType.UNEXPECTED_RESPONSE, text, retryable="closed the connection" in said)
