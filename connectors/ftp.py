"""The ``ftp`` connector: can this user log in to this FTP or FTPS server and read this folder?

Steps: ``resolve`` and ``tcp`` (connectors.network); ``tls`` (implicit FTPS: a handshake on
connect; explicit: ``AUTH TLS`` then the handshake; plain FTP: skipped in place);
``authenticate`` (``USER``/``PASS``, then ``PBSZ 0``/``PROT P`` over TLS); ``access``: ``CWD``
to the folder, a passive data channel (``PASV``, ``EPSV`` over IPv6) carrying ``MLSD`` (or
``NLST``), then ``RETR`` of the first file for its first FIRST_BYTES bytes.

The client is written here on asyncio streams rather than ftplib: ftplib cannot take the
``tcp`` step's connection, has no implicit FTPS, waits in blocking calls that the deadline
cannot interrupt, and reads multi-line replies without a bound. The control channel is a
handful of line-based commands; everything the server sends is bounded (line length, lines
per reply, listing bytes, entries).

The data channel always goes to the address of the control connection: an address in a
``PASV`` reply that differs (a server behind NAT advertising its private address, or a hostile
one pointing elsewhere) is ignored, as curl's ``--ftp-skip-pasv-ip`` does, and the step says so.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from connectors.base import FIRST_BYTES, Connector, ConnectorConfig, Probe, Secret, Step, StepStatus
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import DestinationHost, DestinationPort, PemCertificates
from connectors.network import Address, connect_tcp, resolve, shown
from connectors.text import server_text
from connectors.tls import PeerCertificate, client_context, tls_failure, tls_handshake, warn_if_expiring

TlsMode = Literal["none", "explicit", "implicit"]

MAX_LINE = 8192
"""Bytes of one control line read at most over plain TCP (ftplib's own limit); over implicit
TLS, the streams' own 64 KiB."""

MAX_REPLY_LINES = 100
"""Lines of one multi-line reply read at most (a banner, a listing sent on the control channel)."""

MAX_LISTING = 256 * 1024
"""Bytes of a folder listing read at most; the entries past them are not counted."""

MAX_ENTRIES = 1000
"""Entries counted at most: a huge folder must not use up the deadline."""

DATA_CONNECT_S = 5.0
"""Seconds a passive data connection may take to open (less when the deadline is nearer): one
that does not open is the NAT or firewall case, reported as such before the deadline."""

_TRUST_FIX = "set ca_cert to the CA that signed it, or verify_tls=false"
_PASV = re.compile(r"(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})")
_EPSV = re.compile(r"\((.)\1\1(\d{1,5})\1\)")
_DENIED = re.compile(r"permission|privilege|denied|not allowed|access", re.IGNORECASE)


class FtpConfig(ConnectorConfig):
    """Where the FTP server is, how the connection is secured, who logs in, and which folder must be readable."""

    host: DestinationHost = Field(
        title="Host",
        description="Host name or IP address of the FTP server (no scheme, no user, no port).",
        examples=["ftp.example.com", "10.0.0.30"],
    )
    port: DestinationPort = Field(
        21, title="Port", description="TCP port of the control connection: 21, or 990 for implicit FTPS.", examples=[21]
    )
    username: str = Field(
        "anonymous",
        min_length=1,
        max_length=256,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        title="Username",
        description="The user to log in as (anonymous for a public server).",
        examples=["exports"],
    )
    password: Secret | None = Field(
        None, title="Password", description="The user's password (none for an anonymous login)."
    )
    tls: TlsMode = Field(
        "explicit",
        title="TLS",
        description="How the connection is secured: explicit (FTPS: AUTH TLS on the plain port, then TLS for "
        "the control and data channels), implicit (FTPS: TLS from the first byte, usually port 990) or none "
        "(plain FTP: the password and the files travel in clear text).",
        examples=["explicit"],
    )
    verify_tls: bool = Field(
        True,
        title="Verify TLS certificate",
        description="Check that the server's certificate is valid for the host and signed by a trusted CA.",
    )
    ca_cert: PemCertificates = Field(
        None,
        title="CA certificate",
        description="PEM certificate(s) of the CA that signed the server's certificate, for a private CA. "
        "Ignored when verify_tls is off.",
    )
    folder: str = Field(
        "",
        max_length=1024,
        pattern=r"^[^\x00\r\n]*$",
        title="Folder",
        description="The folder to read: absolute (/exports), relative to the login folder, or empty for the "
        "login folder itself.",
        examples=["/exports", "incoming"],
    )


class FtpConnector(Connector):
    name = "ftp"
    title = "FTP / FTPS"
    category = "files"
    documentation_url = "https://www.rfc-editor.org/rfc/rfc959"
    config_model = FtpConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "host": host,
            "port": port,
            "username": "reader",
            "password": "example-password",
            "tls": "none",
            "folder": "/data",
        }

    async def check(self, config: FtpConfig, probe: Probe) -> None:
        address, sock = await connect_tcp(probe, await resolve(probe, config.host, config.port), keep=True)
        control = await _secure(probe, config, address, sock)
        try:
            async with probe.step("authenticate") as step:
                if config.tls != "explicit":  # explicit: read before AUTH TLS
                    await control.greeting()
                step.message = await _login(control, config)
            if config.tls == "none" and config.password is not None:
                probe.warn(
                    WarningCode.WEAK_AUTHENTICATION,
                    f"The password of '{config.username}' was sent in clear text (plain FTP, tls none)",
                    hint="Set tls to explicit (AUTH TLS) or implicit if the server offers FTPS; on plain FTP "
                    "anyone on the path can read the password and the files.",
                )
            async with probe.step("access") as step:
                step.message = await _read_folder(probe, control, config, address)
        finally:
            control.close()


