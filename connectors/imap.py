"""The ``imap`` connector: can this user log in to this mailbox and read this folder?

Generic IMAP servers, Gmail and Outlook (XOAUTH2 with an OAuth access token). Steps:
``resolve`` and ``tcp`` (connectors.network); ``tls``: the handshake, on connect (port 993)
or after ``STARTTLS``, left out with ``security: none``; ``authenticate``: ``LOGIN``,
``AUTHENTICATE PLAIN`` or ``AUTHENTICATE XOAUTH2``; ``access``: ``EXAMINE`` of the folder
(read-only: nothing is marked seen), its message count, and the first FIRST_BYTES of its
first message (``BODY.PEEK[]<0.1024>``).

The standard library's imaplib speaks the protocol, in this module's own threads, on the
``tcp`` step's socket; its public hooks ``open``, ``readline`` and ``read`` are overridden
so that every line, literal and byte the server sends is bounded. A deadline reached while
a thread waits shuts the socket down, which ends the wait.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import imaplib
import json
import re
import socket
import ssl
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar, cast

from pydantic import Field

from connectors.base import FIRST_BYTES, Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import DestinationHost, DestinationPort, Name, PemCertificates
from connectors.network import Address, connect_tcp, resolve
from connectors.text import server_text
from connectors.threads import ThreadPool
from connectors.tls import PeerCertificate, client_context, handshake, tls_failure, warn_if_expiring

T = TypeVar("T")

IMAP_THREADS = 8
"""Threads of each process's own pool for imaplib's blocking calls (one per check at a time)."""

MAX_LINE = 64 * 1024
"""Bytes of one line from the server at most (a CAPABILITY or a response text is far shorter)."""

MAX_LITERAL = 64 * 1024
"""Bytes of one literal (``{n}``) at most: the FETCH asks for FIRST_BYTES."""

MAX_RECEIVED = 1024 * 1024
"""Bytes received over one check at most: a server that floods untagged lines is cut off."""

MAX_CHALLENGES = 3
"""Continuation requests answered in one AUTHENTICATE before it is cancelled."""

_threads = ThreadPool(IMAP_THREADS, "imap")

_CODE = re.compile(r"\[([A-Z0-9-]{1,40})")
Security = Literal["tls", "starttls", "none"]


class ImapPassword(ConnectorConfig):
    """Log in with the mailbox's password (or an app password)."""

    type: Literal["password"] = Field(title="Method", description="Log in with a password.", examples=["password"])
    password: Secret = Field(
        title="Password",
        description="The mailbox password, or an app password where the provider requires one (Gmail, iCloud).",
        examples=["correct-horse-battery-staple"],
    )
    method: Literal["login", "plain"] = Field(
        "login",
        title="Login command",
        description="login: the IMAP LOGIN command (every server); plain: AUTHENTICATE PLAIN (SASL).",
        examples=["login"],
    )


class ImapOAuth2(ConnectorConfig):
    """Log in with an OAuth 2.0 access token (SASL XOAUTH2: Gmail, Outlook / Microsoft 365)."""

    type: Literal["xoauth2"] = Field(
        title="Method", description="Log in with an OAuth 2.0 access token (XOAUTH2).", examples=["xoauth2"]
    )
    access_token: Secret = Field(
        title="Access token",
        description=(
            "An OAuth 2.0 access token for the mailbox: scope https://mail.google.com/ for Gmail, "
            "https://outlook.office.com/IMAP.AccessAsUser.All for Outlook."
        ),
        examples=["ya29.a0AfH6SMB..."],
    )


ImapAuth = Annotated[ImapPassword | ImapOAuth2, Field(discriminator="type")]


