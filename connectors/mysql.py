"""The ``mysql`` connector: can this user log in to this MySQL or MariaDB server and read this database?

Steps: ``resolve`` and ``tcp`` (connectors.network), ``authenticate`` (the MySQL handshake,
TLS included, over the very connection the tcp step opened), ``access`` (select the database,
then read from it). Server errors are mapped by their error code to a FailureType with a
hint naming the statement that fixes it.

One TCP connection per check, never a probe first: the server counts every connection
that closes before logging in as a connect error of the client's host, and after
``max_connect_errors`` of them (100 by default) refuses the workers' address altogether.

With ``ssh_tunnel`` set, ``resolve`` and ``tcp`` are those of the bastion, then come
``ssh``, ``ssh_auth`` and ``tunnel`` (connectors.ssh: the bastion opens the one connection
to host:port), and the driver talks through that channel.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import struct
from typing import Any, Literal

import aiomysql
import aiomysql.connection
import pymysql
from pydantic import Field, model_validator
from pymysql.constants import CLIENT

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure
from connectors.fields import DestinationHost, DestinationPort, Name, PemCertificates
from connectors.network import connect_tcp, resolve, shown
from connectors.profile import is_production
from connectors.ssh import SSH_TUNNEL_DESCRIPTION, TUNNEL_STEPS, SshTunnel, open_tunnel
from connectors.text import server_text
from connectors.tls import tls_failure

SslMode = Literal["disabled", "preferred", "required", "verify_ca", "verify_identity"]
_VERIFYING: set[str] = {"verify_ca", "verify_identity"}

PRODUCTION_SSL_MODE: SslMode = "required"
"""The ``ssl_mode`` of a source that sets none, in the production profile: TLS or no login."""
DEVELOPMENT_SSL_MODE: SslMode = "preferred"
"""The ``ssl_mode`` of a source that sets none, in development (a local server often has no TLS)."""
_CLEARTEXT_PLUGIN = "mysql_clear_password"  # sends the password as it is: only ever over TLS


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
            "disabled: never TLS; preferred: TLS when the server offers it; required: TLS or fail, certificate not checked; "
            "verify_ca: also check the certificate against the CA; verify_identity: also check it names the host. "
            "Empty: required in the production profile, preferred in development. Without TLS the password is never "
            "sent in cleartext (mysql_clear_password)."
        ),
        examples=["required", "verify_identity"],
    )
    ssl_ca: PemCertificates = Field(
        None,
        title="CA certificate",
        description="PEM text of the CA that signed the server's certificate (verify_ca / verify_identity; default: the system's CAs).",
        examples=["-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----"],
    )
    ssh_tunnel: SshTunnel | None = Field(
        None,
        title="SSH tunnel",
        description=SSH_TUNNEL_DESCRIPTION,
        examples=[
            {
                "host": "bastion.example.com",
                "port": 22,
                "user": "tunnel",
                "auth": {"type": "password", "password": "correct-horse-battery-staple"},
                "host_key": "SHA256:OSobaeYiJ8PsFhKieh5QbBeyVE5T0L3MLL/2sAg9aaw",
            }
        ],
    )

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
    """The server asked for the password in cleartext (mysql_clear_password) without TLS."""


class _Connection(aiomysql.Connection):
    """aiomysql's connection plus the TLS rules it lacks: no silent plain-text fallback when
    TLS is required, and the configured host name (not the IP) for SNI and the certificate
    check; no password in cleartext without TLS (aiomysql answers ``mysql_clear_password``
    whatever the connection); and it runs over a socket that is already connected (``sock``)
    instead of opening its own. aiomysql is pinned, so its private ``_connect``,
    ``_request_authentication`` and ``_process_auth`` hooks are stable (test_mysql checks
    they are still called): the latter two run before any credential is sent."""

    tls_required = False
    tls_hostname: str | None = None
    tls_started = False  # tells a failed TLS handshake from other socket errors
    sock: socket.socket | None = None  # the tcp step's connection, or the tunnel's; taken by _connect

    async def _connect(self) -> None:
        """aiomysql 0.3.2's ``_connect`` for a TCP connection, on ``sock`` instead of a new connection."""
        sock, self.sock = self.sock, None
        if sock is None:
            raise RuntimeError("_Connection needs a connected socket in .sock")
        try:
            try:
                self._reader, self._writer = await aiomysql.connection._open_connection(sock=sock)
            except BaseException:
                sock.close()
                raise
            if sock.family in (socket.AF_INET, socket.AF_INET6):  # not on the tunnel's socketpair
                self._set_keep_alive()
                self._set_nodelay(True)
            self.host_info = f"socket {self._host}:{self._port}"
            self._next_seq_id = 0
            await self._get_server_information()
            await self._request_authentication()
            self.connected_time = self._loop.time()
            if self.autocommit_mode is not None:
                await self.autocommit(self.autocommit_mode)
        except Exception as exc:
            if self._writer:
                self._writer.transport.close()
            self._reader = None
            self._writer = None
            if isinstance(exc, OSError):  # as aiomysql does: _Errors maps 2003 by its cause
                raise pymysql.err.OperationalError(2003, f"Can't connect to MySQL server on {self._host!r}") from exc
            raise

    async def _request_authentication(self) -> None:
        if not self.server_capabilities & CLIENT.SSL:
            if self.tls_required:  # aiomysql would fall back to plain text
                raise _NoTLS
            self.client_flag &= ~CLIENT.SSL  # do not announce a TLS upgrade that will not happen
        elif self._ssl_context is not None:
            self.tls_started = True
            if self.tls_hostname:
                # We connected to an IP, but SNI and the certificate check need the configured
                # name. From here on ``_host`` is only used as the TLS server name and in messages.
                self._host = self.tls_hostname
        if self._server_auth_plugin == _CLEARTEXT_PLUGIN and not self.tls_started:
            raise _ClearTextRefused  # the handshake response would carry the password as it is
        await super()._request_authentication()

    async def _process_auth(self, plugin_name: bytes, auth_packet: Any) -> Any:
        # An auth switch request: the server names the plugin the password goes through.
        if plugin_name == _CLEARTEXT_PLUGIN.encode() and not self.tls_started:
            raise _ClearTextRefused
        return await super()._process_auth(plugin_name, auth_packet)


