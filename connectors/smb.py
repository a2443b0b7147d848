"""The ``smb`` connector: can this user open this network share (SMB 2/3) and read this folder?

Steps: ``resolve`` and ``tcp`` (connectors.network); ``negotiate``: the SMB dialect, signing
and encryption the server offers; ``authenticate``: session setup with NTLM; ``access``: a tree
connect to the share, the folder opened and listed, and the first FIRST_BYTES of its first file.

smbprotocol speaks the protocol, in this module's own threads, on the ``tcp`` step's socket:
the transport it would open to a host name is replaced by connectors.seams.smbprotocol's
:class:`BoundedTransport`, which reads every packet within its bounds. Authentication is
NTLM only: Kerberos would find and contact a KDC by DNS, outside the egress policy. A deadline
reached while a thread waits shuts the socket down, which ends every wait of smbprotocol.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import Field
from smbprotocol import Dialects
from smbprotocol.connection import SecurityMode
from smbprotocol.exceptions import (
    AccessDenied,
    BadNetworkName,
    EndOfFile,
    LogonFailure,
    NoMoreFiles,
    ObjectNameInvalid,
    ObjectNameNotFound,
    ObjectPathNotFound,
    PasswordExpired,
    SMBAuthenticationError,
    SMBException,
    SMBResponseException,
    StatusNotADirectory,
    WrongPassword,
)
from smbprotocol.file_info import FileAttributes, FileInformationClass
from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    DirectoryAccessMask,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    Open,
    ShareAccess,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from connectors.base import FIRST_BYTES, Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import DestinationHost, DestinationPort, Name
from connectors.network import connect_tcp, resolve
from connectors.seams.smbprotocol import BoundedTransport, Oversized, PinnedConnection, Smb1Answer
from connectors.text import server_text
from connectors.threads import ThreadPool

T = TypeVar("T")

SMB_THREADS = 8
"""Threads of each process's own pool for smbprotocol's blocking calls (one per check at a time)."""

LISTING_BYTES = 8 * 1024
"""The output buffer asked for in each QUERY_DIRECTORY (a few dozen entries)."""

MAX_LISTINGS = 8
"""QUERY_DIRECTORY requests at most while looking for the first file (past subfolders)."""

MAX_NAME = 120
"""Characters of a server-supplied name shown in a message."""

_threads = ThreadPool(SMB_THREADS, "smb")

_SHARE = r"^[^\\/\x00-\x1f\x7f:*?\"<>|]+$"
_DIALECTS = {
    Dialects.SMB_2_0_2: "2.0.2",
    Dialects.SMB_2_1_0: "2.1",
    Dialects.SMB_3_0_0: "3.0",
    Dialects.SMB_3_0_2: "3.0.2",
    Dialects.SMB_3_1_1: "3.1.1",
}


class SmbConfig(ConnectorConfig):
    """Where the SMB server is, who logs in, and which share and folder must be readable."""

    host: DestinationHost = Field(
        title="Host",
        description="Host name or IP address of the file server (no scheme, no \\\\, no share).",
        examples=["files.example.com", "10.0.0.40"],
    )
    port: DestinationPort = Field(445, title="Port", description="TCP port of SMB (445).", examples=[445])
    share: str = Field(
        min_length=1,
        max_length=80,
        pattern=_SHARE,
        title="Share",
        description="The share's name, as in \\\\host\\share (without the host or any slash).",
        examples=["docs", "Finance"],
    )
    folder: Name = Field(
        "",
        max_length=1024,
        title="Folder",
        description="The folder inside the share to read, with / or \\ between its parts; empty for the share's "
        "top folder.",
        examples=["reports/2025", ""],
    )
    username: Name = Field(
        min_length=1,
        max_length=256,
        title="User name",
        description="The account that logs in (without the domain: set that in domain).",
        examples=["reader"],
    )
    password: Secret = Field(title="Password", description="The account's password.")
    domain: Name = Field(
        "",
        max_length=255,
        title="Domain",
        description="The account's domain or workgroup (Active Directory: the NetBIOS domain name); empty for a "
        "local account of the server.",
        examples=["CORP", ""],
    )
    require_encryption: bool = Field(
        False,
        title="Require encryption",
        description="Refuse a session that is not encrypted (SMB 3 encryption).",
        examples=[False],
    )


class SmbConnector(Connector):
    name = "smb"
    title = "Network drive (SMB / CIFS)"
    category = "files"
    documentation_url = "https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-smb2/"
    config_model = SmbConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "negotiate", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {"host": host, "port": port, "share": "docs", "username": "reader", "password": "example-password"}

    async def check(self, config: SmbConfig, probe: Probe) -> None:
        address, sock = await connect_tcp(probe, await resolve(probe, config.host, config.port), keep=True)
        client = _Client(BoundedTransport(sock), config, probe)
        # The checked IP, never the host name: whatever smbprotocol does with it stays on that address.
        connection = PinnedConnection(client.transport, address.ip, config.port)
        try:
            async with probe.step("negotiate") as step:
                # Past the deadline, so that the deadline (a timeout failure) ends the wait, not this.
                timeout = math.ceil(probe.remaining()) + 1
                await client.run(lambda: connection.connect(timeout=timeout), _not_smb)
                step.message = _negotiated(connection)
            async with probe.step("authenticate") as step:
                session = Session(
                    connection,
                    config.username if not config.domain else f"{config.domain}\\{config.username}",
                    config.password.get_secret_value(),
                    require_encryption=config.require_encryption,
                    auth_protocol="ntlm",
                )
                await client.run(session.connect, _login_refused)
                step.message = _logged_in(config, session)
            async with probe.step("access") as step:
                step.message = await _access(client, session)
        finally:
            client.transport.close()


class _Client:
    """One check's connection: runs smbprotocol's blocking calls and turns their errors into failures."""

    def __init__(self, transport: BoundedTransport, config: SmbConfig, probe: Probe) -> None:
        self.transport = transport
        self.config = config
        self.probe = probe

    async def run(
        self, work: Callable[[], T], refused: Callable[[SmbConfig, SMBResponseException], ProbeFailure] | None = None
    ) -> T:
        """``work()`` in an smb thread. A status the server answered goes to ``refused`` (when
        given); cancelled (the deadline), the socket is shut down so that the thread's wait ends."""
        config = self.config
        try:
            return await _threads.run(work)
        except asyncio.CancelledError:
            self.transport.shutdown()
            raise
        except Oversized as exc:
            raise ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"The server at {config.host} sent {exc}: not an SMB server this check reads",
                hint="Check that host and port are those of an SMB file server (port 445).",
                fields=("host", "port"),
            ) from None
        except Smb1Answer:
            raise ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"The server at {config.host} speaks only SMB1, an obsolete and insecure protocol",
                hint="Enable SMB 2 or 3 on the server (Samba: server min protocol = SMB2; Windows: it is on by "
                "default); SMB1 is not supported.",
                fields=("host", "port"),
            ) from None
        except SMBResponseException as exc:
            if refused is not None:
                raise refused(config, exc) from None
            raise _status_failure(config, exc) from None
        except SMBAuthenticationError:
            raise _bad_login(config) from None
        except SMBException as exc:
            raise _smb_failure(config, exc) from None
        except OSError as exc:
            raise ProbeFailure(
                FailureType.UNEXPECTED_RESPONSE,
                f"The connection to {config.host} was lost ({exc.strerror or type(exc).__name__})",
                hint="Check that host and port are those of an SMB file server.",
                retryable=True,
                fields=("host", "port"),
            ) from None
        except (ValueError, KeyError, IndexError, struct.error):
            # smbprotocol's parsers (and its receive thread) on bytes that are not SMB 2/3.
            raise _garbled(config) from None