class ImapConfig(ConnectorConfig):
    """Where the IMAP server is, who logs in, and which folder must be readable."""

    host: DestinationHost = Field(
        title="Host",
        description="Host name or IP address of the IMAP server (no scheme, no user, no port).",
        examples=["imap.gmail.com", "outlook.office365.com", "mail.example.com"],
    )
    port: DestinationPort = Field(
        993, title="Port", description="TCP port: 993 for IMAP over TLS, 143 for STARTTLS or none.", examples=[993]
    )
    security: Security = Field(
        "tls",
        title="Security",
        description=(
            "tls: TLS from the start (port 993); starttls: plain IMAP upgraded with STARTTLS (port 143); "
            "none: no encryption at all (the password travels in clear)."
        ),
        examples=["tls"],
    )
    verify_tls: bool = Field(
        True,
        title="Verify the certificate",
        description="Check the server's certificate and host name. Turn off only for a test server.",
        examples=[True],
    )
    ca_cert: PemCertificates = Field(
        None,
        title="CA certificate",
        description="PEM certificate(s) to trust besides the system's: a private CA or a self-signed server.",
        examples=["-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"],
    )
    username: Name = Field(
        min_length=1,
        max_length=320,
        title="User name",
        description="The login name, usually the whole e-mail address.",
        examples=["reports@example.com"],
    )
    auth: ImapAuth = Field(
        title="Authentication",
        description="How to log in: a password (LOGIN or AUTHENTICATE PLAIN), or an OAuth 2.0 access token.",
        examples=[{"type": "password", "password": "correct-horse-battery-staple"}],
    )
    folder: Name = Field(
        "INBOX",
        min_length=1,
        max_length=1000,
        title="Folder",
        description="The folder (mailbox) to read, with the server's separator: INBOX, Archive/2024, [Gmail]/All Mail.",
        examples=["INBOX", "[Gmail]/All Mail"],
    )
    read_first_message: bool = Field(
        True,
        title="Read the first message",
        description="Also read the first 1 KiB of the folder's first message (without marking it seen).",
        examples=[True],
    )

    def secret_field(self) -> str:
        return "auth.password" if isinstance(self.auth, ImapPassword) else "auth.access_token"


class ImapConnector(Connector):
    name = "imap"
    title = "IMAP mailbox"
    category = "files"
    documentation_url = "https://www.rfc-editor.org/rfc/rfc9051"
    config_model = ImapConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    def planned_steps(self, config: ImapConfig) -> tuple[str, ...]:
        return self.steps if config.security != "none" else tuple(s for s in self.steps if s != "tls")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "host": host,
            "port": port,
            "username": "reader@example.com",
            "auth": {"type": "password", "password": "example-password"},
        }

    async def check(self, config: ImapConfig, probe: Probe) -> None:
        address, sock = await connect_tcp(probe, await resolve(probe, config.host, config.port), keep=True)
        session = _Session(sock, config, probe)
        try:
            if config.security == "tls":
                await _implicit_tls(session, address)
            elif config.security == "starttls":
                await _starttls(session)
            async with probe.step("authenticate") as step:
                if session.imap is None:
                    await session.run(session.greet)
                step.message = await _authenticate(session)
            async with probe.step("access") as step:
                step.message = await _access(session)
        finally:
            session.close()


class _Oversized(Exception):
    """The server sent more than this module reads (a line, a literal, a session)."""


class _Imap(imaplib.IMAP4):
    """imaplib on a socket that is already connected, reading within the module's bounds."""

    def __init__(self, sock: socket.socket, host: str, port: int, timeout: float) -> None:
        self.given_socket = sock
        self.received = 0
        super().__init__(host, port, timeout)

    def open(self, host: str = "", port: int = 143, timeout: float | None = None) -> None:
        # imaplib's documented hook: connect nowhere, use the socket of the ``tcp``/``tls`` steps.
        self.host, self.port = host, port
        self.sock = self.given_socket
        self.file = self.sock.makefile("rb")

    def _count(self, size: int) -> None:
        self.received += size
        if self.received > MAX_RECEIVED:
            raise _Oversized(f"more than {MAX_RECEIVED // 1024} KiB in one check")

    def readline(self) -> bytes:
        line = cast(bytes, self.file.readline(MAX_LINE + 1))
        if len(line) > MAX_LINE:
            raise _Oversized(f"a line longer than {MAX_LINE // 1024} KiB")
        self._count(len(line))
        return line

    def read(self, size: int) -> bytes:
        if size > MAX_LITERAL:
            raise _Oversized(f"a literal of {size} bytes")
        data = cast(bytes, self.file.read(size))
        self._count(len(data))
        return data