def _ssl_context(config: MySQLConfig) -> ssl.SSLContext | None:
    mode = config.mode()
    if mode == "disabled":
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if mode in _VERIFYING:
        if config.ssl_ca:
            context.load_verify_locations(cadata=config.ssl_ca)
        else:
            context.load_default_certs()  # reads the system store from disk: built in a thread
        context.check_hostname = mode == "verify_identity"
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _wire_password(password: str) -> str:
    # aiomysql encodes the password as latin-1; servers and the mysql client use UTF-8.
    # This str's latin-1 bytes are the password's UTF-8 bytes, so any password works.
    return password.encode("utf-8").decode("latin-1")


def _ident(name: str) -> str:
    """``name`` as SQL identifier, quoted only when it has to be (hints stay readable)."""
    return name if re.fullmatch(r"[A-Za-z0-9_$]+", name) else "`" + name.replace("`", "``") + "`"


class MySQLConnector(Connector):
    name = "mysql"
    title = "MySQL / MariaDB"
    category = "database"
    documentation_url = "https://mariadb.com/kb/en/connecting-to-mariadb/"
    config_model = MySQLConfig
    steps = ("resolve", "tcp", *TUNNEL_STEPS, "authenticate", "access")

    def planned_steps(self, config: MySQLConfig) -> tuple[str, ...]:
        if config.ssh_tunnel is None:  # no bastion: no ssh, ssh_auth, tunnel
            return tuple(s for s in self.steps if s not in TUNNEL_STEPS)
        return self.steps

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {"host": host, "port": port, "database": "app", "user": "reader", "password": "example-password"}

    async def check(self, config: MySQLConfig, probe: Probe) -> None:
        if config.ssh_tunnel is None:
            addresses = await resolve(probe, config.host, config.port)
            address, sock = await connect_tcp(probe, addresses, keep=True)
            await _check_database(config, probe, sock, address.ip, _hostport(shown(address), address.port))
            return
        async with open_tunnel(probe, config.ssh_tunnel) as tunnel:
            await tunnel.reach(probe, config.host, config.port)
            where = f"{_hostport(config.host, config.port)} (through the SSH tunnel)"
            await _check_database(config, probe, tunnel.channel_socket(), config.host, where)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _check_database(config: MySQLConfig, probe: Probe, sock: socket.socket, host: str, where: str) -> None:
    """Steps ``authenticate`` and ``access`` over ``sock``, a connection to the server (closed at the end).

    ``host`` is what the driver calls the server (the IP the tcp step reached, or the
    configured host through a tunnel); ``where`` names it in messages.
    """
    errors = _Errors(config, where)
    conn: _Connection | None = None
    pending: socket.socket | None = sock  # ours to close until the connection takes it
    try:
        async with probe.step("authenticate") as step:
            mode = config.mode()
            ssl_context = await asyncio.to_thread(_ssl_context, config)
            conn = _Connection(
                host=host,
                port=config.port,
                user=config.user,
                password=_wire_password(config.password.get_secret_value()),
                db=None,  # selected in the access step, so a bad name is not an auth failure
                connect_timeout=probe.remaining(),
                ssl=ssl_context,
                program_name="sourcecheck",
            )
            conn.tls_required = mode != "preferred" and ssl_context is not None
            conn.tls_hostname = config.host  # SNI always (proxies route by it), checked in verify_identity
            conn.sock, pending = pending, None
            try:
                # aiomysql.connect() minus its context manager, so our subclass is used.
                # Every wait in it is a plain await: the deadline cancels it.
                await conn._connect()
            except (pymysql.MySQLError, _NoTLS, _ClearTextRefused, struct.error, IndexError, UnicodeDecodeError) as exc:
                raise errors.failure(exc, tls_started=conn.tls_started) from None
            step.message = f"Logged in as '{config.user}' to {_server_name(conn)} ({_tls_name(conn)})"
        async with probe.step("access") as step:
            try:
                step.message = await _check_access(conn, config.database, errors)
            except pymysql.MySQLError as exc:
                raise errors.failure(exc) from None
    finally:
        if pending is not None:
            pending.close()
        if conn is not None:
            if conn.sock is not None:  # not taken by _connect (cancelled before it ran)
                conn.sock.close()
            # After a deadline aiomysql has closed the socket already (it does on every
            # cancelled read), so this awaits nothing then.
            await _quit(conn)


