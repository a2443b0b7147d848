"""Private keys cost bounded work: the bounds are checked cheaply at validation, and the
decryption they allow runs in threads of its own, so other tenants' probes (DNS) go on.
Against the real SSH server of tests/servers/ssh.py."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
import warnings
from typing import Any

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.base import CheckStatus, run_check
from connectors.errors import InvalidConfiguration
from connectors.registry import get_connector
from connectors.ssh import KEY_IMPORT_THREADS, MAX_BCRYPT_ROUNDS, MAX_PKCS8_ITERATIONS, MAX_RSA_BITS, _tlv
from tests.servers.ssh import SshServer

SFTP = get_connector("sftp")
POSTGRES = get_connector("postgres")


def with_rounds(pem: str, rounds: int) -> str:
    """An encrypted OpenSSH key whose header asks for ``rounds`` bcrypt rounds (no bcrypt run to make it)."""
    lines = pem.strip().splitlines()
    body = bytearray(base64.b64decode("".join(lines[1:-1])))
    # magic, cipher, kdf name, then kdf options: string(salt) uint32(rounds)
    at = len(b"openssh-key-v1\0")
    for _ in range(2):
        at += 4 + int.from_bytes(body[at : at + 4], "big")
    salt = int.from_bytes(body[at + 4 : at + 8], "big")
    rounds_at = at + 8 + salt
    body[rounds_at : rounds_at + 4] = rounds.to_bytes(4, "big")
    text = base64.b64encode(bytes(body)).decode()
    return "\n".join([lines[0], *[text[i : i + 70] for i in range(0, len(text), 70)], lines[-1]]) + "\n"


def big_rsa_key(bits: int, passphrase: bytes | None = None) -> str:
    """An RSA key of ``bits`` bits in OpenSSH format, made at once (its factors are not primes: never validated)."""
    p = secrets.randbits(bits // 2) | 1 << (bits // 2 - 1) | 1
    q = secrets.randbits(bits // 2) | 1 << (bits // 2 - 1) | 1
    numbers = rsa.RSAPrivateNumbers(p, q, 3, 1, 1, 1, rsa.RSAPublicNumbers(65537, p * q))
    key = numbers.private_key(unsafe_skip_rsa_key_validation=True)
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption).decode()


def sftp_with_key(server: SshServer, key: str, passphrase: str | None = None, **overrides: Any) -> dict[str, Any]:
    auth = {"type": "private_key", "private_key": key, "passphrase": passphrase}
    return server.sftp_config(auth=auth, **overrides)


@pytest.fixture(scope="module")
def ed25519_16_rounds() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh", "pw", rounds=16).decode()


def refused(data: dict[str, Any]) -> str:
    started = time.monotonic()
    with pytest.raises(InvalidConfiguration) as info:
        SFTP.parse_config(data)
    assert time.monotonic() - started < 0.5, "the bound must be checked without running the expensive work"
    [error] = info.value.errors
    assert error.field.endswith("private_key")
    return error.message


def test_a_key_asking_for_more_bcrypt_rounds_than_allowed_is_refused_at_once(
    ssh_server: SshServer, ed25519_16_rounds: str
) -> None:
    for rounds in (MAX_BCRYPT_ROUNDS + 1, 2**31):
        message = refused(sftp_with_key(ssh_server, with_rounds(ed25519_16_rounds, rounds), "pw"))
        assert f"{rounds} bcrypt rounds" in message and f"the {MAX_BCRYPT_ROUNDS} allowed" in message


def test_a_key_at_the_round_limit_is_accepted(ssh_server: SshServer, ed25519_16_rounds: str) -> None:
    SFTP.parse_config(sftp_with_key(ssh_server, with_rounds(ed25519_16_rounds, MAX_BCRYPT_ROUNDS), "pw"))


@pytest.mark.parametrize("passphrase", [None, b"pw"])
def test_an_rsa_key_over_the_size_limit_is_refused_at_once(ssh_server: SshServer, passphrase: bytes | None) -> None:
    key = big_rsa_key(9216, passphrase)
    message = refused(sftp_with_key(ssh_server, key, passphrase.decode() if passphrase else None))
    assert f"larger than the {MAX_RSA_BITS} bits allowed" in message


def test_an_rsa_key_over_the_size_limit_is_refused_in_a_tunnel_too(ssh_server: SshServer) -> None:
    tunnel = ssh_server.tunnel(auth={"type": "private_key", "private_key": big_rsa_key(9216)})
    config = {"host": "127.0.0.1", "database": "app", "user": "u", "password": "pw", "ssh_tunnel": tunnel}
    with pytest.raises(InvalidConfiguration) as info:
        POSTGRES.parse_config(config)
    assert [e.field for e in info.value.errors] == ["ssh_tunnel.auth.private_key.private_key"]


async def test_expensive_keys_do_not_hold_up_other_tenants_name_lookups(
    ssh_server: SshServer, ed25519_16_rounds: str
) -> None:
    # Keys at the round limit (the passphrase no longer fits: bcrypt runs in full, then fails),
    # more of them than the event loop's default pool has threads.
    costly = SFTP.parse_config(sftp_with_key(ssh_server, with_rounds(ed25519_16_rounds, MAX_BCRYPT_ROUNDS), "pw"))
    attackers = [asyncio.create_task(run_check(SFTP, costly, timeout=8)) for _ in range(40)]
    await asyncio.sleep(1.0)  # every attacker past resolve, waiting for its key
    healthy = SFTP.parse_config(ssh_server.sftp_config(host="localhost"))  # a name: resolved by DNS threads
    started = time.monotonic()
    result = await run_check(SFTP, healthy, timeout=8)
    took = time.monotonic() - started
    results = await asyncio.gather(*attackers)
    assert result.status == CheckStatus.SUCCEEDED, result
    assert took < 4, f"a login by name took {took:.1f} s while keys were decrypted"
    assert all(r.status == CheckStatus.FAILED for r in results)
    assert KEY_IMPORT_THREADS < 40


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    head = bytes([size]) if size < 0x80 else bytes([0x80 | 2]) + size.to_bytes(2, "big")
    return bytes([tag]) + head + content


def _with_iterations(der: bytes, count: int) -> bytes:
    """``der`` (an EncryptedPrivateKeyInfo) with every INTEGER replaced by ``count``, lengths re-encoded."""
    out, at = b"", 0
    while at < len(der):
        tag, content, at = _tlv(der, at)
        if tag == 0x02:
            content = count.to_bytes((count.bit_length() + 8) // 8, "big")
        elif tag & 0x20:
            content = _with_iterations(content, count)
        out += _der(tag, content)
    return out


def pkcs8_with_iterations(count: int) -> str:
    pem = asyncssh.generate_private_key("ssh-ed25519").export_private_key("pkcs8-pem", "pw").decode()
    body = _with_iterations(base64.b64decode("".join(pem.strip().splitlines()[1:-1])), count)
    text = base64.b64encode(body).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "\n".join(["-----BEGIN ENCRYPTED PRIVATE KEY-----", *lines, "-----END ENCRYPTED PRIVATE KEY-----"]) + "\n"


def test_a_pkcs8_key_asking_for_more_iterations_than_allowed_is_refused_at_once(ssh_server: SshServer) -> None:
    SFTP.parse_config(sftp_with_key(ssh_server, pkcs8_with_iterations(2048), "pw"))
    message = refused(sftp_with_key(ssh_server, pkcs8_with_iterations(2**31 - 1), "pw"))
    assert f"more than the {MAX_PKCS8_ITERATIONS} allowed" in message


async def test_an_encrypted_pem_key_over_the_size_limit_fails_before_use(ssh_server: SshServer) -> None:
    # OpenSSL's legacy encryption hides the size until decrypted: the check refuses it then.
    p = secrets.randbits(4608) | 1 << 4607 | 1
    numbers = rsa.RSAPrivateNumbers(p, p + 2, 3, 1, 1, 1, rsa.RSAPublicNumbers(65537, p * (p + 2)))
    key = numbers.private_key(unsafe_skip_rsa_key_validation=True).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"pw"),
    )
    attempts = len(ssh_server.auth_attempts)
    started = time.monotonic()
    result = await run_check(SFTP, SFTP.parse_config(sftp_with_key(ssh_server, key.decode(), "pw")), timeout=8)
    assert time.monotonic() - started < 4
    assert result.status == CheckStatus.FAILED and result.failure is not None
    assert f"larger than the {MAX_RSA_BITS} bits allowed" in result.failure.message
    assert "auth.private_key" in result.failure.hint
    assert ("tunnel", "publickey") not in ssh_server.auth_attempts[attempts:]