class _Session:
    """One check's connection: the socket, then the imaplib client on it."""

    def __init__(self, sock: socket.socket, config: ImapConfig, probe: Probe) -> None:
        self.sock = sock
        self.config = config
        self.probe = probe
        self.imap: _Imap | None = None

    def greet(self) -> _Imap:
        """Read the greeting and the capabilities (in a thread)."""
        self.imap = _Imap(self.sock, self.config.host, self.config.port, self.probe.remaining())
        return self.imap

    async def run(
        self,
        work: Callable[[], T],
        refused: Callable[[str], ProbeFailure] | None = None,
        aborted: Callable[[str], ProbeFailure] | None = None,
    ) -> T:
        """``work()`` in an imap thread; its failures as ProbeFailures (a server's NO or BAD as
        ``refused(text)``, a session it ended as ``aborted(text)``, when given). Cancelled (the
        deadline), the socket is shut down so that the thread's wait ends too."""
        self.sock.settimeout(max(self.probe.remaining(), 0.05))
        try:
            return await _threads.run(work)
        except asyncio.CancelledError:
            self.shutdown()
            raise
        except _Oversized as exc:
            raise ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"The IMAP server at {self.config.host} sent {exc}: not a mailbox this check reads",
                hint="Check that host and port are those of an IMAP server.",
                fields=("host", "port"),
            ) from None
        except ssl.SSLError as exc:
            raise _with_fields(tls_failure(exc, self.config.host)) from None
        except TimeoutError:
            raise ProbeFailure(
                FailureType.TIMEOUT, f"The IMAP server at {self.config.host} did not answer in time"
            ) from None
        except OSError as exc:
            raise ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"The connection to {self.config.host} was lost ({exc.strerror or type(exc).__name__})",
                hint="Check that host and port are those of an IMAP server, and its security setting.",
                retryable=True,
                fields=("host", "port", "security"),
            ) from None
        except imaplib.IMAP4.abort as exc:
            raise (aborted or functools.partial(_protocol_failure, self.config))(_text(exc)) from None
        except imaplib.IMAP4.error as exc:
            raise (refused or functools.partial(_protocol_failure, self.config))(_text(exc)) from None

    def shutdown(self) -> None:
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self.shutdown()
        if self.imap is not None:
            self.imap.file.close()
        self.sock.close()


def _text(exc: BaseException) -> str:
    value = exc.args[0] if exc.args else ""
    return server_text(value if isinstance(value, str | bytes) else str(value), 300)


def _protocol_failure(config: ImapConfig, text: str) -> ProbeFailure:
    """A failure for what imaplib refused: a greeting that is not IMAP's, a BYE, a lost connection."""
    if _code(text) == "UNAVAILABLE" or text.startswith("* BYE"):
        return ProbeFailure(
            FailureType.PROVIDER_UNAVAILABLE,
            f"The IMAP server at {config.host} is not available now ({text})",
            hint="The server refused the session for its own reasons (maintenance, load): try again later.",
        )
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The server at {config.host} did not answer as an IMAP server ({text})",
        hint="Check that host and port are those of an IMAP server, and that security matches the port "
        "(tls on 993, starttls or none on 143).",
        fields=("host", "port", "security"),
    )


def _peer_message(session: _Session, sock: ssl.SSLSocket) -> str:
    """The ``tls`` step's message, and the CERTIFICATE_EXPIRING warning when it is due."""
    der = sock.getpeercert(binary_form=True)
    if der is None:
        return f"{sock.version()}, no certificate"
    peer = PeerCertificate.from_der(sock.version() or "TLS", der)
    if session.config.verify_tls:
        warn_if_expiring(
            session.probe,
            peer,
            session.config.host,
            hint="Ask the mail server's administrator to renew its certificate before then.",
        )
    return peer.describe(verified=session.config.verify_tls)


async def _implicit_tls(session: _Session, address: Address) -> None:
    """Step ``tls`` for security tls: the handshake right after connecting (port 993)."""
    config = session.config
    context = client_context(verify=config.verify_tls, ca_pem=config.ca_cert, alpn="imap")

    def wrap() -> ssl.SSLSocket | ssl.SSLCertVerificationError:
        try:
            return context.wrap_socket(session.sock, server_hostname=config.host)
        except ssl.SSLCertVerificationError as exc:
            return exc

    async with session.probe.step("tls") as step:
        secured = await session.run(wrap)
        if isinstance(secured, ssl.SSLCertVerificationError):
            raise _with_fields(tls_failure(secured, config.host, await _unverified_peer(session, address))) from None
        session.sock = secured
        step.message = _peer_message(session, secured)


