"""Fixture ``smb_server``: a real Samba (smbd) that really checks passwords.

Usage::

    def test_something(smb_server: Samba) -> None:
        config = get_connector("smb").parse_config(smb_server.config())

What it gives (a frozen :class:`Samba`, the same for the whole session):

- ``host``: ``127.0.0.1``; ``port``: a free port smbd listens on (SMB 2/3 only).
- ``user``/``password``: an account of Samba's own password database (a random password), mapped
  to the Unix user ``USER`` (made once, if missing: Samba needs one behind every account).
- shares: ``docs`` (``reports/2025.txt``; ``empty/``; ``locked/``, a folder the user may not
  list; ``sealed/``, a folder whose one file the user may not read; ``crowd/``, many subfolders
  and no file; ``long/``, one file with a 250-character name), ``denied`` (``valid users`` is
  another account) and ``public`` (``guest ok``; unknown users are mapped to guest).
- ``config(**overrides)``: the ``smb`` connector configuration for ``docs``/``reports``.

How: ``smbd --foreground`` (not the machine's service) with its own smb.conf, and its own
private, lock, state, cache and pid folders and ``tdbsam`` password database in a temp dir;
the account is added with ``smbpasswd -s -a`` against that configuration. It needs root (smbd
changes to the logged-in user's uid, so a mode 000 file is unreadable to it) and Debian's
``samba`` package; without them the fixture fails.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port, wait_for_port

SMBD = "/usr/sbin/smbd"
SMBPASSWD = "/usr/bin/smbpasswd"
USER = "sourcecheck-smb"
START_TIMEOUT = 20.0
REPORT = b"year,revenue\n2025,1200000\n"
CROWD = 2000
LONG_NAME = "n" * 246 + ".txt"


@dataclass(frozen=True)
class Samba:
    """A running smbd and the account and shares made for the tests (see module doc)."""

    host: str
    port: int
    user: str
    password: str

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The ``smb`` connector configuration for share ``docs``, folder ``reports``, with ``overrides``."""
        base: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "share": "docs",
            "folder": "reports",
            "username": self.user,
            "password": self.password,
        }
        return {**base, **overrides}


def _config(base: Path, port: int) -> str:
    shares = base / "shares"
    return f"""
[global]
    server role = standalone server
    workgroup = WORKGROUP
    netbios name = SOURCECHECK
    smb ports = {port}
    interfaces = 127.0.0.1
    bind interfaces only = yes
    disable netbios = yes
    server min protocol = SMB2_02
    private dir = {base}/private
    lock directory = {base}/lock
    state directory = {base}/state
    cache directory = {base}/cache
    pid directory = {base}/run
    ncalrpc dir = {base}/ncalrpc
    passdb backend = tdbsam:{base}/private/passdb.tdb
    log file = {base}/log.%m
    log level = 1
    map to guest = Bad User
    guest account = nobody
    load printers = no
    printing = bsd
    printcap name = /dev/null
    disable spoolss = yes
    usershare path =

[docs]
    path = {shares}/docs
    read only = yes

[denied]
    path = {shares}/denied
    valid users = someoneelse

[public]
    path = {shares}/public
    guest ok = yes
    read only = yes
"""


def _unix_user() -> pwd.struct_passwd:
    """The Unix user behind the Samba account, made once (idempotent: kept across sessions)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(USER)


def _shares(base: Path) -> None:
    shares = base / "shares"
    docs = shares / "docs"
    (docs / "reports").mkdir(parents=True)
    (docs / "reports" / "2025.txt").write_bytes(REPORT)
    (docs / "empty").mkdir()
    (docs / "locked").mkdir(mode=0o700)
    (docs / "locked" / "hidden.txt").write_bytes(b"hidden\n")
    os.chmod(docs / "locked", 0o700)  # root's: the account may not list it
    (docs / "sealed").mkdir()
    (docs / "sealed" / "sealed.txt").write_bytes(b"sealed\n")
    os.chmod(docs / "sealed" / "sealed.txt", 0)  # listed, but unreadable to the account
    for index in range(CROWD):
        (docs / "crowd" / f"sub-{index:04d}").mkdir(parents=True)
    (docs / "long").mkdir()
    (docs / "long" / LONG_NAME).write_bytes(b"long\n")
    (shares / "denied").mkdir()
    (shares / "denied" / "a.txt").write_bytes(b"a\n")
    (shares / "public").mkdir()
    (shares / "public" / "readme.txt").write_bytes(b"public\n")
    for path in (base, shares, *shares.iterdir()):
        os.chmod(path, 0o755)  # noqa: S103 - smbd, as the account, must reach the shares


@pytest.fixture(scope="session")
def smb_server() -> Iterator[Samba]:
    """A Samba with one account and the shares above; see the module docstring."""
    if not os.path.exists(SMBD):
        raise RuntimeError(f"{SMBD} is missing: apt-get install samba")
    if os.geteuid() != 0:
        raise RuntimeError("the smb_server fixture runs smbd as root (it changes to the account's uid)")
    _unix_user()
    base = Path(tempfile.mkdtemp(prefix="sourcecheck-samba-"))
    for sub in ("private", "lock", "state", "cache", "run", "ncalrpc"):
        (base / sub).mkdir()
    _shares(base)
    port = free_port()
    conf = base / "smb.conf"
    conf.write_text(_config(base, port))
    password = f"Smb-{secrets.token_hex(8)}"
    subprocess.run(
        [SMBPASSWD, "-c", str(conf), "-s", "-a", USER],
        input=f"{password}\n{password}\n".encode(),
        check=True,
        capture_output=True,
    )
    # A session of its own: smbd signals its whole process group when it stops (pytest's, otherwise).
    process = subprocess.Popen(
        [SMBD, "--foreground", "--no-process-group", f"--configfile={conf}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        try:
            wait_for_port(port, timeout=START_TIMEOUT)
        except TimeoutError:
            process.kill()
            _, err = process.communicate(timeout=5)
            raise RuntimeError(f"smbd did not start: {err.decode(errors='replace')[-2000:]}") from None
        yield Samba(host="127.0.0.1", port=port, user=USER, password=password)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(base, ignore_errors=True)
