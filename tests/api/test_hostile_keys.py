"""Hostile private keys through the API: a key over a bound is a 422 naming the field and the
limit, answered at once, and nothing is enqueued or stored."""

from __future__ import annotations

import time
import warnings

import asyncssh
import pytest

from connectors.ssh import MAX_BCRYPT_ROUNDS, MAX_RSA_BITS
from tests.connectors.test_ssh_keys import big_rsa_key, with_rounds
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e


def _sftp(key: str, passphrase: str | None = None) -> dict[str, object]:
    auth = {"type": "private_key", "private_key": key, "passphrase": passphrase}
    return {"host": "127.0.0.1", "user": "u", "auth": auth, "path": "/data"}


@pytest.mark.parametrize("path", ["/sources/test", "/sources"])
def test_keys_over_a_bound_are_422_at_once(stack: Stack, path: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bcrypt warns about 16 rounds, ssh-keygen's own default
        encrypted = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh", "pw", rounds=16)
    cases = [
        (_sftp(with_rounds(encrypted.decode(), 2**31), "pw"), f"more than the {MAX_BCRYPT_ROUNDS} allowed"),
        (_sftp(big_rsa_key(9216)), f"larger than the {MAX_RSA_BITS} bits allowed"),
    ]
    r = stack.redis.client()
    before = set(r.scan_iter("sourcecheck:job:*"))
    for configuration, limit in cases:
        body = {"source_definition_id": "sftp", "configuration": configuration, "name": "k"}
        started = time.monotonic()
        with stack.client() as client:
            response = client.post(stack.url(path), json=body)
        assert time.monotonic() - started < 2
        assert response.status_code == 422, response.text[:500]
        error = response.json()["error"]
        assert error["code"] == "invalid_configuration"
        assert [e["field"] for e in error["errors"]] == ["configuration.auth.private_key.private_key"]
        assert limit in error["errors"][0]["message"]
    assert set(r.scan_iter("sourcecheck:job:*")) == before
