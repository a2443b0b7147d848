"""SSH for connectors: the login steps shared by ``sftp`` and the database tunnels, and the tunnel itself.

:func:`ssh_login` runs ``resolve`` and ``tcp`` (connectors.network; the tcp step's very
connection carries the SSH session), then ``ssh`` (the handshake: protocol, algorithms,
and the server's host key checked against the pinned ``host_key``) and an authentication
step (``ssh_auth`` for a tunnel, ``authenticate`` for sftp), so a result tells a wrong
port from a changed host key from a wrong password.

:func:`open_tunnel` logs in to a bastion the same way; :meth:`Tunnel.reach` is the
``tunnel`` step (the bastion opens a TCP connection to the database, a direct-tcpip
channel), after which a driver talks to the database through :meth:`Tunnel.channel_socket` (a
socket bridged to that channel: one database connection in all) or :meth:`Tunnel.listen`
(a listener on 127.0.0.1, one channel per accepted connection, for drivers that insist on
a host and port). Everything runs on the event loop, so the check's deadline cancels it,
and everything is closed when the ``async with`` ends.

A pinned host key that does not match fails as ``unexpected_response``: the server
answered with another identity than the one expected. No credential has been sent then:
the key is checked during the handshake, before authentication starts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import os
import re
import socket
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import asyncssh
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, field_validator, model_validator

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import DestinationHost, DestinationPort
from connectors.network import Address, connect_tcp, resolve
from connectors.text import server_text
from connectors.threads import ThreadPool

CLIENT_VERSION = "sourcecheck"
"""Sent in the SSH version line (``SSH-2.0-sourcecheck``), so bastion logs say who knocked."""

_MAX_KEY_LENGTH = 32_000  # an 8192-bit RSA key in PEM is about 6.5 kB
_ENCRYPTED = "Passphrase must be specified"  # asyncssh's KeyImportError text for an encrypted key without one

MAX_BCRYPT_ROUNDS = 256
"""The most bcrypt rounds an encrypted OpenSSH private key may ask for (ssh-keygen's default is 16).

The round count comes from the key itself and the decryption cannot be stopped once begun,
so a key asking for more is refused when the configuration is validated (a 422 on
``private_key``), read from the key's clear header without decrypting anything.
"""

MAX_RSA_BITS = 8192
"""The largest RSA private key accepted, in bits (ssh-keygen's default is 3072).

Checked from the key's structure without validating it: in the clear header of an
encrypted OpenSSH key, otherwise by loading the key without RSA validation; a key whose
size only shows once decrypted (encrypted PEM) is checked then, before it is used.
"""

MAX_DSA_BITS = 3072
"""The largest DSA private key accepted, in bits (OpenSSH only ever made 1024-bit DSA keys)."""

MAX_PKCS8_ITERATIONS = 1_000_000
"""The most key-derivation iterations an encrypted PKCS#8 key (``ENCRYPTED PRIVATE KEY``) may ask for
(OpenSSL writes 2048): like bcrypt's rounds, read from the key and refused above this at validation."""

KEY_IMPORT_THREADS = 2
"""Threads of each process's own pool that decrypt and import private keys.

Decryption cannot be cancelled: it runs here, never in a pool that name lookups or other
probes need (see connectors.threads). Waiting for a thread counts against the check's deadline.
"""

# ssh-keygen encrypts keys with 16 bcrypt rounds; bcrypt warns below 50 on every such key. Not ours to change.
warnings.filterwarnings("ignore", message=r"Warning: bcrypt\.kdf\(\) called with only", category=UserWarning)


# --- configuration --------------------------------------------------------------------------


def _empty_is_none(value: Any) -> Any:
    return None if value == "" else value  # forms send "" for an empty field


# --- private keys ---------------------------------------------------------------------------

_NOT_A_KEY = (
    "must be a private key in OpenSSH or PEM format: the whole file, "
    "from -----BEGIN ... PRIVATE KEY----- to -----END ... PRIVATE KEY-----"
)


class KeyTooCostly(ValueError):
    """A private key over one of the bounds above (its message names the bound)."""


def _pem(text: str) -> tuple[str, dict[str, str], bytes]:
    """The PEM block of ``text``: its name, headers and decoded body; ValueError if there is none."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 2 or not (lines[0].startswith("-----BEGIN ") and lines[0].endswith("-----")):
        raise ValueError(_NOT_A_KEY)
    name = lines[0][len("-----BEGIN ") : -len("-----")]
    try:
        end = lines.index(f"-----END {name}-----")
    except ValueError:
        raise ValueError(_NOT_A_KEY) from None
    body = lines[1:end]
    headers: dict[str, str] = {}
    while body and ":" in body[0]:
        key, _, value = body.pop(0).partition(":")
        headers[key.strip()] = value.strip()
    try:
        return name, headers, base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(_NOT_A_KEY) from None


class _Wire:
    """Reads the SSH wire encoding (RFC 4251: uint32, string) of an OpenSSH key's header."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def uint32(self) -> int:
        if self.at + 4 > len(self.data):
            raise ValueError(_NOT_A_KEY)
        value = int.from_bytes(self.data[self.at : self.at + 4], "big")
        self.at += 4
        return value

    def string(self) -> bytes:
        size = self.uint32()
        if self.at + size > len(self.data):
            raise ValueError(_NOT_A_KEY)
        value = self.data[self.at : self.at + size]
        self.at += size
        return value


def _check_openssh_header(body: bytes) -> bool:
    """Whether an OpenSSH key is encrypted; KeyTooCostly if its rounds or its public key are over a bound."""
    magic = b"openssh-key-v1\0"
    if not body.startswith(magic):
        raise ValueError(_NOT_A_KEY)
    reader = _Wire(body[len(magic) :])
    cipher, kdf, kdf_options = reader.string(), reader.string(), reader.string()
    reader.uint32()  # number of keys (asyncssh insists on 1)
    public = reader.string()
    if cipher == b"none":
        return False  # the private part is in clear: its size is checked when it is loaded
    if kdf == b"bcrypt":
        options = _Wire(kdf_options)
        options.string()  # salt
        rounds = options.uint32()
        if rounds > MAX_BCRYPT_ROUNDS:
            raise KeyTooCostly(
                f"is encrypted with {rounds} bcrypt rounds, more than the {MAX_BCRYPT_ROUNDS} allowed "
                "(ssh-keygen uses 16: re-encrypt it with ssh-keygen -p -a 16 -f KEYFILE)"
            )
    algorithm = _Wire(public).string().decode("ascii", "replace")
    try:
        public_key = asyncssh.import_public_key(f"{algorithm} {base64.b64encode(public).decode()}")
    except (asyncssh.KeyImportError, ValueError):
        raise ValueError(_NOT_A_KEY) from None
    check_key_size(public_key)
    return True


def _check_pkcs8_iterations(body: bytes) -> None:
    """KeyTooCostly if an encrypted PKCS#8 key's algorithm asks for more iterations than allowed.

    Every INTEGER in its AlgorithmIdentifier is taken as an iteration count (the others,
    a key length or an RC2 version, are small): reading the DER is enough, nothing is derived.
    """
    for value in _der_integers(body, limit=64):
        if value > MAX_PKCS8_ITERATIONS:
            raise KeyTooCostly(
                f"is encrypted with {value} key-derivation iterations, more than the {MAX_PKCS8_ITERATIONS} allowed "
                "(convert it to OpenSSH format: ssh-keygen -p -f KEYFILE)"
            )


def _der_integers(data: bytes, *, limit: int) -> list[int]:
    """The INTEGER values inside the first element of a DER SEQUENCE (the algorithm), at most ``limit``."""
    tag, outer, _ = _tlv(data, 0)
    if tag != 0x30:
        raise ValueError(_NOT_A_KEY)
    found: list[int] = []

    def walk(chunk: bytes, depth: int) -> None:
        at = 0
        while at < len(chunk) and len(found) < limit and depth < 8:
            tag, content, at = _tlv(chunk, at)
            if tag == 0x02 and len(content) <= 16:
                found.append(int.from_bytes(content, "big"))
            elif tag & 0x20:  # constructed: SEQUENCE, SET, context-specific
                walk(content, depth + 1)

    _, algorithm, _ = _tlv(outer, 0)
    walk(algorithm, 0)
    return found


def _tlv(data: bytes, at: int) -> tuple[int, bytes, int]:
    """The DER element at ``at``: its tag, its content and where the next one starts."""
    if at + 2 > len(data):
        raise ValueError(_NOT_A_KEY)
    tag, size, at = data[at], data[at + 1], at + 2
    if size & 0x80:
        count = size & 0x7F
        if count > 4 or at + count > len(data):
            raise ValueError(_NOT_A_KEY)
        size, at = int.from_bytes(data[at : at + count], "big"), at + count
    if at + size > len(data):
        raise ValueError(_NOT_A_KEY)
    return tag, data[at : at + size], at + size


def check_key_size(key: asyncssh.SSHKey) -> None:
    """KeyTooCostly if ``key`` (public or private) is an RSA or DSA key over its bound."""
    algorithm = key.get_algorithm()
    bits = getattr(key.pyca_key, "key_size", 0)
    if algorithm == "ssh-rsa" and bits > MAX_RSA_BITS:
        raise KeyTooCostly(f"is a {bits}-bit RSA key, larger than the {MAX_RSA_BITS} bits allowed")
    if algorithm == "ssh-dss" and bits > MAX_DSA_BITS:
        raise KeyTooCostly(f"is a {bits}-bit DSA key, larger than the {MAX_DSA_BITS} bits allowed")


def _key_kind(text: str) -> Literal["plain", "encrypted"]:
    """Whether ``text`` is a private key in clear or an encrypted one; ValueError if neither.

    Cheap, and bounded whatever the key says: nothing is decrypted and no RSA key is
    validated. An encrypted key's cost (rounds, iterations) and, where its header shows it,
    its size are checked here; a key in clear is loaded without RSA validation and its size
    checked. Decryption is left to the check, in its own threads (:func:`load_private_key`).
    """
    if len(text) > _MAX_KEY_LENGTH:
        raise ValueError("is too long for a private key")
    name, headers, body = _pem(text)
    if name == "OPENSSH PRIVATE KEY" and _check_openssh_header(body):
        return "encrypted"
    if name == "ENCRYPTED PRIVATE KEY":
        _check_pkcs8_iterations(body)
        return "encrypted"
    if "ENCRYPTED" in headers.get("Proc-Type", ""):
        return "encrypted"  # OpenSSL's legacy encryption: one MD5 round, cheap; its size is checked once decrypted
    try:
        key = asyncssh.import_private_key(text, unsafe_skip_rsa_key_validation=True)
    except Exception as exc:  # not only KeyImportError: a bad paste may trip the decoders too
        if isinstance(exc, asyncssh.KeyImportError) and str(exc).startswith(_ENCRYPTED):
            return "encrypted"
        raise ValueError(_NOT_A_KEY) from None
    check_key_size(key)
    return "plain"


def load_private_key(text: str, passphrase: str | None) -> asyncssh.SSHKey:
    """``text`` decrypted and imported (blocking: call it in the key threads); KeyTooCostly if over a bound.

    RSA keys are not validated (primality of the factors): that costs seconds for a large
    key and protects only the key's owner, whose server refuses an invalid key's signature.
    """
    _key_kind(text)  # the cost bounds again, whatever stored the configuration
    key = asyncssh.import_private_key(text, passphrase, unsafe_skip_rsa_key_validation=True)
    check_key_size(key)
    return key


_key_threads = ThreadPool(KEY_IMPORT_THREADS, "ssh-key")


class SshPassword(ConnectorConfig):
    """Log in with a password (SSH ``password`` or ``keyboard-interactive`` authentication)."""

    type: Literal["password"] = Field(title="Method", description="Log in with a password.", examples=["password"])
    password: Secret = Field(
        title="Password", description="The SSH user's password.", examples=["correct-horse-battery-staple"]
    )


class SshPrivateKey(ConnectorConfig):
    """Log in with a private key whose public half is in the user's ``authorized_keys``."""

    type: Literal["private_key"] = Field(
        title="Method", description="Log in with a private key.", examples=["private_key"]
    )
    private_key: Secret = Field(
        title="Private key",
        description=(
            "The whole private key file, OpenSSH (ssh-keygen's default) or PEM format. Its public half must be "
            "in ~/.ssh/authorized_keys of the user on the server."
        ),
        examples=[
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA...\n-----END OPENSSH PRIVATE KEY-----\n"
        ],
    )
    passphrase: Annotated[Secret | None, BeforeValidator(_empty_is_none)] = Field(
        None,
        title="Passphrase",
        description="The passphrase the private key is encrypted with. Empty: the key is not encrypted.",
        examples=["my key passphrase"],
    )

    @field_validator("private_key")
    @classmethod
    def _readable_key(cls, value: Any) -> Any:
        _key_kind(value.get_secret_value())  # parsed now, so a bad paste is a configuration error
        return value

    @model_validator(mode="after")
    def _passphrase_for_encrypted_key(self) -> SshPrivateKey:
        if self.passphrase is None and _key_kind(self.private_key.get_secret_value()) == "encrypted":
            raise ValueError("the private key is encrypted: give its passphrase")
        return self


SshAuth = Annotated[SshPassword | SshPrivateKey, Field(discriminator="type")]


_FINGERPRINT = re.compile(r"SHA256:([A-Za-z0-9+/]{43})=?")


@dataclass(frozen=True)
class HostKeyPin:
    """The host keys a server may present: whole public keys and/or SHA256 fingerprints."""

    keys: tuple[asyncssh.SSHKey, ...]
    fingerprints: frozenset[str]  # "SHA256:..." without base64 padding, as asyncssh writes them

    def matches(self, key: asyncssh.SSHKey) -> bool:
        return key in self.keys or key.get_fingerprint("sha256") in self.fingerprints

    def describe(self) -> str:
        shown = [key.get_fingerprint("sha256") for key in self.keys] + sorted(self.fingerprints)
        return ", ".join(shown)


def parse_host_key(value: str) -> HostKeyPin:
    """``value``'s lines as pinned host keys; raises ValueError naming what is wrong."""
    keys: list[asyncssh.SSHKey] = []
    fingerprints: set[str] = set()
    lines = [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise ValueError("must not be empty")
    for line in lines:
        found = _FINGERPRINT.fullmatch(line)
        if found:
            fingerprints.add(f"SHA256:{found.group(1)}")
            continue
        words = line.split()
        # Also accepted: a known_hosts or ssh-keyscan line, which starts with the host name(s).
        candidates = [" ".join(words), " ".join(words[1:])] if len(words) >= 3 else [line]
        for candidate in candidates:
            try:
                keys.append(asyncssh.import_public_key(candidate))
                break
            except (asyncssh.KeyImportError, ValueError):
                continue
        else:
            raise ValueError(
                "each line must be an SSH public key (ssh-ed25519 AAAA..., as in known_hosts or from ssh-keyscan) "
                "or a SHA256 fingerprint (SHA256:...)"
            )
    return HostKeyPin(tuple(keys), frozenset(fingerprints))


def _check_host_key(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > 16_000:
        raise ValueError("is too long for SSH host keys")
    parse_host_key(value)
    return value


HostKey = Annotated[str | None, AfterValidator(_check_host_key)]
"""Pinned SSH host key(s): public key lines and/or SHA256 fingerprints, one a line; "" is None."""

HOST_KEY_DESCRIPTION = (
    "The SSH server's host key, pinned (recommended): its public key line (ssh-ed25519 AAAA..., as in known_hosts "
    "or from `ssh-keyscan -t ed25519 HOST`) or its SHA256 fingerprint (SHA256:...); several lines are allowed. "
    "A server presenting another key fails the check before any credential is sent. Empty: any host key is "
    "accepted and the check reports the fingerprint it saw, to pin."
)
HOST_KEY_EXAMPLES = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGjErOXy8NhOCHJ146QglHLHMGY/pWyOPYn1IA9MwMrk",
    "SHA256:OSobaeYiJ8PsFhKieh5QbBeyVE5T0L3MLL/2sAg9aaw",
]


SshUser = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""An SSH user name: 1 to 255 characters, none of them a control character."""


class SshTunnel(ConnectorConfig):
    """An SSH bastion (jump host) the database is reached through."""

    host: DestinationHost = Field(
        title="Bastion host",
        description="Host name or IP address of the SSH server to tunnel through (no user, no port).",
        examples=["bastion.example.com", "203.0.113.10"],
    )
    port: DestinationPort = Field(22, title="Bastion port", description="TCP port of the SSH server.", examples=[22])
    user: SshUser = Field(
        title="SSH user",
        description="The user to log in to the bastion as.",
        examples=["tunnel"],
    )
    auth: SshAuth = Field(
        title="SSH authentication",
        description="How to log in to the bastion: a password, or a private key (and its passphrase, if any).",
        examples=[
            {"type": "private_key", "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n...", "passphrase": None}
        ],
    )
    host_key: HostKey = Field(
        None, title="Bastion host key", description=HOST_KEY_DESCRIPTION, examples=HOST_KEY_EXAMPLES
    )


OptionalTunnel = Annotated[
    SshTunnel | None,
    Field(
        title="SSH tunnel",
        description="Reach the database through an SSH bastion (jump host): the check logs in to the bastion, which "
        "opens the connection to the database, so host and port are then as seen from the bastion. Empty: connect "
        "directly.",
        examples=[
            {
                "host": "bastion.example.com",
                "port": 22,
                "user": "tunnel",
                "auth": {"type": "password", "password": "correct-horse-battery-staple"},
                "host_key": "SHA256:OSobaeYiJ8PsFhKieh5QbBeyVE5T0L3MLL/2sAg9aaw",
            }
        ],
    ),
]
"""The ``ssh_tunnel`` field of a database's configuration (default None); see :class:`TunnelledConnector`."""

TUNNEL_STEPS = ("ssh", "ssh_auth", "tunnel")
"""The steps a tunnel adds, between ``tcp`` (to the bastion) and the database's own steps."""


class TunnelledConnector(Connector):
    """A connector whose configuration has an optional ``ssh_tunnel``: the :data:`TUNNEL_STEPS`
    among its ``steps`` are planned only when the configuration sets one."""

    def planned_steps(self, config: Any) -> tuple[str, ...]:
        if config.ssh_tunnel is None:
            return tuple(s for s in self.steps if s not in TUNNEL_STEPS)
        return self.steps


class SshEndpoint(Protocol):
    """What :func:`ssh_login` needs: an SSH server and a login (SshTunnel, SftpConfig)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def auth(self) -> SshPassword | SshPrivateKey: ...
    @property
    def host_key(self) -> str | None: ...


# --- logging in -----------------------------------------------------------------------------


class _Client(asyncssh.SSHClient):
    """Watches the handshake: records the host key, checks the pin, marks where authentication starts."""

    def __init__(self, pin: HostKeyPin | None, auth: SshPassword | SshPrivateKey) -> None:
        self.pin = pin
        self.auth = auth
        self.conn: asyncssh.SSHClientConnection | None = None
        self.server_key: asyncssh.SSHKey | None = None
        self.mismatch = False
        self.handshake_done = asyncio.Event()
        self.key_failure: str | None = None  # why the private key could not be used
        self.key_too_costly = False  # over a bound only seen once decrypted (encrypted PEM)
        self.client_key: asyncssh.SSHKey | None = None
        self._key_offered = False

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        # Called for every key not among the pinned whole keys (given to asyncssh as known hosts).
        self.server_key = key
        if self.pin is None:
            return True  # not pinned: accepted, and reported in the step's message
        self.mismatch = not self.pin.matches(key)
        return not self.mismatch

    def begin_auth(self, username: str) -> None:
        # The key exchange is over and the host key accepted: the ``ssh`` step has succeeded.
        if self.server_key is None and self.conn is not None:
            self.server_key = self.conn.get_server_host_key()
        self.handshake_done.set()

    async def public_key_auth_requested(self) -> asyncssh.SSHKey | None:
        if self._key_offered or not isinstance(self.auth, SshPrivateKey):
            return None
        self._key_offered = True
        passphrase = self.auth.passphrase.get_secret_value() if self.auth.passphrase else None
        load = functools.partial(load_private_key, self.auth.private_key.get_secret_value(), passphrase)
        try:
            # In the key threads: decrypting runs bcrypt, bounded but not cancellable.
            key = await _key_threads.run(load)
        except KeyTooCostly as exc:
            self.key_failure, self.key_too_costly = f"the private key {exc}", True
            return None
        except asyncssh.KeyEncryptionError:
            self.key_failure = "the passphrase does not decrypt the private key"
            return None
        except (asyncssh.KeyImportError, ValueError):
            self.key_failure = "the private key could not be read with this passphrase"
            return None
        self.client_key = key
        return key

    def server_version(self) -> str | None:
        version = self.conn.get_extra_info("server_version") if self.conn else None
        return server_text(str(version), 255).removeprefix("SSH-2.0-") if version else None


def _options(endpoint: SshEndpoint, client: _Client, probe: Probe) -> dict[str, Any]:
    """asyncssh.connect arguments: only the configured credentials, nothing from ~/.ssh or an agent."""
    pin = client.pin
    common: dict[str, Any] = {
        "username": endpoint.user,
        # Whole pinned keys as known hosts, so the server is asked for that type of key; any other key
        # goes to _Client.validate_host_public_key (an empty list, not None, which would skip the check).
        "known_hosts": (list(pin.keys) if pin else [], [], []),
        "config": None,  # no ~/.ssh/config
        "client_version": CLIENT_VERSION,
        "agent_path": None,
        "pkcs11_provider": None,
        "agent_forwarding": False,
        "x11_forwarding": False,
        "gss_kex": False,
        "gss_auth": False,
        "host_based_auth": False,
        "keepalive_interval": 0,
        "login_timeout": probe.remaining() + 5,  # the check's deadline comes first
        "client_keys": None,  # no default keys from ~/.ssh: a key comes from public_key_auth_requested only
    }
    if isinstance(endpoint.auth, SshPassword):
        return common | {
            "password": endpoint.auth.password.get_secret_value(),
            "public_key_auth": False,
            "password_auth": True,
            "kbdint_auth": True,  # many servers take passwords through PAM's keyboard-interactive only
            "preferred_auth": "password,keyboard-interactive",
        }
    return common | {
        "public_key_auth": True,
        "password_auth": False,
        "kbdint_auth": False,
        "preferred_auth": "publickey",
    }


@dataclass(frozen=True)
class _Where:
    """How messages name the server, and the prefix of its fields in hints."""

    endpoint: SshEndpoint
    role: str | None  # "bastion", or None for the source itself
    prefix: str  # "ssh_tunnel." or ""

    def __str__(self) -> str:
        where = f"{self.endpoint.host}:{self.endpoint.port}"
        return f"bastion {where}" if self.role == "bastion" else where


async def ssh_login(
    probe: Probe,
    endpoint: SshEndpoint,
    *,
    auth_step: str,
    role: str | None = None,
    prefix: str = "",
) -> asyncssh.SSHClientConnection:
    """Steps ``resolve``, ``tcp``, ``ssh`` and ``auth_step``: a logged-in connection (the caller closes it)."""
    where = _Where(endpoint, role, prefix)
    pin = parse_host_key(endpoint.host_key) if endpoint.host_key else None
    client = _Client(pin, endpoint.auth)
    addresses = await resolve(probe, endpoint.host, endpoint.port, fields=[f"{prefix}host"])
    _, sock = await connect_tcp(probe, addresses, keep=True, fields=[f"{prefix}host", f"{prefix}port"])
    login: asyncio.Task[asyncssh.SSHClientConnection] | None = None
    try:
        login = asyncio.create_task(_connect(endpoint, sock, client, probe))
        async with probe.step("ssh", fields=[f"{prefix}host", f"{prefix}port"]) as step:
            await _first(client.handshake_done.wait(), login)
            if not client.handshake_done.is_set():
                exc = _outcome(login)
                if exc is not None and not isinstance(exc, (asyncssh.Error, OSError)):
                    raise exc  # a bug, not the server's answer: run_check reports an internal error
                raise _handshake_failure(exc, client, where)
            step.message = _describe_handshake(client, where)
        async with probe.step(auth_step) as step:
            try:
                conn = await login
            except (asyncssh.Error, OSError) as exc:
                raise _auth_failure(exc, client, where) from None
            step.message = _describe_login(client, endpoint, where)
        if client.pin is None and client.server_key is not None:
            _warn_unpinned(probe, client.server_key, where)
        return conn
    except BaseException:
        await _abandon(login)
        sock.close()  # already closed with the connection, unless it never got that far
        raise


async def _connect(
    endpoint: SshEndpoint, sock: socket.socket, client: _Client, probe: Probe
) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        endpoint.host,  # for messages and known-host matching: the socket is already connected
        endpoint.port,
        sock=sock,
        client_factory=lambda: client,
        **_options(endpoint, client, probe),
    )


async def _first(event: Awaitable[Any], task: asyncio.Task[Any]) -> None:
    """Wait until ``event`` happens or ``task`` ends, whichever is first."""
    waiter = asyncio.ensure_future(event)
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def _outcome(task: asyncio.Task[Any]) -> BaseException | None:
    return None if task.cancelled() else task.exception()


async def _abandon(login: asyncio.Task[asyncssh.SSHClientConnection] | None) -> None:
    """Stop a login that will not be used and release what it holds, within half a second."""
    if login is None:
        return
    if not login.done():
        login.cancel()
        await asyncio.wait({login}, timeout=0.5)
    elif not login.cancelled() and login.exception() is None:
        login.result().abort()


def _describe_key(key: asyncssh.SSHKey | None) -> str:
    return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}" if key else "(none: GSS key exchange)"


def _describe_handshake(client: _Client, where: _Where) -> str:
    server = client.server_version() or "SSH server"
    key, field = _describe_key(client.server_key), f"{where.prefix}host_key"
    if client.pin is None:
        return f"{server}; host key {key} (not pinned: set {field} to it to detect a man-in-the-middle)"
    return f"{server}; host key {key} matches the pinned {field}"


def _warn_unpinned(probe: Probe, key: asyncssh.SSHKey, where: _Where) -> None:
    """UNPINNED_HOST_KEY: the key was trusted on first use; say what to pin, as host_key accepts it."""
    field, fingerprint = f"{where.prefix}host_key", key.get_fingerprint("sha256")
    algorithm = key.get_algorithm()
    probe.warn(
        WarningCode.UNPINNED_HOST_KEY,
        f"The host key of {where} was not checked ({field} is empty): it presented {algorithm} {fingerprint}",
        hint=f"Set {field} to {fingerprint} once you have confirmed it is the server's key over a trusted channel "
        f"(on the server: ssh-keygen -lf /etc/ssh/ssh_host_{_key_file(algorithm)}_key.pub). Pinned, a check that "
        "meets another key fails before any credential is sent.",
    )


def _key_file(algorithm: str) -> str:
    """The name OpenSSH gives the host key file of ``algorithm`` (ssh_host_<name>_key)."""
    if "ed25519" in algorithm:
        return "ed25519"
    if algorithm.startswith("ecdsa"):
        return "ecdsa"
    return "rsa"


def _describe_login(client: _Client, endpoint: SshEndpoint, where: _Where) -> str:
    if client.client_key is not None:
        how = f"the private key {_describe_key(client.client_key)}"
    else:
        how = "a password"
    return f"Logged in to {where} as '{endpoint.user}' with {how}"


def _reason(exc: BaseException | None) -> str:
    text = server_text(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc or "")).strip()
    return text[:200] or type(exc).__name__


def _handshake_failure(exc: BaseException | None, client: _Client, where: _Where) -> ProbeFailure:
    """The ProbeFailure for a connection that ended before authentication began."""
    key_field = f"{where.prefix}host_key"
    if client.mismatch:
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The SSH server's host key does not match the pinned key (possible man-in-the-middle): {where} "
            f"presented {_describe_key(client.server_key)}, "
            f"{key_field} allows {client.pin.describe() if client.pin else '-'}",
            hint=f"If the server's key was changed on purpose (reinstalled, rotated), put its new key in {key_field} "
            "(ssh-keyscan HOST, checked over a trusted channel). Otherwise do not use this connection: someone may "
            "be intercepting it. No credential was sent.",
            fields=[key_field],
        )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The SSH server's host key could not be verified ({_reason(exc)})",
            hint=f"Check {key_field}: it must be the server's public host key or its SHA256 fingerprint.",
            fields=[key_field],
        )
    if isinstance(exc, asyncssh.KeyExchangeFailed):
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"No SSH algorithm in common with {where} ({_reason(exc)})",
            hint="The SSH server only offers algorithms too old or too unusual for this client: "
            "enable a current key exchange, cipher and host key type (e.g. curve25519, aes-gcm, ed25519) on it.",
        )
    if isinstance(exc, asyncssh.ProtocolNotSupported):
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The server at {where} does not speak SSH version 2 ({_reason(exc)})",
            hint="Check that the port is an SSH port, and that the server supports SSH 2.",
            fields=[f"{where.prefix}host", f"{where.prefix}port"],
        )
    if client.server_version() is None:
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"Nothing answered as an SSH server at {where} ({_reason(exc)})",
            hint="Check that the host and port point at an SSH server (usually port 22), and that it accepts the "
            "workers' address (some servers close connections from addresses they do not allow).",
            retryable=True,
            fields=[f"{where.prefix}host", f"{where.prefix}port"],
        )
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The SSH server at {where} closed the connection during the handshake ({_reason(exc)})",
        hint="The server may limit who connects (AllowUsers, MaxStartups, a firewall on SSH): check its logs.",
        retryable=True,
    )


def _auth_failure(exc: BaseException, client: _Client, where: _Where) -> ProbeFailure:
    """The ProbeFailure for a connection that ended during authentication."""
    user = where.endpoint.user
    if client.key_failure:
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"SSH authentication for user '{user}' on {where} was not attempted: {client.key_failure}",
            hint=f"Use a smaller key in {where.prefix}auth.private_key (RSA up to {MAX_RSA_BITS} bits, or ed25519)."
            if client.key_too_costly
            else f"Check {where.prefix}auth.passphrase (and that it belongs to this private key).",
            fields=[f"{where.prefix}auth.private_key" if client.key_too_costly else f"{where.prefix}auth.passphrase"],
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        secret = "password" if isinstance(where.endpoint.auth, SshPassword) else "private_key"
        fields = [f"{where.prefix}user", f"{where.prefix}auth.{secret}"]
        if isinstance(where.endpoint.auth, SshPassword):
            hint = (
                f"Check the user name '{user}' and its password. If they are right, the server may not accept "
                "passwords (PasswordAuthentication no): use a private key instead."
            )
        else:
            hint = (
                f"Check the user name '{user}', and that the public half of this key is in "
                f"~{user}/.ssh/authorized_keys on the server (owned by the user, not writable by others)."
            )
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"SSH authentication failed for user '{user}' on {where}",
            hint=hint,
            fields=fields,
        )
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"The SSH server at {where} closed the connection during authentication ({_reason(exc)})",
        hint="The server may limit logins (AllowUsers, MaxAuthTries, a forced command): check its logs.",
        retryable=True,
    )


async def close_quietly(conn: asyncssh.SSHClientConnection) -> None:
    """Close an SSH connection, waiting half a second at most for the server's goodbye."""
    conn.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(0.5):
            await conn.wait_closed()


# --- the tunnel -----------------------------------------------------------------------------


_Channel = tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]


class Tunnel:
    """A logged-in bastion connection and the database connections going through it."""

    def __init__(self, conn: asyncssh.SSHClientConnection, where: _Where) -> None:
        self.conn = conn
        self.where = where
        self.target: tuple[str, int] | None = None
        self._spare: _Channel | None = None  # the channel the tunnel step opened, for the first use
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    async def reach(self, probe: Probe, host: str, port: int) -> None:
        """Step ``tunnel``: the bastion opens a TCP connection to ``host:port`` (resolved by the bastion)."""
        async with probe.step("tunnel", fields=["host", "port"]) as step:
            try:
                self._spare = await self.conn.open_connection(host, port)
            except asyncssh.ChannelOpenError as exc:
                raise _channel_failure(exc, host, port, self.where) from None
            except (asyncssh.Error, OSError) as exc:
                raise ProbeFailure(
                    FailureType.UNEXPECTED_RESPONSE,
                    f"The {self.where} closed the SSH connection while opening the tunnel ({_reason(exc)})",
                    retryable=True,
                ) from None
            self.target = (host, port)
            step.message = f"The {self.where} reached {_hostport(host, port)}"

    async def _channel(self) -> _Channel:
        if self._spare is not None:
            channel, self._spare = self._spare, None
            return channel
        assert self.target is not None, "reach() first"
        return await self.conn.open_connection(*self.target)

    def channel_socket(self) -> socket.socket:
        """A connected socket whose other end is the database connection the tunnel step opened.

        For drivers that take a socket: the database sees the one connection the tunnel step made.
        """
        mine, theirs = socket.socketpair()
        mine.setblocking(False)
        theirs.setblocking(False)
        self._spawn(self._serve_socket(mine))
        return theirs

    async def listen(self) -> Address:
        """A listener on 127.0.0.1 (a free port) forwarding each connection through the bastion.

        For drivers that need a host and port: the first connection uses the tunnel step's
        channel, each later one opens its own. Only connections made by this very process are
        served (see :func:`_from_this_process`): any other local process is closed at once.
        It stops listening when the tunnel closes.
        """
        assert self.target is not None, "reach() first"
        self._server = await asyncio.start_server(self._serve_client, "127.0.0.1", 0)
        port = int(self._server.sockets[0].getsockname()[1])
        return Address(host=self.target[0], ip="127.0.0.1", port=port, family=socket.AF_INET)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_socket(self, sock: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        await self._bridge(reader, writer)

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not _from_this_process(writer.get_extra_info("socket")):
            writer.close()  # another local process: it gets nothing of the bastion's channel
            return
        task = asyncio.current_task()
        if task is not None:  # so close() can cancel it
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await self._bridge(reader, writer)
        except asyncio.CancelledError:
            # Stopped by close(). Ending normally: Python 3.11's server logs a cancelled handler as an error.
            return

    async def _bridge(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                chan_reader, chan_writer = await self._channel()
            except (asyncssh.Error, OSError):
                return  # the driver sees its connection closed, and says so
            try:
                await asyncio.gather(_copy(reader, chan_writer), _copy(chan_reader, writer))
            finally:
                chan_writer.close()
        finally:
            writer.close()

    async def close(self) -> None:
        """Stop every forwarding and log out of the bastion (bounded: never hangs the check)."""
        if self._server is not None:
            self._server.close()
        if self._spare is not None:  # reached, never used
            self._spare[1].close()
            self._spare = None
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=0.5)
        await close_quietly(self.conn)


def _from_this_process(sock: socket.socket | None) -> bool:
    """Whether the peer of ``sock`` (accepted on loopback) is a socket this process holds.

    The kernel's TCP table gives the inode of the connecting socket (the entry whose local
    end is our peer and whose remote end is us); it is ours when one of our descriptors is
    that socket. Linux only: elsewhere nothing is served.
    """
    if sock is None:
        return False
    try:
        peer, local = sock.getpeername()[:2], sock.getsockname()[:2]
        table = "/proc/net/tcp6" if sock.family == socket.AF_INET6 else "/proc/net/tcp"
        inode = _tcp_inode(table, peer, local)
        if inode is None:
            return False
        wanted = f"socket:[{inode}]"
        return any(_link(f"/proc/self/fd/{fd}") == wanted for fd in os.listdir("/proc/self/fd"))
    except OSError:
        return False


def _tcp_inode(table: str, local: tuple[str, int], remote: tuple[str, int]) -> str | None:
    """The inode of the socket from ``local`` to ``remote`` in a /proc/net/tcp table."""
    want = (_proc_address(local), _proc_address(remote))
    with open(table) as rows:
        next(rows)  # the header
        for row in rows:
            fields = row.split()
            if (fields[1], fields[2]) == want:
                return fields[9]
    return None


def _proc_address(address: tuple[str, int]) -> str:
    """``address`` as /proc/net/tcp writes it: the IP's 32-bit words in host byte order, then the port."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, address[0])
    words = [packed[i : i + 4] for i in range(0, len(packed), 4)]
    ip = "".join(int.from_bytes(word, sys.byteorder).to_bytes(4, "big").hex().upper() for word in words)
    return f"{ip}:{address[1]:04X}"


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None  # closed meanwhile


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def can_write_eof(self) -> bool: ...
    def write_eof(self) -> None: ...


class _Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


async def _copy(reader: _Reader, writer: _Writer) -> None:
    """Copy bytes until end of file, then pass the end of file on (half-close)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncssh.Error, RuntimeError):
        pass  # one side went away: the other is closed by _bridge


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_DNS = re.compile(r"resolv|name or service|unknown host|not known|getaddrinfo|nodename", re.IGNORECASE)
_TIMED_OUT = re.compile(r"timed? ?out", re.IGNORECASE)
_UNREACHABLE = re.compile(r"unreachable|no route", re.IGNORECASE)


def _channel_failure(exc: asyncssh.ChannelOpenError, host: str, port: int, where: _Where) -> ProbeFailure:
    """A refused direct-tcpip channel as the failure of the bastion's connection to the database."""
    target, reason = _hostport(host, port), _reason(exc)
    if exc.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"The {where} does not allow user '{where.endpoint.user}' to open a tunnel to {target} ({reason})",
            hint="Allow TCP forwarding for this user on the bastion (sshd_config: AllowTcpForwarding yes, and a "
            "PermitOpen that includes the database's host and port).",
            fields=[f"{where.prefix}user"],
        )
    if _DNS.search(reason):
        return ProbeFailure(
            FailureType.DNS_RESOLUTION_FAILED,
            f"The {where} could not resolve '{host}' ({reason})",
            hint="The database host is resolved by the bastion: use a name the bastion can resolve, or its IP address.",
            fields=["host"],
        )
    if _TIMED_OUT.search(reason):
        return ProbeFailure(
            FailureType.CONNECTION_TIMEOUT,
            f"The {where} could not reach {target}: the connection timed out ({reason})",
            hint="Check the firewalls and security groups between the bastion and the database.",
            fields=["host", "port"],
        )
    if _UNREACHABLE.search(reason):
        return ProbeFailure(
            FailureType.HOST_UNREACHABLE,
            f"The {where} could not reach {target}: no route ({reason})",
            hint="Check the database's address as seen from the bastion, and the network between them.",
            fields=["host", "port"],
        )
    return ProbeFailure(
        FailureType.CONNECTION_REFUSED,
        f"The {where} could not reach {target} ({reason})",
        hint="Host and port are as seen from the bastion: check them, that the database runs, and that it accepts "
        "connections from the bastion's address.",
        fields=["host", "port"],
    )


@asynccontextmanager
async def open_tunnel(probe: Probe, config: SshTunnel) -> AsyncIterator[Tunnel]:
    """Steps ``resolve``, ``tcp``, ``ssh``, ``ssh_auth`` to the bastion; the tunnel, closed on exit."""
    conn = await ssh_login(probe, config, auth_step="ssh_auth", role="bastion", prefix="ssh_tunnel.")
    tunnel = Tunnel(conn, _Where(config, "bastion", "ssh_tunnel."))
    try:
        yield tunnel
    finally:
        await tunnel.close()