async def _unverified_peer(session: _Session, address: Address) -> PeerCertificate | None:
    """The certificate a failed verification refused (fetched unverified, briefly), so the
    message can say when it expired, whom it is for, who issued it."""
    try:
        async with asyncio.timeout(min(2.0, session.probe.remaining() / 2)):
            connection = await handshake(address, session.config.host, client_context(verify=False, alpn="imap"))
    except (OSError, ValueError):  # TimeoutError is an OSError
        return None
    try:
        return connection.peer
    finally:
        connection.abort()


def _with_fields(failure: ProbeFailure) -> ProbeFailure:
    """``failure`` (from connectors.tls) naming the fields that set up TLS."""
    failure.fields = failure.fields or ["ca_cert", "verify_tls", "security", "port"]
    return failure


async def _starttls(session: _Session) -> None:
    """Step ``tls`` for security starttls: the greeting, STARTTLS, the handshake."""
    config = session.config
    context = client_context(verify=config.verify_tls, ca_pem=config.ca_cert, alpn="imap")
    async with session.probe.step("tls") as step:
        imap = await session.run(session.greet)
        if "STARTTLS" not in imap.capabilities:
            raise ProbeFailure(
                FailureType.TLS_ERROR,
                f"The IMAP server at {config.host} does not offer STARTTLS",
                hint="Set security to tls (and port to 993) if the server speaks TLS there, or to none.",
                fields=("security", "port"),
            )
        await session.run(lambda: imap.starttls(context))
        assert isinstance(imap.sock, ssl.SSLSocket)
        session.sock = imap.sock
        step.message = _peer_message(session, imap.sock)


def _quoted(text: str) -> str:
    """An IMAP quoted string (fields hold no control characters, so no CR or LF)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mailbox_name(name: str) -> str:
    """``name`` in IMAP's modified UTF-7 (RFC 3501 5.1.3), as servers without UTF8=ACCEPT expect it."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=").decode()
            out.append("&" + encoded.replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def _code(text: str) -> str | None:
    match = _CODE.search(text)
    return match.group(1) if match else None


def _weak(session: _Session, imap: _Imap) -> None:
    """WEAK_AUTHENTICATION: a credential sent without TLS, or a server that takes one that way."""
    offers_plain = "AUTH=PLAIN" in imap.capabilities or "LOGINDISABLED" not in imap.capabilities
    what = "password" if isinstance(session.config.auth, ImapPassword) else "access token"
    session.probe.warn(
        WarningCode.WEAK_AUTHENTICATION,
        f"The {what} was sent to {session.config.host} without TLS"
        + (", and the server accepts passwords in clear text" if offers_plain else ""),
        hint="Set security to tls (port 993) or starttls (port 143), and have the server refuse logins without TLS "
        "(Dovecot: disable_plaintext_auth = yes).",
    )


def _ascii_line(text: str) -> bool:
    return text.isascii() and text.isprintable()


async def _authenticate(session: _Session) -> str:
    """Step ``authenticate``: LOGIN, AUTHENTICATE PLAIN or AUTHENTICATE XOAUTH2."""
    config, imap = session.config, session.imap
    assert imap is not None
    if imap.state == "AUTH":
        return f"The server at {config.host} pre-authenticated the connection (PREAUTH)"
    if config.security == "none":
        _weak(session, imap)
    caps = imap.capabilities
    auth = config.auth
    if isinstance(auth, ImapOAuth2):
        return await _xoauth2(session, imap, auth.access_token.get_secret_value())
    password = auth.password.get_secret_value()
    # LOGIN sends quoted ASCII strings: other user names and passwords go by AUTHENTICATE PLAIN (UTF-8).
    if auth.method == "login" and _ascii_line(password) and _ascii_line(config.username):
        if "LOGINDISABLED" in caps:
            raise ProbeFailure(
                FailureType.AUTHENTICATION_FAILED,
                f"The IMAP server at {config.host} refuses LOGIN on this connection (LOGINDISABLED)",
                hint="Set security to tls or starttls: the server takes passwords only over TLS.",
                fields=("security", "auth.method"),
            )
        await _login(session, lambda: imap.login(_quoted(config.username), password))
        return f"Logged in as {config.username} (LOGIN)"
    if "AUTH=PLAIN" not in caps:
        raise ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"The IMAP server at {config.host} does not offer AUTHENTICATE PLAIN"
            + (" on this connection (LOGINDISABLED)" if "LOGINDISABLED" in caps else ""),
            hint="Set auth.method to login (with an ASCII user name and password), or security to tls or starttls.",
            fields=("auth.method", "security"),
        )
    blob = f"\0{config.username}\0{password}".encode()
    await _login(session, lambda: imap.authenticate("PLAIN", _once(blob)))
    return f"Logged in as {config.username} (AUTHENTICATE PLAIN)"