def _garbled(config: SmbConfig) -> ProbeFailure:
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The server at {config.host} did not answer like an SMB 2/3 server",
        hint="Check that host and port are those of an SMB file server (port 445).",
        fields=("host", "port"),
    )


def _status(exc: SMBResponseException) -> str:
    return f"NTSTATUS 0x{int(exc.status):08x}"


def _status_failure(config: SmbConfig, exc: SMBResponseException) -> ProbeFailure:
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The SMB server at {config.host} refused the request ({_status(exc)})",
        fields=("host", "port"),
    )


def _smb_failure(config: SmbConfig, exc: SMBException) -> ProbeFailure:
    """What smbprotocol itself refused (its messages hold no credential)."""
    text = server_text(str(exc), 300)
    if "guest" in text:
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"The SMB server at {config.host} let {config.username!r} in only as a guest: it does not know the "
            "account, or maps a wrong password to guest",
            hint="Check username and domain (an account of the server or of its domain) and the password; "
            "sourcecheck refuses guest sessions (they cannot be signed, and read what any guest may).",
            fields=("username", "domain", "password"),
        )
    if "encryption" in text:
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The SMB server at {config.host} cannot encrypt this session (require_encryption is set)",
            hint="Enable SMB 3 encryption on the server (Samba: server smb encrypt = desired), or set "
            "require_encryption to false.",
            fields=("require_encryption",),
        )
    if "signature" in text:
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"A message from {config.host} failed its signature check",
            hint="Something on the path changes SMB messages, or the server is not who it claims: check the "
            "network path to the server.",
            fields=("host",),
        )
    if "closed" in text.lower():
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The server at {config.host} closed the connection",
            hint="Check that host and port are those of an SMB 2/3 server, and the server's log for why it hung up.",
            retryable=True,
            fields=("host", "port"),
        )
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The SMB session with {config.host} failed ({text})",
        fields=("host", "port"),
    )


