"""The probe children run their checks in the profile of the settings in their environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from tests.servers.pgwire import CleartextPostgres
from worker.crypto import Cipher
from worker.runner import ProbeRunner

KEY = Fernet.generate_key().decode()


@pytest.fixture
def production_runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProbeRunner]:
    # Spawned children take the parent's environment as it is when they start.
    monkeypatch.setenv("SOURCECHECK_PROFILE", "production")
    monkeypatch.setenv("SOURCECHECK_SECRET_KEYS", KEY)
    monkeypatch.setenv("SOURCECHECK_EGRESS_ALLOW", "127.0.0.1/32")  # the fake server's
    monkeypatch.delenv("SOURCECHECK_EGRESS_DENY", raising=False)
    runner = ProbeRunner([KEY], processes=1, grace=0.5)
    try:
        yield runner
    finally:
        runner.close()


def test_a_child_requires_tls_of_a_postgres_source_without_ssl_mode(production_runner: ProbeRunner) -> None:
    with CleartextPostgres() as server:
        config = {
            "host": "127.0.0.1",
            "port": server.address.port,
            "database": "app",
            "user": "u",
            "password": "pw-123456",
        }
        result = production_runner.run("postgres", Cipher([KEY]).encrypt_json(config), 5)

        assert result.failure.type == "tls_error", result
        assert "require it in production" in result.failure.message
        assert server.startups == 0
        assert server.passwords == []
