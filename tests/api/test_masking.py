"""Stored sources are shown masked from their connector's schema, without running a validator:
the same answer as the validated configuration's, at a read's cost."""

from __future__ import annotations

import time

import pytest
from cryptography.fernet import Fernet

from api.models import Source
from api.sources import masked_configuration, to_public
from connectors.base import MASK
from connectors.registry import all_connectors, get_connector
from tests.connectors.test_ssh_keys import big_rsa_key
from worker.crypto import Cipher


@pytest.mark.parametrize("name", sorted(all_connectors()))
def test_masking_from_the_schema_is_what_the_validated_configuration_shows(name: str) -> None:
    connector = get_connector(name)
    config = connector.parse_config(connector.example_config("127.0.0.1", 9))
    assert masked_configuration(name, config.revealed()) == config.masked()


def test_a_tunnel_with_a_private_key_is_masked_in_every_secret() -> None:
    tunnel = {
        "host": "b",
        "port": 22,
        "user": "t",
        "auth": {"type": "private_key", "private_key": "K", "passphrase": "P"},
    }
    stored = {"host": "h", "port": 5432, "database": "d", "user": "u", "password": "pw", "ssh_tunnel": tunnel}
    shown = masked_configuration("postgres", stored)
    assert shown["password"] == MASK
    assert shown["ssh_tunnel"]["auth"] == {"type": "private_key", "private_key": MASK, "passphrase": MASK}
    assert masked_configuration("postgres", {**stored, "unknown": "x"})["unknown"] == MASK


def test_showing_a_stored_source_runs_no_validator() -> None:
    # Stored before the key bounds existed: showing it neither refuses it nor parses the key.
    cipher = Cipher([Fernet.generate_key().decode()])
    key = big_rsa_key(9216)
    stored = {"host": "h", "user": "u", "auth": {"type": "private_key", "private_key": key}, "path": "/"}
    source = Source(
        id="src_1",
        organization_id="org_1",
        workspace_id="ws_1",
        source_definition_id="sftp",
        name="s",
        configuration_encrypted=cipher.encrypt_json(stored),
    )
    started = time.monotonic()
    shown = to_public(cipher, source).configuration
    assert time.monotonic() - started < 0.5
    assert shown["auth"]["private_key"] == MASK and key not in str(shown)