def _once(response: bytes, seen: list[str] | None = None) -> Callable[[bytes], bytes | None]:
    """An imaplib authobject: ``response`` to the first challenge, an empty line to the next
    ones (XOAUTH2's error challenge, kept in ``seen``), then ``*`` (cancel)."""
    calls = 0

    def answer(challenge: bytes) -> bytes | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            return response
        if seen is not None:
            seen.append(server_text(challenge, 500))
        return b"" if calls <= MAX_CHALLENGES else None

    return answer


async def _xoauth2(session: _Session, imap: _Imap, token: str) -> str:
    config = session.config
    if "AUTH=XOAUTH2" not in imap.capabilities:
        raise ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"The IMAP server at {config.host} does not offer XOAUTH2",
            hint="Log in with a password (auth.type password), or use the provider's OAuth-enabled IMAP host "
            "(imap.gmail.com, outlook.office365.com).",
            fields=("auth.type", "host"),
        )
    seen: list[str] = []
    blob = f"user={config.username}\x01auth=Bearer {token}\x01\x01".encode()
    await _login(session, lambda: imap.authenticate("XOAUTH2", _once(blob, seen)), seen)
    return f"Logged in as {config.username} (XOAUTH2)"


async def _login(session: _Session, work: Callable[[], Any], challenges: list[str] | None = None) -> None:
    """Run a login command; a refusal as the failure its response code says."""
    await session.run(work, lambda text: _refusal(session.config, text, challenges or []))


def _refusal(config: ImapConfig, text: str, challenges: list[str]) -> ProbeFailure:
    code = _code(text)
    secret = config.secret_field()
    if code == "UNAVAILABLE":
        return ProbeFailure(
            FailureType.PROVIDER_UNAVAILABLE,
            f"The IMAP server at {config.host} cannot log anyone in now ([UNAVAILABLE])",
            hint="The server's authentication backend is down or busy: try again later.",
        )
    if code == "LIMIT":
        return ProbeFailure(
            FailureType.RATE_LIMITED,
            f"The IMAP server at {config.host} refused the login for a limit ([LIMIT]: too many connections)",
            hint="Close other sessions of this user, or try again later.",
        )
    if code == "PRIVACYREQUIRED":
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"The IMAP server at {config.host} takes logins only over TLS ([PRIVACYREQUIRED])",
            hint="Set security to tls (port 993) or starttls (port 143).",
            fields=("security",),
        )
    if code == "AUTHORIZATIONFAILED":
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"user {config.username!r} may not use this mailbox ([AUTHORIZATIONFAILED])",
            hint="Check the user's IMAP access on the server (for Microsoft 365: IMAP enabled for the mailbox).",
            fields=("username",),
        )
    if code == "EXPIRED":
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"The credentials of {config.username!r} have expired ([EXPIRED])",
            hint="Set a new password on the server, or a fresh access token." if secret else "",
            fields=("username", secret),
        )
    if isinstance(config.auth, ImapOAuth2):
        scope = _challenge_scope(challenges)
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"The IMAP server at {config.host} refused the access token for {config.username!r}" + scope,
            hint="Get a fresh access token (they last about an hour) for this user, with scope "
            "https://mail.google.com/ (Gmail) or https://outlook.office.com/IMAP.AccessAsUser.All (Outlook); "
            "username must be the token's mailbox.",
            fields=("username", secret),
        )
    return ProbeFailure(
        FailureType.AUTHENTICATION_FAILED,
        f"The IMAP server at {config.host} refused the user name or password of {config.username!r}",
        hint="Check username (often the whole e-mail address) and the password; Gmail and iCloud need an app "
        "password, Outlook an OAuth token (XOAUTH2).",
        fields=("username", secret),
    )


