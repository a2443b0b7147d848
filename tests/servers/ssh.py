"""Fixture ``ssh_server``: a real SSH server (asyncssh) with password and public-key logins, SFTP and forwarding.

Usage::

    def test_something(ssh_server: SshServer) -> None:
        config = get_connector("sftp").parse_config(ssh_server.sftp_config(path="/data"))
        tunnel = ssh_server.tunnel()  # an ``ssh_tunnel`` configuration (password login)

What it gives (one server for the whole session, on 127.0.0.1 and a free port, run by an
event loop of its own in a background thread, so it answers whatever the test's loop does):

- ``user`` with ``password``; or the same user with ``private_key`` (OpenSSH format, not
  encrypted) or ``encrypted_key`` + ``passphrase`` (OpenSSH format, bcrypt): the server
  really checks each (its authorized keys are the public halves of these two).
- ``host_key`` (public key line) and ``host_fingerprint`` (SHA256:...) of its host key,
  generated for the session; ``other_host_key``: a key it does NOT have, to pin a mismatch.
- SFTP serving ``root`` (a temp dir, the client's "/"): ``/data`` holds ``a.csv``, ``b.csv``,
  ``report.csv`` and ``sealed.csv`` (mode 000); ``/locked`` has mode 000; ``/sealed`` holds
  only ``only.csv`` (mode 000); ``/empty`` is empty; ``/big`` holds ``large.bin`` (5000
  bytes); ``/many`` holds 1100 subfolders and no file. Tests run as root, who may read
  anything, so the SFTP server enforces modes itself: listing a folder or opening a file
  whose mode grants no read bit is refused with "permission denied", as the real server
  would refuse a normal user.
- direct-tcpip (what a tunnel uses) to 127.0.0.1 or localhost only; every request is
  appended to ``forwards`` as ``(host, port)``, and every authentication attempt to
  ``auth_attempts`` as ``(user, method)``, so tests can count them.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import shutil
import stat
import tempfile
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest


@dataclass(frozen=True)
class SshServer:
    """A running SSH server and the logins it accepts (see the module docstring)."""

    host: str
    port: int
    user: str
    password: str
    private_key: str
    encrypted_key: str
    passphrase: str
    host_key: str
    host_fingerprint: str
    other_host_key: str
    root: Path
    forwards: list[tuple[str, int]] = field(default_factory=list)
    auth_attempts: list[tuple[str, str]] = field(default_factory=list)

    def password_auth(self, password: str | None = None) -> dict[str, Any]:
        return {"type": "password", "password": self.password if password is None else password}

    def key_auth(self, *, encrypted: bool = False) -> dict[str, Any]:
        if encrypted:
            return {"type": "private_key", "private_key": self.encrypted_key, "passphrase": self.passphrase}
        return {"type": "private_key", "private_key": self.private_key}

    def tunnel(self, **overrides: Any) -> dict[str, Any]:
        """An ``ssh_tunnel`` configuration that logs in with the password; override any field."""
        return {"host": self.host, "port": self.port, "user": self.user, "auth": self.password_auth(), **overrides}

    def sftp_config(self, **overrides: Any) -> dict[str, Any]:
        """An ``sftp`` configuration for ``/data`` that logs in with the password; override any field."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "auth": self.password_auth(),
            "path": "/data",
            **overrides,
        }


class _Server(asyncssh.SSHServer):
    def __init__(self, info: SshServer, authorized: list[asyncssh.SSHKey]) -> None:
        self.info = info
        self.authorized = authorized

    def begin_auth(self, username: str) -> bool:
        return True  # every user must authenticate

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        self.info.auth_attempts.append((username, "password"))
        return username == self.info.user and password == self.info.password

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        self.info.auth_attempts.append((username, "publickey"))
        return username == self.info.user and key in self.authorized

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        self.info.forwards.append((dest_host, dest_port))
        # True: asyncssh connects to the destination itself, and refuses the channel if it cannot.
        return dest_host in ("127.0.0.1", "localhost")


