"""The ``mysql`` connector: can this user log in to this MySQL or MariaDB server and read this database?

Steps: ``resolve`` and ``tcp`` (connectors.network), ``authenticate`` (the MySQL handshake,
TLS included, over the very connection the tcp step opened), ``access`` (select the database,
then read from it). Server errors are mapped by their error code to a FailureType with a
hint naming the statement that fixes it.

One TCP connection per check, never a probe first: the server counts every connection
that closes before logging in as a connect error of the client's host, and after
``max_connect_errors`` of them refuses the workers' address altogether.

With ``ssh_tunnel`` set, ``resolve`` and ``tcp`` are those of the bastion, then come
``ssh``, ``ssh_auth`` and ``tunnel`` (connectors.ssh: the bastion opens the one connection
to host:port), and the driver talks through that channel.

The driver is PyMySQL, through its public API: ``Connection(defer_connect=True)``, then
``connect(sock=...)`` on that connection. It blocks, so it runs in this process's MySQL
threads; the server's greeting is read first, here on the event loop, so that a server that
never greets holds no thread, and so that what the greeting offers decides TLS and refuses a
password in cleartext before the driver sends anything. When the deadline passes, the
connection is shut down, which ends the driver's wait in its thread at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypeVar

import pymysql
from pydantic import Field, model_validator
from pymysql.constants import CLIENT, CR

from connectors.base import ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import DestinationHost, DestinationPort, Name, PemCertificates
from connectors.network import connect_tcp, resolve, shown
from connectors.profile import is_production
from connectors.ssh import TUNNEL_STEPS, OptionalTunnel, TunnelledConnector, open_tunnel
from connectors.text import server_text
from connectors.threads import ThreadPool
from connectors.tls import PeerCertificate, TlsFields, tls_failure, warn_if_expiring

T = TypeVar("T")

SslMode = Literal["disabled", "preferred", "required", "verify_ca", "verify_identity"]
_VERIFYING: set[str] = {"verify_ca", "verify_identity"}

PRODUCTION_SSL_MODE: SslMode = "required"
"""The ``ssl_mode`` of a source that sets none, in the production profile: TLS or no login."""
DEVELOPMENT_SSL_MODE: SslMode = "preferred"
"""The ``ssl_mode`` of a source that sets none, in development (a local server often has no TLS)."""
CLEARTEXT_PLUGINS = ("mysql_clear_password", "dialog")
"""Authentication plugins that send the password as it is: only ever over TLS."""

MYSQL_THREADS = 16
"""Threads of each process's pool for the driver. A thread is held while a server that has
greeted answers the login and the reads, not while one is silent before its greeting."""
MAX_GREETING = 4096
"""Bytes of a server's greeting (a real one has a few hundred at most); a longer one is not MySQL."""
DRIVER_TIMEOUT_BEYOND_DEADLINE = 1.0
"""Seconds the driver's own socket timeouts run past the check's deadline: a backstop, for the
deadline's shutdown of the connection ends the driver's wait first."""

_threads = ThreadPool(MYSQL_THREADS, "mysql")


class MySQLConfig(ConnectorConfig):
    """How to reach a MySQL or MariaDB database."""

    host: DestinationHost = Field(
        title="Host",
        description="Host name or IP address of the server (no scheme, no port); as seen from the bastion when "
        "ssh_tunnel is set.",
        examples=["db.example.com", "10.0.0.12"],
    )
    port: DestinationPort = Field(3306, title="Port", description="TCP port of the server.", examples=[3306])
    database: Name = Field(
        title="Database", description="The database (schema) to read.", examples=["app"], min_length=1, max_length=64
    )
    user: Name = Field(
        title="User", description="The user to log in as.", examples=["reader"], min_length=1, max_length=80
    )
    password: Secret = Field(title="Password", description="The user's password.")
    ssl_mode: SslMode | None = Field(
        None,
        title="TLS mode",
        description=(
            "disabled: never TLS; preferred: TLS when the server offers it; required: TLS or fail, certificate not "
            "checked; verify_ca: also check the certificate against the CA; verify_identity: also check it names the "
            "host. Empty: required in the production profile, preferred in development. Without TLS the password is "
            "never sent in cleartext (mysql_clear_password, dialog)."
        ),
        examples=["required", "verify_identity"],
    )
    ssl_ca: PemCertificates = Field(
        None,
        title="CA certificate",
        description="PEM text of the CA that signed the server's certificate (verify_ca / verify_identity; default: "
        "the system's CAs).",
        examples=["-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----"],
    )
    ssh_tunnel: OptionalTunnel = None

    @model_validator(mode="after")
    def _ca_needs_verifying_mode(self) -> MySQLConfig:
        # A CA that would silently be ignored gives a false sense of safety.
        if self.ssl_ca is not None and self.ssl_mode not in _VERIFYING:
            raise ValueError("ssl_ca is only used with ssl_mode verify_ca or verify_identity")
        return self

    def mode(self) -> SslMode:
        """``ssl_mode``, or the profile's default when it is not set."""
        if self.ssl_mode is not None:
            return self.ssl_mode
        return PRODUCTION_SSL_MODE if is_production() else DEVELOPMENT_SSL_MODE


