"""The probe children apply the egress policy of the settings in their environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from tests.servers.tcp import CountingListener
from worker.crypto import Cipher
from worker.runner import ProbeRunner

KEY = Fernet.generate_key().decode()


@pytest.fixture
def production_runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProbeRunner]:
    # Spawned children take the parent's environment as it is when they start.
    monkeypatch.setenv("SOURCECHECK_PROFILE", "production")
    monkeypatch.setenv("SOURCECHECK_SECRET_KEYS", KEY)
    monkeypatch.setenv("SOURCECHECK_EGRESS_ALLOW", "127.0.0.2/32")
    monkeypatch.delenv("SOURCECHECK_EGRESS_DENY", raising=False)
    runner = ProbeRunner([KEY], processes=1, grace=0.5)
    try:
        yield runner
    finally:
        runner.close()


def test_a_child_refuses_what_the_production_profile_refuses(production_runner: ProbeRunner) -> None:
    listener = CountingListener("127.0.0.1")
    try:
        token = Cipher([KEY]).encrypt_json({"url": f"http://127.0.0.1:{listener.port}/ok"})
        result = production_runner.run("http", token, 5)
        assert result.status == "failed"
        assert result.failure.type == "egress_blocked", result
        assert listener.accepted == 0
    finally:
        listener.close()
    allowed = CountingListener("127.0.0.2")  # SOURCECHECK_EGRESS_ALLOW opens this one
    try:
        result = production_runner.run(
            "http", Cipher([KEY]).encrypt_json({"url": f"http://127.0.0.2:{allowed.port}/"}), 5
        )
        assert result.failure.type != "egress_blocked", result
        assert allowed.accepted >= 1
    finally:
        allowed.close()