def _not_smb(config: SmbConfig, exc: SMBResponseException) -> ProbeFailure:
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The server at {config.host} refused SMB 2/3 negotiation ({_status(exc)})",
        hint="Enable SMB 2 or 3 on the server (SMB1 is not supported), and check that port is the SMB port.",
        fields=("host", "port"),
    )


def _negotiated(connection: PinnedConnection) -> str:
    dialect = _DIALECTS.get(connection.dialect, f"0x{int(connection.dialect):04x}")
    server_requires = bool(int(connection.server_security_mode or 0) & SecurityMode.SMB2_NEGOTIATE_SIGNING_REQUIRED)
    signing = "the server requires signing" if server_requires else "signing optional for the server"
    encryption = ", encryption offered" if connection.supports_encryption else ""
    return f"SMB {dialect} ({signing}{encryption})"


def _bad_login(config: SmbConfig) -> ProbeFailure:
    who = f"{config.domain}\\{config.username}" if config.domain else config.username
    return ProbeFailure(
        FailureType.AUTHENTICATION_FAILED,
        f"The SMB server at {config.host} refused the user name or password of {who!r}",
        hint="Check username, password and domain (empty for an account of the server itself; the NetBIOS domain "
        "name for an Active Directory account).",
        fields=("username", "password", "domain"),
    )


def _login_refused(config: SmbConfig, exc: SMBResponseException) -> ProbeFailure:
    if isinstance(exc, LogonFailure | WrongPassword):
        return _bad_login(config)
    if isinstance(exc, PasswordExpired):
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"The password of {config.username!r} has expired",
            hint="Set a new password for the account, then update password here.",
            fields=("password",),
        )
    if isinstance(exc, AccessDenied):
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"The SMB server at {config.host} does not let {config.username!r} log in ({_status(exc)})",
            hint="The account is disabled, locked out, outside its logon hours or not allowed on this server: ask "
            "the server's administrator.",
            fields=("username",),
        )
    return ProbeFailure(
        FailureType.AUTHENTICATION_FAILED,
        f"The SMB server at {config.host} refused the login of {config.username!r} ({_status(exc)})",
        hint="Check username, password and domain.",
        fields=("username", "password", "domain"),
    )


def _logged_in(config: SmbConfig, session: Session) -> str:
    protection = "encrypted" if session.encrypt_data else "signed"
    return f"Logged in as {config.username} (NTLM, {protection} session)"


def _path(folder: str) -> str:
    """``folder`` as SMB names it: backslashes, no leading or trailing one."""
    return "\\".join(part for part in folder.replace("/", "\\").split("\\") if part)


def _share_refused(config: SmbConfig, exc: SMBResponseException) -> ProbeFailure:
    if isinstance(exc, BadNetworkName):
        return ProbeFailure(
            FailureType.NOT_FOUND,
            f"The SMB server at {config.host} has no share {config.share!r}",
            hint="Check share: the name after \\\\host\\ (not a folder inside it); `smbclient -L host` lists them.",
            fields=("share",),
        )
    if isinstance(exc, AccessDenied):
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"{config.username!r} may not open the share {config.share!r}",
            hint=f"Give {config.username!r} access to the share (its share permissions; Samba: valid users).",
            fields=("share", "username"),
        )
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The SMB server at {config.host} refused to connect to the share {config.share!r} ({_status(exc)})",
        fields=("share",),
    )