class _NoTLS(Exception):
    """The server does not offer TLS but the ssl_mode demands it."""


class _ClearTextRefused(Exception):
    """The server asked for the password in cleartext without TLS: it was not sent."""

    def __init__(self, plugin: str) -> None:
        super().__init__(plugin)
        self.plugin = plugin


class _NotMySQL(Exception):
    """The server's first answer is not a MySQL greeting."""


@dataclass(frozen=True)
class _Greeting:
    """What the server's first packet says: the part of it that decides how to log in."""

    packet: bytes  # as it came, header included: the driver reads it again
    version: str
    offers_tls: bool
    plugin: str  # the authentication plugin the server asks for ("" when it names none)


def _parse_greeting(packet: bytes) -> _Greeting:
    """A protocol 10 greeting, read as PyMySQL reads it (so both see the same plugin).

    Raises _NotMySQL for anything else, and the server's error for an error packet (too many
    connections, a blocked host) sent instead of a greeting.
    """
    data = packet[4:]
    if data[:1] == b"\xff":
        pymysql.err.raise_mysql_exception(data)
    end = data.find(b"\0", 1)
    i = end + 1 + 4 + 9  # the version, then the thread id, the first 8 bytes of the salt and a filler
    if data[:1] != b"\x0a" or end < 0 or len(data) < i + 8 or not data[1:end].split(b".", 1)[0].isdigit():
        raise _NotMySQL
    low, _, _, high, salt_length = struct.unpack("<HBHHB", data[i : i + 8])
    capabilities = low | high << 16
    i += 8 + 10  # the reserved bytes
    rest_of_salt = max(12, salt_length - 9)
    if len(data) >= i + rest_of_salt:
        i += rest_of_salt
    i += 1  # the salt's NUL
    plugin = b""
    if capabilities & CLIENT.PLUGIN_AUTH:
        plugin = data[i:].split(b"\0", 1)[0]
    try:
        return _Greeting(packet, data[1:end].decode("latin-1"), bool(capabilities & CLIENT.SSL), plugin.decode())
    except UnicodeDecodeError:
        raise _NotMySQL from None


async def _read_greeting(sock: socket.socket) -> _Greeting:
    loop = asyncio.get_running_loop()

    async def exactly(size: int, got: bytes = b"") -> bytes:
        while len(got) < size:
            chunk = await loop.sock_recv(sock, size - len(got))
            if not chunk:
                raise pymysql.err.OperationalError(CR.CR_SERVER_LOST, "Lost connection to MySQL server")
            got += chunk
        return got

    head = await exactly(4)
    size = int.from_bytes(head[:3], "little")
    if head[3] != 0 or not 0 < size <= MAX_GREETING:  # an SSH or HTTP banner read as a header
        raise _NotMySQL
    return _parse_greeting(await exactly(4 + size, head))


def _use_tls(config: MySQLConfig, greeting: _Greeting) -> bool:
    """Whether this login starts TLS. Raises _NoTLS when the mode demands TLS and the server
    offers none (no silent plain-text fallback), and _ClearTextRefused when the greeting asks
    for the password in cleartext on a connection that stays plain."""
    mode = config.mode()
    if not greeting.offers_tls and mode not in ("disabled", "preferred"):
        raise _NoTLS
    tls = greeting.offers_tls and mode != "disabled"
    if greeting.plugin in CLEARTEXT_PLUGINS and not tls:
        raise _ClearTextRefused(greeting.plugin)
    return tls