async def _check_access(conn: _Connection, database: str, errors: _Errors) -> str:
    """Select ``database`` and read from it; returns the step's message."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT CURRENT_USER()")
        row = await cur.fetchone()
        # The account the server matched (e.g. reader@%), for exact GRANT hints.
        errors.account = str(row[0]) if row else None
        try:
            await conn.select_db(database)  # COM_INIT_DB: no SQL, no quoting
        except pymysql.MySQLError as exc:
            if exc.args and exc.args[0] in (1044, 1049):
                errors.visible = await _visible_databases(cur)
            raise
        await cur.execute("SHOW TABLES")  # lists only the tables this user has some privilege on
        tables = [str(r[0]) for r in await cur.fetchall()]
        if not tables:
            return f"Database '{database}' is accessible (it has no tables this user can see)"
        # Prove a read works. A few tables are tried: some may carry only INSERT privileges.
        denied: pymysql.MySQLError | None = None
        for table in tables[:3]:
            try:
                await cur.execute(f"SELECT 1 FROM {_ident(table)} LIMIT 0")  # noqa: S608 - a quoted name from SHOW TABLES
            except pymysql.MySQLError as exc:
                denied = exc
                continue
            await cur.fetchall()
            return f"Database '{database}' is readable: SELECT works on '{table}' (tables visible: {len(tables)})"
        assert denied is not None
        raise denied


async def _visible_databases(cur: aiomysql.Cursor) -> list[str] | None:
    """The databases this user can see, to name the right one in a hint."""
    try:
        await cur.execute("SHOW DATABASES")
        return [str(r[0]) for r in await cur.fetchall() if r[0] not in ("information_schema", "performance_schema")]
    except pymysql.MySQLError:
        return None


async def _quit(conn: _Connection) -> None:
    """Say goodbye (COM_QUIT) so the server does not log an aborted connection, then close."""
    try:
        await conn.ensure_closed()  # returns at once when already closed
    except Exception:  # noqa: S110 - the check's outcome is decided; a failing goodbye changes nothing
        pass
    conn.close()


def _server_name(conn: _Connection) -> str:
    version = str(conn.get_server_info())
    # MariaDB 10+ prefixes its version with 5.5.5- for old replication clients.
    version = version.removeprefix("5.5.5-")
    return version if "mariadb" in version.lower() else f"MySQL {version}"


def _tls_name(conn: _Connection) -> str:
    writer = conn._writer
    ssl_object = writer.transport.get_extra_info("ssl_object") if writer else None
    return f"TLS {ssl_object.version().removeprefix('TLSv')}" if ssl_object else "no TLS"


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
        if isinstance(exc, _NoTLS):
            return self._no_tls()
        if isinstance(exc, _ClearTextRefused):
            return ProbeFailure(
                FailureType.AUTHENTICATION_FAILED,
                f"The server at {self.where} asked for the password in cleartext (mysql_clear_password) over a "
                "connection without TLS: it was not sent",
                hint="Enable TLS on the server and set ssl_mode to required or stricter, or give the account "
                "caching_sha2_password or mysql_native_password.",
            )
        code = exc.args[0] if isinstance(exc, pymysql.MySQLError) and exc.args and isinstance(exc.args[0], int) else 0
        if not code:
            # Garbage in the greeting (bad sequence numbers, short packets): not a MySQL server.
            return ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"The server at {self.where} does not speak the MySQL protocol",
                hint="Check that the host and port point at a MySQL or MariaDB server, not a proxy or another service.",
            )
        if code == 2003:  # aiomysql wraps every OSError of the connection phase, TLS included
            return self._connection_failure(exc.__cause__, tls_started)
        if code == 2013:
            return ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"The server at {self.where} closed the connection",
                hint="Check that this is a MySQL or MariaDB port, and that the server (or a proxy in front) accepts the workers' address.",
                retryable=True,
            )
        text = server_text(str(exc.args[1]) if len(exc.args) > 1 else str(exc))  # the server's own words
        if code not in _BY_CODE:
            return ProbeFailure(FailureType.UNEXPECTED_RESPONSE, f"MySQL error {code}: {text}")
        kind, hint = _BY_CODE[code]
        hint = hint.format(
            user=self.config.user, db=self.config.database, grant=self.grant(), visible=self.visible_hint()
        )
        return ProbeFailure(kind, text, hint=hint, retryable=True if code in _BUSY else None)

    def _no_tls(self) -> ProbeFailure:
        why = f"ssl_mode is '{self.config.ssl_mode}'"
        if self.config.ssl_mode is None:  # the profile's default, not the user's choice: say so
            why = "sources without an ssl_mode require TLS in production"
        return ProbeFailure(
            FailureType.TLS_ERROR,
            f"The server at {self.where} does not offer TLS, but {why}",
            hint="Enable TLS on the server (ssl_cert and ssl_key), or set ssl_mode to preferred on this source "
            "if the network is trusted.",
        )

    def _connection_failure(self, cause: BaseException | None, tls_started: bool) -> ProbeFailure:
        if isinstance(cause, TimeoutError):  # connect_timeout; an OSError too, so first
            return ProbeFailure(FailureType.TIMEOUT, f"No answer from {self.where} while connecting")
        if isinstance(cause, OSError) and (tls_started or isinstance(cause, ssl.SSLError)):
            return tls_failure(cause, self.config.host, trust_fix=_TRUST_FIX)
        if isinstance(cause, ConnectionRefusedError):
            return ProbeFailure(FailureType.CONNECTION_REFUSED, f"Connection refused ({self.where})")
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else type(cause).__name__
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The connection to {self.where} failed during the MySQL handshake ({reason})",
            hint="Check that this is a MySQL or MariaDB port, not a proxy or another service.",
            retryable=True,
        )


_TRUST_FIX = "put the CA certificate that signed it in ssl_ca, or use ssl_mode 'required' to encrypt without verifying"

_AUTH, _AUTHZ = FailureType.AUTHENTICATION_FAILED, FailureType.AUTHORIZATION_FAILED
_BUSY = {1040, 1203, 1226}  # no connection slot left: retrying later may work
# Server error code -> type and hint ({user}, {db}, {grant}, {visible} filled in).
_BY_CODE: dict[int, tuple[FailureType, str]] = {
    1045: (
        _AUTH,
        "Check the password for user '{user}', and that the account exists for the address the workers connect from.",
    ),
    1698: (
        _AUTH,
        "The account '{user}' logs in without a password (e.g. unix_socket): give it a password or use another user.",
    ),
    1820: (_AUTH, "The password of '{user}' has expired: ALTER USER '{user}' IDENTIFIED BY '<new password>'."),
    1862: (_AUTH, "The password of '{user}' has expired: ALTER USER '{user}' IDENTIFIED BY '<new password>'."),
    3118: (_AUTH, "The account is locked: ALTER USER '{user}' ACCOUNT UNLOCK."),
    4151: (_AUTH, "The account is locked: ALTER USER '{user}' ACCOUNT UNLOCK."),
    1251: (
        _AUTH,
        "The account uses an authentication plugin sourcecheck lacks: use mysql_native_password or caching_sha2_password.",
    ),
    2059: (
        _AUTH,
        "The account uses an authentication plugin sourcecheck lacks: use mysql_native_password or caching_sha2_password.",
    ),
    1130: (
        _AUTHZ,
        "The server accepts '{user}' only from other addresses: allow the workers', e.g. CREATE USER '{user}'@'%'.",
    ),
    1129: (_AUTHZ, "Unblock the workers' address with FLUSH HOSTS, and raise max_connect_errors if it recurs."),
    1044: (_AUTHZ, "Either the database '{db}' does not exist, or the user may not use it: {grant}.{visible}"),
    1142: (_AUTHZ, "Let the user read the database: {grant}."),
    1143: (_AUTHZ, "Let the user read the database: {grant}."),
    1049: (FailureType.NOT_FOUND, "Check the database name '{db}'.{visible}"),
    1040: (
        FailureType.UNEXPECTED_RESPONSE,
        "The server has no connection left (max_connections): try again later, or raise it.",
    ),
    1203: (
        FailureType.UNEXPECTED_RESPONSE,
        "The user has no connection left (max_user_connections): try again later, or raise it.",
    ),
    1226: (
        FailureType.UNEXPECTED_RESPONSE,
        "The user has used up a resource limit (e.g. MAX_CONNECTIONS_PER_HOUR): wait, or raise it.",
    ),
    3159: (FailureType.TLS_ERROR, "The server only accepts TLS: set ssl_mode to required or stricter."),
}