def _folder_refused(config: SmbConfig, exc: SMBResponseException) -> ProbeFailure:
    shown = config.folder or "(the share's top folder)"
    if isinstance(exc, ObjectNameNotFound | ObjectPathNotFound | ObjectNameInvalid):
        return ProbeFailure(
            FailureType.NOT_FOUND,
            f"The share {config.share!r} has no folder {shown!r}",
            hint="Check folder: a path inside the share (reports/2025), not including the share's name.",
            fields=("folder",),
        )
    if isinstance(exc, StatusNotADirectory):
        return ProbeFailure(
            FailureType.NOT_FOUND,
            f"{shown!r} in the share {config.share!r} is a file, not a folder",
            hint="Set folder to the folder that holds the files.",
            fields=("folder",),
        )
    if isinstance(exc, AccessDenied):
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"{config.username!r} may not list the folder {shown!r} in the share {config.share!r}",
            hint=f"Give {config.username!r} the right to list the folder (NTFS: List folder contents; Unix: r and x).",
            fields=("folder",),
        )
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The SMB server at {config.host} refused to open the folder {shown!r} ({_status(exc)})",
        fields=("folder",),
    )


def _file_refused(config: SmbConfig, name: str, exc: SMBResponseException) -> ProbeFailure:
    if isinstance(exc, AccessDenied):
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"{config.username!r} may list the folder but not read its file {name!r}",
            hint=f"Give {config.username!r} the right to read the folder's files (NTFS: Read; Unix: r).",
            fields=("folder",),
        )
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The SMB server at {config.host} refused to read the file {name!r} ({_status(exc)})",
        fields=("folder",),
    )


_SHARING = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE


def _open_folder(tree: TreeConnect, path: str) -> Open:
    folder = Open(tree, path)
    folder.create(
        ImpersonationLevel.Impersonation,
        DirectoryAccessMask.FILE_LIST_DIRECTORY | DirectoryAccessMask.FILE_READ_ATTRIBUTES,
        FileAttributes.FILE_ATTRIBUTE_DIRECTORY,
        _SHARING,
        CreateDisposition.FILE_OPEN,
        CreateOptions.FILE_DIRECTORY_FILE,
    )
    return folder


def _first_file(folder: Open) -> tuple[str | None, int, int]:
    """The first regular file's name in ``folder``, with the entries and subfolders seen (bounded)."""
    entries = subfolders = 0
    for _ in range(MAX_LISTINGS):
        try:
            listed = folder.query_directory(
                "*", FileInformationClass.FILE_DIRECTORY_INFORMATION, max_output=LISTING_BYTES
            )
        except NoMoreFiles:
            break
        for entry in listed:
            name = server_text(entry["file_name"].get_value().decode("utf-16-le", errors="replace"), 1024)
            if name in (".", ".."):
                continue
            entries += 1
            if int(entry["file_attributes"].get_value()) & FileAttributes.FILE_ATTRIBUTE_DIRECTORY:
                subfolders += 1
                continue
            return name, entries, subfolders
    return None, entries, subfolders


def _read_start(tree: TreeConnect, path: str) -> bytes:
    file = Open(tree, path)
    file.create(
        ImpersonationLevel.Impersonation,
        FilePipePrinterAccessMask.FILE_READ_DATA | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES,
        FileAttributes.FILE_ATTRIBUTE_NORMAL,
        _SHARING,
        CreateDisposition.FILE_OPEN,
        CreateOptions.FILE_NON_DIRECTORY_FILE,
    )
    try:
        return bytes(file.read(0, min(FIRST_BYTES, int(tree.session.connection.max_read_size))))
    except EndOfFile:
        return b""


async def _access(client: _Client, session: Session) -> str:
    """Step ``access``: the share, the folder listed up to its first file, that file's first bytes."""
    config = client.config
    tree = TreeConnect(session, f"\\\\{config.host}\\{config.share}")
    await client.run(tree.connect, _share_refused)
    path = _path(config.folder)
    place = f"share {config.share!r}" + (f", folder {config.folder!r}" if path else "")
    folder = await client.run(lambda: _open_folder(tree, path), _folder_refused)
    name, entries, subfolders = await client.run(lambda: _first_file(folder), _folder_refused)
    if name is None:
        if not entries:
            client.probe.warn(
                WarningCode.EMPTY_LOCATION,
                f"The folder is empty ({place})",
                hint="Check share and folder (a sync reads only this folder), or put some files in it.",
            )
            return f"Listed {place}: empty"
        return f"Listed {place}: {subfolders} subfolders, no file among its first {entries} entries"
    file_path = f"{path}\\{name}" if path else name
    shown = server_text(name, MAX_NAME)
    data = await client.run(lambda: _read_start(tree, file_path), lambda c, e: _file_refused(c, shown, e))
    return f"Listed {place}; read {len(data)} bytes of its first file {shown!r}"