class _TlsContext(ssl.SSLContext):
    """The context of one connection; it keeps the TLS version the handshake agreed on."""

    agreed: str | None = None
    peer_der: bytes | None = None  # the server's certificate, for the expiry warning

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        wrapped = super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, server_hostname, session
        )
        self.agreed = wrapped.version()
        self.peer_der = wrapped.getpeercert(binary_form=True)
        return wrapped


def _tls_context(config: MySQLConfig) -> _TlsContext:
    context = _TlsContext(ssl.PROTOCOL_TLS_CLIENT)
    if config.mode() in _VERIFYING:
        if config.ssl_ca:
            context.load_verify_locations(cadata=config.ssl_ca)
        else:
            context.load_default_certs()  # reads the system store from disk: in a thread
        context.check_hostname = config.mode() == "verify_identity"
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Replayed(socket.socket):
    """A second handle on a connected socket whose reads begin with bytes already read from it."""

    def __init__(self, sock: socket.socket, first: bytes) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
        self.first = first

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if not self.first:
            return super().recv_into(buffer, nbytes, flags)
        view = memoryview(buffer).cast("B")
        size = min(nbytes or len(view), len(self.first))
        view[:size], self.first = self.first[:size], self.first[size:]
        return size


class _RefuseCleartext:
    """PyMySQL's handler (``auth_plugin_map``) of a cleartext plugin on a connection without TLS:
    the server's switch to it gets no answer."""

    def __init__(self, plugin: str, connection: object) -> None:
        self.plugin = plugin

    def authenticate(self, packet: object) -> NoReturn:
        raise _ClearTextRefused(self.plugin)


_REFUSE_CLEARTEXT = {name: functools.partial(_RefuseCleartext, name) for name in CLEARTEXT_PLUGINS}


@dataclass
class _Session:
    connection: Any  # pymysql.Connection
    tls: str | None  # the TLS version, or None without TLS
    peer: PeerCertificate | None = None  # the server's certificate when it was verified


def _login(config: MySQLConfig, sock: socket.socket, greeting: _Greeting, tls: bool, timeout: float) -> _Session:
    """Log in over ``sock``, whose greeting was read already (blocks: run in a MySQL thread)."""
    context = _tls_context(config) if tls else None
    conn = pymysql.Connection(
        host=config.host,  # connects nowhere (the socket is given): the name for SNI and the certificate check
        port=config.port,
        user=config.user,
        password=config.password.get_secret_value().encode(),  # UTF-8, as servers hash it (PyMySQL: latin-1)
        database=None,  # selected in the access step, so a bad name is not an auth failure
        ssl=context,
        ssl_disabled=not tls,
        auth_plugin_map=None if tls else _REFUSE_CLEARTEXT,
        read_timeout=timeout,
        write_timeout=timeout,
        autocommit=None,  # the server's: no statement to set it
        program_name="sourcecheck",
        defer_connect=True,
    )
    conn.connect(sock=_Replayed(sock, greeting.packet))
    if context is None:
        return _Session(conn, None)
    der = context.peer_der if context.verify_mode != ssl.CERT_NONE else None
    return _Session(conn, context.agreed, PeerCertificate.from_der(context.agreed or "TLS", der) if der else None)


async def _blocking(sock: socket.socket, work: Callable[[], T]) -> T:
    """``work()``, a driver call on ``sock``, in a MySQL thread. Cancelled (the deadline), it
    shuts the connection down: the driver's wait in that thread ends at once."""
    try:
        return await _threads.run(work)
    except asyncio.CancelledError:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        raise


def _ident(name: str) -> str:
    """``name`` as SQL identifier, quoted only when it has to be (hints stay readable)."""
    return name if re.fullmatch(r"[A-Za-z0-9_$]+", name) else "`" + name.replace("`", "``") + "`"


