"""The ``sftp`` connector: can this user log in to this SFTP server and read this folder?

Steps: ``resolve`` and ``tcp`` (connectors.network), ``ssh`` (the handshake and the host
key, pinned or reported) and ``authenticate`` (password or private key), both from
connectors.ssh, then ``access``: the SFTP subsystem starts, the path exists and is a
folder, its entries can be listed (at most :data:`MAX_LISTED` of them are read), and the
first :data:`~connectors.base.FIRST_BYTES` bytes of its first regular file (by name) can be
read: listing needs the folder's permissions, reading the file's. A folder without a file is
an ``empty_location`` warning.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import AsyncGenerator
from typing import Any, cast

import asyncssh
from pydantic import Field

from connectors.base import FIRST_BYTES, Connector, ConnectorConfig, Probe
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import DestinationHost, DestinationPort
from connectors.ssh import HOST_KEY_DESCRIPTION, HOST_KEY_EXAMPLES, HostKey, SshAuth, SshUser, close_quietly, ssh_login

MAX_LISTED = 1000
"""Entries of the folder read at most: a huge folder must not use up the deadline."""


class SftpConfig(ConnectorConfig):
    """Where the SFTP server is, who logs in, and which folder must be readable."""

    host: DestinationHost = Field(
        title="Host",
        description="Host name or IP address of the SFTP (SSH) server (no scheme, no user, no port).",
        examples=["sftp.example.com", "10.0.0.20"],
    )
    port: DestinationPort = Field(22, title="Port", description="TCP port of the SSH server.", examples=[22])
    user: SshUser = Field(
        title="User",
        description="The user to log in as.",
        examples=["exports"],
    )
    auth: SshAuth = Field(
        title="Authentication",
        description="How to log in: a password, or a private key (and its passphrase, if any).",
        examples=[{"type": "password", "password": "correct-horse-battery-staple"}],
    )
    host_key: HostKey = Field(None, title="Host key", description=HOST_KEY_DESCRIPTION, examples=HOST_KEY_EXAMPLES)
    path: str = Field(
        min_length=1,
        max_length=4096,
        pattern=r"^[^\x00]+$",
        title="Folder",
        description="The folder to read: absolute (/data/exports), or relative to the user's login folder.",
        examples=["/data/exports", "incoming"],
    )


class SftpConnector(Connector):
    name = "sftp"
    title = "SFTP"
    category = "files"
    documentation_url = "https://man.openbsd.org/sftp-server"
    config_model = SftpConfig
    steps = ("resolve", "tcp", "ssh", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "host": host,
            "port": port,
            "user": "reader",
            "auth": {"type": "password", "password": "example-password"},
            "path": "/data",
        }

    async def check(self, config: SftpConfig, probe: Probe) -> None:
        conn = await ssh_login(probe, config, auth_step="authenticate")
        try:
            async with probe.step("access") as step:
                step.message = await _check_folder(conn, config, probe)
        finally:
            await close_quietly(conn)


async def _check_folder(conn: asyncssh.SSHClientConnection, config: SftpConfig, probe: Probe) -> str:
    """Step ``access``: the folder exists, can be listed, and a file in it can be read."""
    try:
        sftp = await conn.start_sftp_client()
    except (asyncssh.ChannelOpenError, asyncssh.SFTPError, asyncssh.Error) as exc:
        raise ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The server does not offer SFTP to user '{config.user}' ({_reason(exc)})",
            hint="Enable the sftp subsystem on the server (sshd_config: Subsystem sftp internal-sftp) for this user; "
            "a forced command or a shell-only account cannot serve files.",
            fields=("user",),
        ) from None
    try:
        return await _inspect(sftp, config, probe)
    except asyncssh.SFTPError as exc:
        raise ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The SFTP server answered '{_reason(exc)}' for '{config.path}'",
            fields=("path",),
        ) from None
    finally:
        sftp.exit()


async def _inspect(sftp: asyncssh.SFTPClient, config: SftpConfig, probe: Probe) -> str:
    path, user = config.path, config.user
    try:
        attrs = await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        home = await _home(sftp)
        relative = "" if path.startswith("/") else f" (relative paths start from '{home}', the login folder)"
        raise ProbeFailure(
            FailureType.NOT_FOUND,
            f"folder '{path}' does not exist{relative}",
            hint=f"Check the path (case matters). The login folder of '{user}' is '{home}'.",
            fields=("path",),
        ) from None
    except asyncssh.SFTPPermissionDenied:
        raise ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"user '{user}' may not see '{path}' (permission denied)",
            hint=f"Let '{user}' enter every folder above it (execute permission), or choose a folder the user can "
            "reach.",
            fields=("path", "user"),
        ) from None
    if not _is_dir(attrs):
        parent = posixpath.dirname(path.rstrip("/")) or "/"
        raise ProbeFailure(
            FailureType.NOT_FOUND,
            f"'{path}' is a file, not a folder",
            hint=f"Set path to the folder that holds the files (here maybe '{parent}').",
            fields=("path",),
        )
    entries: list[asyncssh.SFTPName] = []
    names = cast(AsyncGenerator[asyncssh.SFTPName, None], sftp.scandir(path))
    try:
        async for name in names:
            if name.filename not in (".", ".."):
                entries.append(name)
                if len(entries) >= MAX_LISTED:
                    break
    except asyncssh.SFTPPermissionDenied:
        raise ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"user '{user}' may not list folder '{path}' (permission denied)",
            hint=f"Give '{user}' read and execute permission on the folder (e.g. chmod o+rx, or a group '{user}' "
            "is in).",
            fields=("path", "user"),
        ) from None
    finally:
        await names.aclose()  # closes the directory handle when the listing stopped early
    count = f"{len(entries)}+" if len(entries) >= MAX_LISTED else str(len(entries))
    files = sorted(str(e.filename) for e in entries if _is_file(e.attrs))
    if not files:
        more = f" among the first {MAX_LISTED} entries" if len(entries) >= MAX_LISTED else ""
        probe.warn(
            WarningCode.EMPTY_LOCATION,
            f"Folder '{path}' has no file{more} ({count} entries)",
            hint="Check path if you expected files there (subfolders are not read); the login itself works.",
        )
        return f"Folder '{path}' is readable ({count} entries, no files in it)"
    first = files[0]
    shown = _shown(first)
    try:
        async with sftp.open(posixpath.join(path, first), "rb") as f:
            data = await f.read(FIRST_BYTES)
    except asyncssh.SFTPPermissionDenied:
        raise ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"user '{user}' may list folder '{path}' but not read its files ('{shown}': permission denied)",
            hint=f"Give '{user}' read permission on the files (e.g. chmod o+r, or a group '{user}' is in).",
            fields=("path", "user"),
        ) from None
    return f"Folder '{path}' is readable ({count} entries; read the first {len(data)} bytes of '{shown}')"


def _is_dir(attrs: asyncssh.SFTPAttrs) -> bool:
    if attrs.permissions is not None:
        return stat.S_ISDIR(attrs.permissions)
    return attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY


def _is_file(attrs: asyncssh.SFTPAttrs) -> bool:
    if attrs.permissions is not None:
        return stat.S_ISREG(attrs.permissions)
    return attrs.type == asyncssh.FILEXFER_TYPE_REGULAR


async def _home(sftp: asyncssh.SFTPClient) -> str:
    try:
        return str(await sftp.realpath("."))
    except asyncssh.SFTPError:
        return "?"


def _shown(name: str) -> str:
    """A file name as put in a message: printable, at most 200 characters."""
    text = "".join(c if c.isprintable() else "?" for c in name)
    return text if len(text) <= 200 else text[:199] + "…"


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc).strip()
    return text[:200] or type(exc).__name__