@dataclass
class _Control:
    """The control connection: commands out, bounded replies in."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str

    async def reply(self) -> tuple[int, str]:
        """The next reply: its code and its text (the lines of a multi-line one joined)."""
        first = await self._line()
        code = _code(first)
        if code is None:
            raise _garbled(self.host, first)
        lines = [first[4:]]
        if first[3:4] == "-":
            while True:
                if len(lines) >= MAX_REPLY_LINES:
                    raise ProbeFailure(
                        FailureType.UNEXPECTED_RESPONSE,
                        f"The FTP server at {self.host} sent a reply of more than {MAX_REPLY_LINES} lines",
                        fields=("host", "port"),
                    )
                line = await self._line()
                if line.startswith(f"{code} "):
                    lines.append(line[4:])
                    break
                lines.append(line)
        return code, server_text(" ".join(part.strip() for part in lines if part.strip()), 300)

    async def _line(self) -> str:
        try:
            raw = await self.reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"The FTP server at {self.host} sent a line too long for an FTP reply",
                fields=("host", "port"),
            ) from None
        except asyncio.IncompleteReadError:
            raise ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"The FTP server at {self.host} closed the control connection",
                hint="Check that host and port point at an FTP server, and the server's log for why it hung up.",
                fields=("host", "port"),
            ) from None
        except OSError as exc:
            raise _lost(self.host, exc) from None
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    async def send(self, line: str) -> None:
        try:
            self.writer.write(line.encode("utf-8", errors="surrogateescape") + b"\r\n")
            await self.writer.drain()
        except OSError as exc:
            raise _lost(self.host, exc) from None

    async def command(self, line: str) -> tuple[int, str]:
        await self.send(line)
        return await self.reply()

    async def greeting(self) -> str:
        code, text = await self.reply()
        if code == 120:  # "ready in n minutes": the real greeting follows
            code, text = await self.reply()
        if code == 421:
            raise ProbeFailure(
                FailureType.PROVIDER_UNAVAILABLE,
                f"The FTP server at {self.host} refused the session: 421 {text}",
                hint="The server is busy or shutting down (too many connections?): try again later.",
                fields=("host", "port"),
            )
        if code != 220:
            raise _unexpected(self.host, "the greeting", code, text)
        return text

    def close(self) -> None:
        # abort, not close: a graceful TLS close waits for the peer's close_notify.
        self.writer.transport.abort()


def _code(line: str) -> int | None:
    if len(line) >= 3 and line[:3].isdigit() and line[3:4] in ("", " ", "-"):
        return int(line[:3])
    return None


def _garbled(host: str, line: str) -> ProbeFailure:
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The server at {host} did not answer like an FTP server ({server_text(line, 80)!r})",
        hint="Check host and port: they must point at the FTP control port (21, or 990 for implicit FTPS), "
        "and tls must match what the server speaks there.",
        fields=("host", "port", "tls"),
    )


def _unexpected(host: str, what: str, code: int, text: str) -> ProbeFailure:
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The FTP server at {host} answered {code} {text} to {what}",
        fields=("host", "port"),
    )


def _lost(host: str, exc: OSError) -> ProbeFailure:
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The control connection to the FTP server at {host} broke ({exc.strerror or type(exc).__name__})",
        retryable=True,
        fields=("host", "port"),
    )


def _context(verify: bool, ca_pem: str | None) -> ssl.SSLContext:
    return client_context(verify=verify, ca_pem=ca_pem, alpn="ftp")


def _about_tls(failure: ProbeFailure) -> ProbeFailure:
    """``failure`` of a handshake, naming the fields that fix it."""
    if not failure.fields:
        certificate = failure.type == FailureType.TLS_ERROR and "certificate" in failure.message
        failure.fields = ["ca_cert", "verify_tls"] if certificate else ["tls", "port"]
    return failure


async def _secure(probe: Probe, config: FtpConfig, address: Address, sock: socket.socket) -> _Control:
    """Step ``tls``: the control connection, secured as ``config.tls`` says (skipped for plain FTP)."""
    context = _context(config.verify_tls, config.ca_cert)
    if config.tls == "implicit":
        try:
            connection = await tls_handshake(probe, sock, address, config.host, context, trust_fix=_TRUST_FIX)
        except ProbeFailure as failure:
            raise _about_tls(failure) from None
        return _Control(connection.reader, connection.writer, config.host)
    try:
        reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_LINE)
    except BaseException:
        sock.close()
        raise
    control = _Control(reader, writer, config.host)
    if config.tls == "none":
        probe.steps.append(Step(name="tls", status=StepStatus.SKIPPED, message="tls none: plain FTP"))
        return control
    try:
        async with probe.step("tls") as step:
            await control.greeting()
            code, text = await control.command("AUTH TLS")
            if code != 234:
                raise ProbeFailure(
                    FailureType.TLS_ERROR,
                    f"The FTP server at {config.host} does not offer explicit TLS (AUTH TLS: {code} {text})",
                    hint="Set tls to implicit if the server speaks TLS from the first byte (usually port 990), "
                    "or to none for plain FTP if you accept sending the password in clear text.",
                    fields=("tls", "port"),
                )
            try:
                await writer.start_tls(context, server_hostname=config.host)
            except OSError as exc:
                raise _about_tls(tls_failure(exc, config.host, trust_fix=_TRUST_FIX)) from None
            ssl_object = writer.get_extra_info("ssl_object")
            peer = PeerCertificate.from_der(ssl_object.version() or "TLS", ssl_object.getpeercert(binary_form=True))
            verified = context.verify_mode != ssl.CERT_NONE
            if verified:
                warn_if_expiring(probe, peer, config.host)
            step.message = "AUTH TLS: " + peer.describe(verified=verified)
    except BaseException:
        control.close()
        raise
    return control


async def _login(control: _Control, config: FtpConfig) -> str:
    """``USER``/``PASS``, then, over TLS, ``PBSZ 0``/``PROT P`` so the data channel is encrypted too."""
    user = config.username
    code, text = await control.command(f"USER {user}")
    if code in (331, 332):
        if config.password is None and user == "anonymous":
            code, text = await control.command("PASS anonymous@")  # the customary anonymous password
        elif config.password is None:
            raise ProbeFailure(
                FailureType.AUTHENTICATION_FAILED,
                f"The FTP server asks a password for user '{user}', and none is configured",
                hint="Set password (or username 'anonymous' if the server allows anonymous logins).",
                fields=("password",),
            )
        else:
            # The reply to PASS is never quoted: a server may echo what it was sent.
            code, _ = await control.command(f"PASS {config.password.get_secret_value()}")
            text = ""
    if code in (530, 430, 331, 332):
        if config.tls == "none" and re.search(r"TLS|SSL|encrypt", text, re.IGNORECASE):
            raise _tls_required(config.host, code, text)
        raise ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"The FTP server refused the login of user '{user}' ({code})",
            hint="Check username and password (case matters); the account may also be disabled or not allowed "
            "to use FTP.",
            fields=("username", "password"),
        )
    if code in (534, 550, 521) and config.tls == "none":
        raise _tls_required(config.host, code, text)
    if code == 421:
        raise ProbeFailure(
            FailureType.PROVIDER_UNAVAILABLE,
            f"The FTP server at {config.host} closed the session at login: 421 {text}",
            fields=("host", "port"),
        )
    if code not in (230, 202):
        raise _unexpected(config.host, "the login", code, text)
    if config.tls == "none":
        return f"Logged in as '{user}' (plain FTP)"
    for command in ("PBSZ 0", "PROT P"):
        code, text = await control.command(command)
        if code != 200:
            raise ProbeFailure(
                FailureType.TLS_ERROR,
                f"The FTP server at {config.host} refused to protect the data channel ({command}: {code} {text})",
                hint="The server encrypts the control channel only; allow protected data channels (PROT P) on the "
                "server.",
                fields=("tls",),
            )
    return f"Logged in as '{user}', data channel protected (PROT P)"


def _tls_required(host: str, code: int, text: str) -> ProbeFailure:
    return ProbeFailure(
        FailureType.AUTHENTICATION_FAILED,
        f"The FTP server at {host} requires TLS before login ({code} {text})",
        hint="Set tls to explicit (AUTH TLS) or implicit.",
        fields=("tls",),
    )


@dataclass
class _Transfer:
    """What one data-channel command gave: the first bytes, and whether they were all of it."""

    data: bytes
    complete: bool


async def _read_folder(probe: Probe, control: _Control, config: FtpConfig, address: Address) -> str:
    """Step ``access``: the folder can be entered and listed, and its first file read."""
    folder, user = config.folder, config.username
    where = f"'{folder}'" if folder else "the login folder"
    if folder:
        code, text = await control.command(f"CWD {folder}")
        if code in (550, 450, 553):
            if _DENIED.search(text):
                raise ProbeFailure(
                    FailureType.AUTHORIZATION_FAILED,
                    f"user '{user}' may not enter folder '{folder}' ({code} {text})",
                    hint=f"Give '{user}' access to the folder on the server, or choose one the user can reach.",
                    fields=("folder",),
                )
            raise ProbeFailure(
                FailureType.NOT_FOUND,
                f"folder '{folder}' does not exist ({code} {text})",
                hint="Check the folder (case matters): relative paths start from the user's login folder.",
                fields=("folder",),
            )
        if code // 100 != 2:
            raise _unexpected(config.host, f"CWD {folder}", code, text)
    code, text = await control.command("TYPE I")
    if code // 100 != 2:
        raise _unexpected(config.host, "TYPE I", code, text)
    notes: list[str] = []
    listing = await _transfer(probe, control, config, address, "MLSD", MAX_LISTING, notes)
    mlsd = listing is not None
    if listing is None:  # MLSD not implemented: names only
        listing = await _transfer(probe, control, config, address, "NLST", MAX_LISTING, notes)
    if listing is None:
        raise _unexpected(config.host, "MLSD and NLST", 502, "not implemented")
    entries, files = _entries(listing.data, mlsd=mlsd)
    more = "+" if not listing.complete or len(entries) >= MAX_ENTRIES else ""
    count = f"{len(entries)}{more} {'entry' if len(entries) == 1 and not more else 'entries'}"
    note = f" ({'; '.join(dict.fromkeys(notes))})" if notes else ""
    if not files:
        probe.warn(
            WarningCode.EMPTY_LOCATION,
            f"Folder {where} holds no files ({count})",
            hint="Check folder: a sync from it finds nothing to read. Put the files there, or choose the folder "
            "that holds them.",
        )
        return f"Folder {where} is readable ({count}, no files in it){note}"
    refused: tuple[str, int, str] | None = None
    for name in files[:3]:
        try:
            first = await _transfer(probe, control, config, address, f"RETR {name}", FIRST_BYTES, notes, retr=True)
        except _Refused as exc:
            refused = refused or (name, exc.code, exc.text)
            continue
        assert first is not None
        shown_name = _shown(name)
        return f"Folder {where} is readable ({count}; read {len(first.data)} bytes of '{shown_name}'){note}"
    assert refused is not None
    name, code, text = refused
    raise ProbeFailure(
        FailureType.AUTHORIZATION_FAILED,
        f"user '{user}' may list folder {where} but not download its files (RETR '{_shown(name)}': {code} {text})",
        hint=f"Give '{user}' read (download) permission on the files in the folder.",
        fields=("username", "folder"),
    )


class _Refused(Exception):
    """RETR refused a file (550): the caller tries the next one."""

    def __init__(self, code: int, text: str) -> None:
        self.code, self.text = code, text


def _shown(name: str) -> str:
    return server_text(name.encode("utf-8", errors="surrogateescape"), 200)


def _entries(data: bytes, *, mlsd: bool) -> tuple[list[str], list[str]]:
    """(entry names, file names sorted) of a listing; NLST cannot tell files from folders."""
    entries: list[str] = []
    files: list[str] = []
    for raw in data.split(b"\n")[:MAX_ENTRIES]:
        line = raw.rstrip(b"\r").decode("utf-8", errors="surrogateescape")
        if not line:
            continue
        if not mlsd:
            name = line.rsplit("/", 1)[-1]
            if name not in (".", ".."):
                entries.append(name)
                files.append(name)
            continue
        facts, _, name = line.partition(" ")
        kind = next((f.split("=", 1)[1].lower() for f in facts.split(";") if f.lower().startswith("type=")), "")
        if kind in ("cdir", "pdir") or not name:
            continue
        entries.append(name)
        if kind == "file":
            files.append(name)
    return entries, sorted(files)


async def _transfer(
    probe: Probe,
    control: _Control,
    config: FtpConfig,
    address: Address,
    command: str,
    limit: int,
    notes: list[str],
    *,
    retr: bool = False,
) -> _Transfer | None:
    """``command`` over a new passive data channel, its first ``limit`` bytes read (the rest
    aborted). None when the server does not implement the command."""
    port = await _passive(control, config, address, notes)
    reader, writer = await _connect_data(probe, config, address, port, notes)
    try:
        code, text = await control.command(command)
        verb = command.split(" ", 1)[0]
        if code in (500, 502, 504) and not retr:
            return None
        if code == 425:
            raise _data_failure(config, address, port, f"the server could not open it: {code} {text}", notes)
        if code in (550, 450, 451) and retr:
            raise _Refused(code, text)
        if code in (550, 450):
            raise ProbeFailure(
                FailureType.AUTHORIZATION_FAILED,
                f"user '{config.username}' may not list the folder ({verb}: {code} {text})",
                hint=f"Give '{config.username}' permission to list the folder on the server.",
                fields=("folder",),
            )
        if code not in (125, 150):
            raise _unexpected(config.host, verb, code, text)
        if config.tls != "none":
            try:
                await writer.start_tls(_context(config.verify_tls, config.ca_cert), server_hostname=config.host)
            except OSError as exc:
                raise ProbeFailure(
                    FailureType.TLS_ERROR,
                    f"The TLS handshake on the data channel of {config.host} failed ({_reason(exc)})",
                    hint="Some servers require the data channel to resume the control channel's TLS session "
                    "(vsftpd's require_ssl_reuse); turn that off on the server for this client.",
                    fields=("tls",),
                ) from None
        data, complete = await _read(reader, limit, config.host)
    finally:
        writer.transport.abort()
    if complete:
        code, text = await control.reply()
        if code // 100 != 2:
            if retr:
                raise _Refused(code, text)
            raise _unexpected(config.host, f"the end of {verb}", code, text)
    elif retr:  # no command follows, so the abort's answers need not be read
        await control.send("ABOR")
    else:
        await _abort(probe, control)
    return _Transfer(data, complete)


async def _passive(control: _Control, config: FtpConfig, address: Address, notes: list[str]) -> int:
    """The port of a passive data channel; its address is always the control connection's."""
    if address.family != socket.AF_INET6:
        code, text = await control.command("PASV")
        if code == 227 and (match := _PASV.search(text)):
            numbers = [int(n) for n in match.groups()]
            advertised = ".".join(str(n) for n in numbers[:4])
            if advertised != address.ip:
                notes.append(
                    f"the server advertised {advertised} for its data channel: ignored, the data channel goes to "
                    f"{shown(address)} as the control connection does"
                )
            return numbers[4] * 256 + numbers[5]
        if code not in (500, 501, 502, 504):
            raise _passive_refused(config, "PASV", code, text)
    code, text = await control.command("EPSV")
    if code == 229 and (epsv := _EPSV.search(text)):
        return int(epsv.group(2))
    raise _passive_refused(config, "EPSV", code, text)


