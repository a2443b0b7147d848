"""Fixture ``imap_server``: a real Dovecot IMAP server that really checks passwords.

Usage::

    def test_something(imap_server: Dovecot) -> None:
        config = get_connector("imap").parse_config(imap_server.config())

What it gives (a frozen :class:`Dovecot`, the same for the whole session):

- ``host``: ``127.0.0.1``; ``port``: plain IMAP with STARTTLS; ``tls_port``: IMAP over TLS (imaps).
- ``user``/``password``: a mail user (passwd-file, a random password).
- ``folder``: ``INBOX``, holding one message; ``empty_folder``: ``Empty``, a folder with no message;
  ``locked_folder``: ``Locked``, whose one message the mail process may not read (chmod 000).
- ``ca_pem``: the CA that signed the server's certificate (for ``127.0.0.1`` and ``localhost``).
- ``config(**overrides)``: the ``imap`` connector configuration (implicit TLS, LOGIN).

How: ``dovecot -F`` (not a daemon, not the machine's service) with its own configuration,
state and maildirs in a temp dir, on two free ports. Run as root, mail is read as ``nobody``
(so a file of mode 000 is unreadable); otherwise everything runs as the current user.
The binary comes from Debian's ``dovecot-imapd``; without it the fixture fails.

:func:`start_scripted_imap` runs a small scripted server instead, for what Dovecot here does
not do: Gmail's XOAUTH2 dialogue (Dovecot would need an OAuth introspection server),
LOGINDISABLED on a loopback connection, ``[UNAVAILABLE]``, and hostile answers.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port, wait_for_port
from tests.servers.http import TestCA

DOVECOT = "/usr/sbin/dovecot"
START_TIMEOUT = 15.0

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Reader <reader@example.com>\r\n"
    b"Subject: Quarterly report\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <report-1@example.com>\r\n"
    b"\r\n"
    b"The quarterly report is attached.\r\n"
)


@dataclass(frozen=True)
class Dovecot:
    """A running Dovecot and the user and folders made for the tests (see module doc)."""

    host: str
    port: int
    tls_port: int
    user: str
    password: str
    folder: str
    empty_folder: str
    locked_folder: str
    ca_pem: str

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The ``imap`` connector configuration over implicit TLS, with ``overrides``."""
        base: dict[str, Any] = {
            "host": self.host,
            "port": self.tls_port,
            "security": "tls",
            "ca_cert": self.ca_pem,
            "username": self.user,
            "auth": {"type": "password", "password": self.password},
        }
        return {**base, **overrides}


def _maildir(root: Path, message: bytes | None, owner: tuple[int, int]) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    path = root
    if message is not None:
        path = root / "cur" / f"1764842400.M1P1.sourcecheck,S={len(message)}:2,S"
        path.write_bytes(message)
    for dirpath, _, files in os.walk(root):
        os.chown(dirpath, *owner)
        for name in files:
            os.chown(os.path.join(dirpath, name), *owner)
    return path