def _challenge_scope(challenges: list[str]) -> str:
    """What XOAUTH2's error challenge (base64 JSON: status, schemes, scope) says, for the message."""
    for challenge in challenges:
        try:
            body = json.loads(challenge)
        except ValueError:
            continue
        if isinstance(body, dict):
            status, scope = server_text(str(body.get("status", "")), 10), server_text(str(body.get("scope", "")), 200)
            return f" (status {status}{', scope needed: ' + scope if scope else ''})"
    return ""


async def _access(session: _Session) -> str:
    """Step ``access``: EXAMINE the folder, count its messages, read the first one's start."""
    config, imap = session.config, session.imap
    assert imap is not None
    folder = config.folder
    typ, data = await session.run(lambda: imap.select(_quoted(_mailbox_name(folder)), readonly=True))
    if typ != "OK":
        text = _text(Exception(data[-1] if data else b""))
        raise _folder_refusal(config, text, _code(text) or _response_code(imap))
    try:
        count = int(data[-1] or b"")
    except ValueError:
        raise ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The IMAP server at {config.host} did not say how many messages {folder!r} holds",
            fields=("host", "port"),
        ) from None
    if count == 0:
        session.probe.warn(
            WarningCode.EMPTY_LOCATION,
            f"The folder {folder!r} holds no message",
            hint="Check the folder's name (a sync reads only this folder), or move some mail into it.",
        )
        return f"Folder {folder!r} is readable (no messages)"
    if not config.read_first_message:
        return f"Folder {folder!r} is readable ({count} messages)"
    unreadable = functools.partial(_unreadable, config)
    fetched: tuple[str, list[Any]] = await session.run(
        lambda: imap.fetch("1", f"(BODY.PEEK[]<0.{FIRST_BYTES}>)"), unreadable, unreadable
    )
    typ, parts = fetched
    body = next((part[1] for part in parts if isinstance(part, tuple) and len(part) == 2), None)
    if typ != "OK" or not isinstance(body, bytes):
        raise unreadable(_text(Exception(parts[-1] if parts else b"")))
    return f"Folder {folder!r} is readable ({count} messages; read {len(body)} bytes of the first one)"


def _response_code(imap: _Imap) -> str | None:
    for code in ("NONEXISTENT", "NOACCESS", "UNAVAILABLE", "AUTHORIZATIONFAILED"):
        _, data = imap.response(code)
        if data and data != [None]:
            return code
    return None


def _folder_refusal(config: ImapConfig, text: str, code: str | None) -> ProbeFailure:
    folder = config.folder
    if code == "UNAVAILABLE":
        return ProbeFailure(
            FailureType.PROVIDER_UNAVAILABLE,
            f"The IMAP server at {config.host} cannot open {folder!r} now ([UNAVAILABLE])",
            hint="The server's storage is busy or down: try again later.",
        )
    if code in ("NOACCESS", "AUTHORIZATIONFAILED"):
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"user {config.username!r} may not open folder {folder!r} ([{code}])",
            hint=f"Give {config.username!r} the lookup and read rights on {folder!r} (IMAP ACL: lr).",
            fields=("folder",),
        )
    return ProbeFailure(
        FailureType.NOT_FOUND,
        f"The folder {folder!r} does not exist for {config.username!r} ({text})",
        hint="Check the folder's name (case matters but for INBOX) and its separator (Archive/2024 or Archive.2024); "
        "Gmail's folders are under [Gmail]/.",
        fields=("folder",),
    )


def _unreadable(config: ImapConfig, text: str) -> ProbeFailure:
    return ProbeFailure(
        FailureType.AUTHORIZATION_FAILED,
        f"The first message of folder {config.folder!r} could not be read ({text})",
        hint=f"Check that {config.username!r} may read the folder's messages (IMAP ACL: r), and the server's log.",
        fields=("folder",),
    )