def _passive_refused(config: FtpConfig, verb: str, code: int, text: str) -> ProbeFailure:
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The FTP server at {config.host} refused passive mode ({verb}: {code} {text})",
        hint="sourcecheck opens data channels in passive mode only (a client behind NAT cannot accept "
        "connections): enable passive mode on the server.",
        fields=("host", "port"),
    )


async def _connect_data(
    probe: Probe, config: FtpConfig, address: Address, port: int, notes: list[str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A passive data connection, always to the control connection's address."""
    if not 1 <= port <= 65535:
        raise _data_failure(config, address, port, "the server advertised an invalid port", notes)
    try:
        async with asyncio.timeout(min(DATA_CONNECT_S, probe.remaining() * 0.6)):
            return await asyncio.open_connection(address.ip, port)
    except TimeoutError:
        raise _data_failure(config, address, port, "the connection timed out", notes) from None
    except ConnectionRefusedError:
        raise _data_failure(config, address, port, "the connection was refused", notes) from None
    except OSError as exc:
        raise _data_failure(config, address, port, f"the connection failed: {_reason(exc)}", notes) from None


def _data_failure(config: FtpConfig, address: Address, port: int, what: str, notes: list[str]) -> ProbeFailure:
    why = "".join(f"; {note}" for note in dict.fromkeys(notes))
    return ProbeFailure(
        FailureType.CONNECTION_TIMEOUT if "timed out" in what else FailureType.CONNECTION_REFUSED,
        f"Logged in, but the passive data channel to {shown(address)}:{port} did not open ({what}{why})",
        hint="The server's passive ports are not reachable: behind NAT or a firewall, forward the server's "
        "passive port range (vsftpd pasv_min_port/pasv_max_port, pyftpdlib passive_ports) along with the "
        "control port, and set the server's public address for PASV (pasv_address, masquerade_address).",
        retryable=False,
        fields=("host",),
    )


async def _read(reader: asyncio.StreamReader, limit: int, host: str) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the data channel, and whether the server had sent them all."""
    chunks: list[bytes] = []
    total = 0
    try:
        while total < limit:
            chunk = await reader.read(min(65536, limit - total))
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:  # ssl.SSLError included
        raise ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The data channel of {host} broke during the transfer ({_reason(exc)})",
            retryable=True,
            fields=("host",),
        ) from None
    return b"".join(chunks), False


async def _abort(probe: Probe, control: _Control) -> None:
    """``ABOR`` of a transfer read far enough, and its replies read, so the next command's reply is
    its own: 426 (the transfer) then 226 (the ABOR), or 226 (the transfer had ended) then 225."""
    try:
        async with asyncio.timeout(min(2.0, probe.remaining() / 2)):
            await control.send("ABOR")
            previous = 0
            for _ in range(2):
                code, _ = await control.reply()
                if code == 225 or (code == 226 and previous // 100 == 4):
                    return
                previous = code
    except TimeoutError:
        pass


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or type(exc).__name__
    return exc.strerror or type(exc).__name__