class MySQLConnector(TunnelledConnector):
    name = "mysql"
    title = "MySQL / MariaDB"
    category = "database"
    documentation_url = "https://mariadb.com/kb/en/connecting-to-mariadb/"
    config_model = MySQLConfig
    steps = ("resolve", "tcp", *TUNNEL_STEPS, "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {"host": host, "port": port, "database": "app", "user": "reader", "password": "example-password"}

    async def check(self, config: MySQLConfig, probe: Probe) -> None:
        if config.ssh_tunnel is None:
            addresses = await resolve(probe, config.host, config.port, fields=["host"])
            address, sock = await connect_tcp(probe, addresses, keep=True, fields=["host", "port"])
            await _check_database(config, probe, sock, _hostport(shown(address), address.port))
            return
        async with open_tunnel(probe, config.ssh_tunnel) as tunnel:
            await tunnel.reach(probe, config.host, config.port)
            where = f"{_hostport(config.host, config.port)} (through the SSH tunnel)"
            await _check_database(config, probe, tunnel.channel_socket(), where)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# What a login or a read may raise: the driver's errors, ours, and a hostile answer breaking its parsing.
_DRIVER_ERRORS = (
    pymysql.MySQLError,
    OSError,
    _NoTLS,
    _ClearTextRefused,
    _NotMySQL,
    struct.error,
    IndexError,
    ValueError,
)


async def _check_database(config: MySQLConfig, probe: Probe, sock: socket.socket, where: str) -> None:
    """Steps ``authenticate`` and ``access`` over ``sock``, a connection to the server (closed at the end).

    ``where`` names the server in messages.
    """
    errors = _Errors(config, where)
    session: _Session | None = None
    tls = False
    try:
        async with probe.step("authenticate") as step:
            try:
                greeting = await _read_greeting(sock)
                tls = _use_tls(config, greeting)
                timeout = probe.remaining() + DRIVER_TIMEOUT_BEYOND_DEADLINE
                session = await _blocking(sock, lambda: _login(config, sock, greeting, tls, timeout))
            except _DRIVER_ERRORS as exc:
                raise errors.failure(exc, tls_started=tls) from None
            if session.peer is not None:
                warn_if_expiring(probe, session.peer, config.host, hint=_RENEW)
            if session.tls is None and config.password.get_secret_value():
                probe.warn(
                    WarningCode.WEAK_AUTHENTICATION,
                    f"'{config.user}' logged in with a password over a connection without TLS: whoever records the "
                    "login can attack the password offline, and every row read travels unencrypted",
                    hint="Enable TLS on the server (ssl_cert and ssl_key) and set ssl_mode to verify_identity (or "
                    "required).",
                )
            tls_name = f"TLS {session.tls.removeprefix('TLSv')}" if session.tls else "no TLS"
            step.message = f"Logged in as '{config.user}' to {_server_name(greeting.version)} ({tls_name})"
        async with probe.step("access") as step:
            conn = session.connection
            try:
                step.message = await _blocking(sock, lambda: _check_access(conn, config.database, errors))
            except _DRIVER_ERRORS as exc:
                raise errors.failure(exc) from None
    except asyncio.CancelledError:
        session = None  # its thread may still use it: the shutdown ends that, and the driver closes its side
        raise
    finally:
        if session is not None:
            await _blocking(sock, lambda: _quit(session.connection))
        sock.close()


def _check_access(conn: Any, database: str, errors: _Errors) -> str:
    """Select ``database`` and read from it; returns the step's message (blocks: run in a MySQL thread)."""
    with conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        row = cur.fetchone()
        # The account the server matched (e.g. reader@%), for exact GRANT hints.
        errors.account = str(row[0]) if row else None
        try:
            conn.select_db(database)  # COM_INIT_DB: no SQL, no quoting
        except pymysql.MySQLError as exc:
            if exc.args and exc.args[0] in (1044, 1049):
                errors.visible = _visible_databases(cur)
            raise
        cur.execute("SHOW TABLES")  # lists only the tables this user has some privilege on
        tables = [str(r[0]) for r in cur.fetchall()]
        if not tables:
            return f"Database '{database}' is accessible (it has no tables this user can see)"
        # Prove a read works. A few tables are tried: some may carry only INSERT privileges.
        denied: pymysql.MySQLError | None = None
        for table in tables[:3]:
            try:
                cur.execute(f"SELECT 1 FROM {_ident(table)} LIMIT 0")  # noqa: S608 - a quoted name from SHOW TABLES
            except pymysql.MySQLError as exc:
                denied = exc
                continue
            cur.fetchall()
            return f"Database '{database}' is readable: SELECT works on '{table}' (tables visible: {len(tables)})"
        assert denied is not None
        raise denied


def _visible_databases(cur: Any) -> list[str] | None:
    """The databases this user can see, to name the right one in a hint."""
    try:
        cur.execute("SHOW DATABASES")
        return [str(r[0]) for r in cur.fetchall() if r[0] not in ("information_schema", "performance_schema")]
    except pymysql.MySQLError:
        return None


def _quit(conn: Any) -> None:
    """Say goodbye (COM_QUIT) so the server does not log an aborted connection, then close."""
    if conn.open:  # the driver closes a connection that failed
        conn.close()  # sends COM_QUIT, ignoring a failure to: the check's outcome is decided


def _server_name(version: str) -> str:
    # MariaDB 10+ prefixes its version with 5.5.5- for old replication clients.
    version = version.removeprefix("5.5.5-")
    return version if "mariadb" in version.lower() else f"MySQL {version}"


class _Errors:
    """Turns driver errors into ProbeFailures. Messages never include the password: the
    server's own texts name only the user, host and database."""

    def __init__(self, config: MySQLConfig, where: str) -> None:
        self.config = config
        self.where = where  # "10.0.0.12:3306", or "db:3306 (through the SSH tunnel)"
        self.account: str | None = None  # CURRENT_USER() once logged in
        self.visible: list[str] | None = None  # databases the user can see, for not-found hints

    def grant(self) -> str:
        user, _, host = (self.account or f"{self.config.user}@%").rpartition("@")
        return f"GRANT SELECT ON {_ident(self.config.database)}.* TO '{user}'@'{host}'"

    def visible_hint(self) -> str:
        if self.visible is None:
            return ""
        return f" Databases this user can see: {', '.join(self.visible[:10]) or 'none'}."

    def failure(self, exc: Exception, *, tls_started: bool = False) -> ProbeFailure:
        """The ProbeFailure for what the login or the reads raised (see ``_DRIVER_ERRORS``);
        ``tls_started``: TLS was begun, so a broken connection is a failed TLS handshake."""
        if isinstance(exc, _NoTLS):
            return self._no_tls()
        if isinstance(exc, _ClearTextRefused):
            return ProbeFailure(
                FailureType.AUTHENTICATION_FAILED,
                f"The server at {self.where} asked for the password in cleartext ({exc.plugin}) over a "
                "connection without TLS: it was not sent",
                hint="Enable TLS on the server and set ssl_mode to required or stricter, or give the account "
                "caching_sha2_password or mysql_native_password.",
                fields=("ssl_mode", "user"),
            )
        if isinstance(exc, OSError):  # reading the greeting
            return self._connection_failure(exc, tls_started)
        code = exc.args[0] if isinstance(exc, pymysql.MySQLError) and exc.args and isinstance(exc.args[0], int) else 0
        if not code:
            # Not a greeting, bad sequence numbers, short packets: not a MySQL server.
            return ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"The server at {self.where} does not speak the MySQL protocol",
                hint="Check that the host and port point at a MySQL or MariaDB server, not a proxy or another service.",
                fields=("host", "port"),
            )
        if code == CR.CR_CONN_HOST_ERROR:  # the driver's wrapping of an OSError while connecting, TLS included
            return self._connection_failure(exc.__context__, tls_started)
        if code in (CR.CR_SERVER_LOST, CR.CR_SERVER_GONE_ERROR):  # a read or a write found the connection gone
            if isinstance(exc.__context__, TimeoutError):  # the driver's own timeout, past the deadline
                return self._connection_failure(exc.__context__, tls_started)
            return ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"The server at {self.where} closed the connection",
                hint="Check that this is a MySQL or MariaDB port, and that the server (or a proxy in front) "
                "accepts the workers' address.",
                retryable=True,
                fields=("host", "port"),
            )
        text = server_text(str(exc.args[1]) if len(exc.args) > 1 else str(exc))  # the server's own words
        if code not in _BY_CODE:
            return ProbeFailure(FailureType.UNEXPECTED_RESPONSE, f"MySQL error {code}: {text}")
        kind, hint = _BY_CODE[code]
        hint = hint.format(
            user=self.config.user, db=self.config.database, grant=self.grant(), visible=self.visible_hint()
        )
        return ProbeFailure(
            kind, text, hint=hint, retryable=True if code in _BUSY else None, fields=_FIELDS_BY_CODE.get(code, ())
        )

    def _no_tls(self) -> ProbeFailure:
        why = f"ssl_mode is '{self.config.ssl_mode}'"
        if self.config.ssl_mode is None:  # the profile's default, not the user's choice: say so
            why = "sources without an ssl_mode require TLS in production"
        return ProbeFailure(
            FailureType.TLS_ERROR,
            f"The server at {self.where} does not offer TLS, but {why}",
            hint="Enable TLS on the server (ssl_cert and ssl_key), or set ssl_mode to preferred on this source "
            "if the network is trusted.",
            fields=("ssl_mode",),
        )

    def _connection_failure(self, cause: BaseException | None, tls_started: bool) -> ProbeFailure:
        if isinstance(cause, TimeoutError):  # an OSError too, so first
            return ProbeFailure(FailureType.TIMEOUT, f"No answer from {self.where} while connecting")
        if isinstance(cause, OSError) and (tls_started or isinstance(cause, ssl.SSLError)):
            return tls_failure(cause, self.config.host, trust_fix=_TRUST_FIX, fields=_TLS_FIELDS)
        if isinstance(cause, ConnectionRefusedError):
            return ProbeFailure(
                FailureType.CONNECTION_REFUSED, f"Connection refused ({self.where})", fields=("host", "port")
            )
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else type(cause).__name__
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The connection to {self.where} failed during the MySQL handshake ({reason})",
            hint="Check that this is a MySQL or MariaDB port, not a proxy or another service.",
            retryable=True,
            fields=("host", "port"),
        )