class _Sftp(asyncssh.SFTPServer):
    """SFTP chrooted to the test folder, refusing what the file modes refuse (as root they would not)."""

    def __init__(self, chan: asyncssh.SSHServerChannel, root: Path) -> None:
        super().__init__(chan, chroot=str(root).encode())

    def _refuse_unreadable(self, path: bytes) -> None:
        try:
            mode = os.stat(self.map_path(path)).st_mode
        except OSError:
            return  # the real operation reports it
        if not mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH):
            raise PermissionError(errno.EACCES, "Permission denied")

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        self._refuse_unreadable(path)
        async for name in super().scandir(path):
            yield name

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        self._refuse_unreadable(path)
        return super().open(path, pflags, attrs)


def _make_tree(root: Path) -> None:
    data = root / "data"
    data.mkdir()
    (data / "a.csv").write_text("id,name\n1,one\n")
    (data / "b.csv").write_text("id,name\n2,two\n")
    (data / "report.csv").write_text("id\n")
    (data / "sealed.csv").write_text("secret\n")
    (data / "sealed.csv").chmod(0)
    locked = root / "locked"
    locked.mkdir()
    (locked / "inside.csv").write_text("id\n")
    locked.chmod(0)
    sealed = root / "sealed"
    sealed.mkdir()
    (sealed / "only.csv").write_text("id\n")
    (sealed / "only.csv").chmod(0)
    (root / "empty").mkdir()
    big = root / "big"
    big.mkdir()
    (big / "large.bin").write_bytes(b"x" * 5000)
    many = root / "many"  # more entries than the connector reads (connectors.sftp.MAX_LISTED)
    many.mkdir()
    for i in range(1100):
        (many / f"sub{i:04}").mkdir()


class _Thread:
    """The server's own event loop, running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ssh-server", daemon=True)

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture(scope="session")
def ssh_server() -> Iterator[SshServer]:
    """A real SSH/SFTP server on 127.0.0.1 (see the module docstring)."""
    root = Path(tempfile.mkdtemp(prefix="sc-sftp-"))
    _make_tree(root)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    encrypted = asyncssh.generate_private_key("ssh-ed25519")
    passphrase = "pp-" + secrets.token_hex(8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bcrypt warns about 16 rounds, ssh-keygen's own default
        encrypted_key = encrypted.export_private_key("openssh", passphrase, rounds=16).decode()
    runner = _Thread()
    runner.thread.start()
    server: asyncssh.SSHAcceptor | None = None
    try:
        info_fields: dict[str, Any] = {
            "host": "127.0.0.1",
            "user": "tunnel",
            "password": "pw-" + secrets.token_hex(8),
            "private_key": client_key.export_private_key("openssh").decode(),
            # rounds=16 as ssh-keygen does (asyncssh's default, 128, takes seconds to decrypt)
            "encrypted_key": encrypted_key,
            "passphrase": passphrase,
            "host_key": host_key.export_public_key().decode().strip(),
            "host_fingerprint": host_key.get_fingerprint("sha256"),
            "other_host_key": asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip(),
            "root": root,
        }
        authorized = [client_key.convert_to_public(), encrypted.convert_to_public()]
        holder: dict[str, SshServer] = {}

        async def start() -> asyncssh.SSHAcceptor:
            return await asyncssh.create_server(
                lambda: _Server(holder["info"], authorized),
                "127.0.0.1",
                0,
                server_host_keys=[host_key],
                sftp_factory=lambda chan: _Sftp(chan, root),
                allow_scp=False,
                agent_forwarding=False,
                x11_forwarding=False,
                login_timeout=30,
            )

        server = runner.run(start())
        assert server is not None
        port = int(server.sockets[0].getsockname()[1])
        holder["info"] = SshServer(port=port, **info_fields)
        yield holder["info"]
    finally:
        if server is not None:
            acceptor = server

            async def stop() -> None:
                acceptor.close()
                await acceptor.wait_closed()

            try:
                runner.run(stop(), timeout=5)
            except Exception:  # noqa: S110 - teardown: the thread is a daemon anyway
                pass
        runner.stop()
        for path in (root / "locked", root / "data" / "sealed.csv", root / "sealed" / "only.csv"):
            path.chmod(0o700)
        shutil.rmtree(root, ignore_errors=True)