def _config(base: Path, port: int, tls_port: int, internal: str, login: str) -> str:
    return f"""
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
ssl = yes
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{base}/mail/%u
passdb {{
  driver = passwd-file
  args = {base}/users
}}
userdb {{
  driver = passwd-file
  args = {base}/users
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


@pytest.fixture(scope="session")
def imap_server(test_ca: TestCA) -> Iterator[Dovecot]:
    """A Dovecot with one password user, a folder with a message and an empty one; see the module docstring."""
    if not os.path.exists(DOVECOT):
        raise RuntimeError(f"{DOVECOT} is missing: apt-get install dovecot-imapd")
    base = Path(tempfile.mkdtemp(prefix="sourcecheck-dovecot-"))
    os.chmod(base, 0o755)  # noqa: S103 - the mail process (another user) must reach its maildir
    if os.geteuid() == 0:
        internal, login, mail_user = "dovecot", "dovenull", pwd.getpwnam("nobody")
    else:
        me = pwd.getpwuid(os.geteuid())
        internal = login = me.pw_name
        mail_user = me
    owner = (mail_user.pw_uid, mail_user.pw_gid)
    user, password = "reader", f"mail-{secrets.token_hex(8)}"
    cert, key = test_ca.issue(("localhost", "127.0.0.1"))
    (base / "cert.pem").write_text(cert)
    (base / "key.pem").write_text(key)
    os.chmod(base / "key.pem", 0o600)
    home = base / "home" / user
    home.mkdir(parents=True)
    os.chown(home, *owner)
    (base / "users").write_text(f"{user}:{{PLAIN}}{password}:{owner[0]}:{owner[1]}::{home}::\n")
    mail = base / "mail"
    mail.mkdir()
    os.chown(mail, *owner)
    _maildir(mail / user, MESSAGE, owner)
    _maildir(mail / user / ".Empty", None, owner)
    locked = _maildir(mail / user / ".Locked", MESSAGE, owner)
    (mail / user / "subscriptions").write_text("Empty\nLocked\n")
    os.chown(mail / user / "subscriptions", *owner)
    port, tls_port = free_port(), free_port()
    (base / "dovecot.conf").write_text(_config(base, port, tls_port, internal, login))
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(base / "dovecot.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        try:
            wait_for_port(tls_port, timeout=START_TIMEOUT)
            wait_for_port(port, timeout=START_TIMEOUT)
        except TimeoutError:
            process.kill()
            _, err = process.communicate(timeout=5)
            log = (base / "dovecot.log").read_text() if (base / "dovecot.log").exists() else ""
            raise RuntimeError(f"dovecot did not start: {err.decode(errors='replace')}{log}") from None
        if mail_user.pw_uid != os.geteuid():
            os.chmod(locked, 0)  # unreadable for the mail process (root would read it anyway)
        yield Dovecot(
            host="127.0.0.1",
            port=port,
            tls_port=tls_port,
            user=user,
            password=password,
            folder="INBOX",
            empty_folder="Empty",
            locked_folder="Locked",
            ca_pem=test_ca.pem,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(base, ignore_errors=True)


XOAUTH2_USER = "reader@example.com"
XOAUTH2_TOKEN = "ya29.stub-token-5f0c2a9e"
XOAUTH2_ERROR = {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}


@dataclass(frozen=True)
class ScriptedImap:
    """A scripted IMAP server (:func:`start_scripted_imap`): where it listens."""

    host: str
    port: int

    def config(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": "none",
            "username": XOAUTH2_USER,
            "auth": {"type": "xoauth2", "access_token": XOAUTH2_TOKEN},
        }
        return {**base, **overrides}


def _serve_script(conn: socket.socket, behaviour: str) -> None:
    """One session of the scripted server: Gmail's XOAUTH2 dialogue (its documented error
    challenge included), or a misbehaviour a check must survive."""
    caps = {
        "logindisabled": "IMAP4rev1 LOGINDISABLED AUTH=PLAIN",
    }.get(behaviour, "IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=PLAIN")
    file = conn.makefile("rb")

    def send(text: str | bytes) -> None:
        conn.sendall(text if isinstance(text, bytes) else text.encode())

    if behaviour == "long_line":
        send(b"* OK " + b"x" * (4 * 1024 * 1024) + b"\r\n")
        return
    send("* OK scripted server ready\r\n")
    while line := file.readline(100_000):
        tag, _, rest = line.decode(errors="replace").rstrip("\r\n").partition(" ")
        command = rest.split(" ")[0].upper()
        if command == "CAPABILITY":
            if behaviour == "flood":
                while True:
                    send(b"* OK " + b"flood " * 100 + b"\r\n")
            send(f"* CAPABILITY {caps}\r\n{tag} OK done\r\n")
        elif command == "LOGIN":
            code = "UNAVAILABLE" if behaviour == "unavailable" else "AUTHENTICATIONFAILED"
            send(f"{tag} NO [{code}] Authentication unavailable\r\n")
        elif command == "AUTHENTICATE":
            send("+ \r\n")
            answer = base64.b64decode(file.readline(100_000).strip() or b"=")
            if answer == f"user={XOAUTH2_USER}\x01auth=Bearer {XOAUTH2_TOKEN}\x01\x01".encode():
                send(f"{tag} OK Success\r\n")
            else:
                send(b"+ " + base64.b64encode(json.dumps(XOAUTH2_ERROR).encode()) + b"\r\n")
                file.readline(100_000)
                send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n")
        elif command == "EXAMINE":
            send(f"* FLAGS (\\Seen)\r\n* 3 EXISTS\r\n{tag} OK [READ-ONLY] EXAMINE completed\r\n")
        elif command == "FETCH":
            if behaviour == "big_literal":
                send("* 1 FETCH (BODY[]<0> {999999999}\r\n")
                time.sleep(30)
                return
            send(f"* 1 FETCH (BODY[]<0> {{5}}\r\nhello)\r\n{tag} OK Success\r\n")
        elif command == "LOGOUT":
            send(f"* BYE\r\n{tag} OK\r\n")
            return
        else:
            send(f"{tag} BAD unknown command\r\n")


@contextmanager
def start_scripted_imap(behaviour: str = "xoauth2", tls: ssl.SSLContext | None = None) -> Iterator[ScriptedImap]:
    """A scripted IMAP server on a free port until the block ends (one thread per connection).

    ``behaviour``: ``xoauth2`` (a mailbox with 3 messages that takes XOAUTH2 for
    :data:`XOAUTH2_USER` with :data:`XOAUTH2_TOKEN`), ``logindisabled``, ``unavailable`` (LOGIN
    answers ``NO [UNAVAILABLE]``), ``long_line`` (a 4 MiB greeting), ``flood`` (endless untagged
    lines), ``big_literal`` (a FETCH announcing a 1 GB literal). ``tls``: implicit TLS."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def session(conn: socket.socket) -> None:
        try:
            if tls is not None:
                conn = tls.wrap_socket(conn, server_side=True)
            _serve_script(conn, behaviour)
        except OSError:
            pass
        finally:
            conn.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(30)
            threading.Thread(target=session, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield ScriptedImap(host="127.0.0.1", port=int(listener.getsockname()[1]))
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