_RENEW = "Renew the server's certificate (ssl_cert in the server's configuration) and restart it before then."
_TLS_FIELDS = TlsFields(trust=("ssl_ca", "ssl_mode"))
_TRUST_FIX = "put the CA certificate that signed it in ssl_ca, or use ssl_mode 'required' to encrypt without verifying"

_AUTH, _AUTHZ = FailureType.AUTHENTICATION_FAILED, FailureType.AUTHORIZATION_FAILED
_BUSY = {1040, 1203, 1226}  # no connection slot left: retrying later may work
# Server error codes -> type and hint ({user}, {db}, {grant}, {visible} filled in).
_BY_CODE: dict[int, tuple[FailureType, str]] = {
    code: (kind, hint)
    for codes, kind, hint in [
        (
            (1045,),
            _AUTH,
            "Check the password for user '{user}', and that the account exists for the address the workers connect "
            "from.",
        ),
        (
            (1698,),
            _AUTH,
            "The account '{user}' logs in without a password (e.g. unix_socket): give it a password or use another "
            "user.",
        ),
        (
            (1820, 1862),
            _AUTH,
            "The password of '{user}' has expired: ALTER USER '{user}' IDENTIFIED BY '<new password>'.",
        ),
        ((3118, 4151), _AUTH, "The account is locked: ALTER USER '{user}' ACCOUNT UNLOCK."),
        (
            (1251, 2059),
            _AUTH,
            "The account uses an authentication plugin sourcecheck lacks: use mysql_native_password or "
            "caching_sha2_password.",
        ),
        (
            (1130,),
            _AUTHZ,
            "The server accepts '{user}' only from other addresses: allow the workers', e.g. CREATE USER '{user}'@'%'.",
        ),
        ((1129,), _AUTHZ, "Unblock the workers' address with FLUSH HOSTS, and raise max_connect_errors if it recurs."),
        ((1044,), _AUTHZ, "Either the database '{db}' does not exist, or the user may not use it: {grant}.{visible}"),
        ((1142, 1143), _AUTHZ, "Let the user read the database: {grant}."),
        ((1049,), FailureType.NOT_FOUND, "Check the database name '{db}'.{visible}"),
        (
            (1040,),
            FailureType.UNEXPECTED_RESPONSE,
            "The server has no connection left (max_connections): try again later, or raise it.",
        ),
        (
            (1203,),
            FailureType.UNEXPECTED_RESPONSE,
            "The user has no connection left (max_user_connections): try again later, or raise it.",
        ),
        (
            (1226,),
            FailureType.UNEXPECTED_RESPONSE,
            "The user has used up a resource limit (e.g. MAX_CONNECTIONS_PER_HOUR): wait, or raise it.",
        ),
        ((3159,), FailureType.TLS_ERROR, "The server only accepts TLS: set ssl_mode to required or stricter."),
    ]
    for code in codes
}
# Server error codes -> the configuration fields to fix (none for the server's own limits).
_FIELDS_BY_CODE: dict[int, tuple[str, ...]] = {
    code: fields
    for codes, fields in [
        ((1045, 1698), ("user", "password")),
        ((1820, 1862), ("password",)),
        ((3118, 4151, 1251, 2059, 1130, 1203, 1226), ("user",)),
        ((1129,), ("host",)),
        ((1044, 1142, 1143), ("user", "database")),
        ((1049,), ("database",)),
        ((3159,), ("ssl_mode",)),
    ]
    for code in codes
}
