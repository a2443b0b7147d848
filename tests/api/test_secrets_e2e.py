"""A password sent to the API appears in plaintext nowhere but the probe's own connection."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.servers.postgres import PostgresServer
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e


def forms(secret: str) -> list[bytes]:
    """The secret as it would appear in plaintext or inside base64 at any alignment."""
    raw = secret.encode()
    found = [raw]
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        found.append(encoded[(pad * 8 + 5) // 6 + 1 : -4])
    return found


def assert_absent(secret: str, data: bytes, where: str) -> None:
    for form in forms(secret):
        assert form not in data, f"the secret appears in {where} (as {form!r})"


def test_forms_finds_a_secret_hidden_in_base64() -> None:
    secret = "canary-0123456789-abcdef"
    for prefix in (b"", b"x", b"xy"):
        with pytest.raises(AssertionError):
            assert_absent(secret, base64.b64encode(prefix + secret.encode() + b"tail"), "test")


def test_password_is_nowhere_in_redis_logs_or_database(stack: Stack, postgres_server: PostgresServer, tmp_path: Path) -> None:
    password = postgres_server.password
    with stack.redis.monitor(tmp_path / "monitor.log") as monitor_log, stack.client() as client:
        created = client.post(stack.url("/sources"), json={"source_definition_id": "postgres", "name": "canary",
                                                           "configuration": postgres_server.config()})
        assert created.status_code == 201
        inline = client.post(stack.url("/sources/test"), json={"source_definition_id": "postgres",
                                                              "configuration": postgres_server.config()})
        stored = client.post(stack.url("/sources/test"), json={"source_id": created.json()["id"]})
        listed = client.get(stack.url("/sources"))
        for response in (created, inline, stored, listed):
            assert_absent(password, response.content, f"the response of {response.request.url}")
    # The probe really used the password: it got in.
    assert inline.json()["status"] == "succeeded" and stored.json()["status"] == "succeeded"

    traffic = monitor_log.read_bytes()
    assert b"LPUSH" in traffic.upper() or b"lpush" in traffic  # the broker message was seen
    assert_absent(password, traffic, "the Redis command stream (broker messages, results, job records)")
    client = stack.redis.client()
    for key in client.scan_iter("*"):
        kind = client.type(key)
        if kind == b"string":
            value = client.get(key) or b""
        elif kind == b"list":
            value = b"".join(client.lrange(key, 0, -1))
        elif kind == b"hash":
            value = b"".join(k + v for k, v in client.hgetall(key).items())
        elif kind == b"set":
            value = b"".join(client.smembers(key))
        else:
            continue
        assert_absent(password, value, f"Redis key {key!r}")
    assert_absent(password, stack.log_text().encode(), "the API and worker logs")
    for path in stack.data_dir.glob("sourcecheck.db*"):
        assert_absent(password, path.read_bytes(), f"the database file {path.name}")


def test_awaiting_results_subscribes_to_nothing_per_job(stack: Stack, closed_port: int, tmp_path: Path) -> None:
    config = {"host": "127.0.0.1", "port": closed_port, "database": "app", "user": "u", "password": "p"}
    redis = stack.redis.client()
    patterns_before = redis.pubsub_numpat()
    with stack.redis.monitor(tmp_path / "monitor.log") as log, stack.client() as client:
        for _ in range(20):
            assert client.post(stack.url("/sources/test"), json={"source_definition_id": "postgres", "configuration": config}).json()["status"] == "failed"
    # Sending with Celery's Redis backend would SUBSCRIBE the API to every job's channel.
    assert b'"SUBSCRIBE"' not in log.read_bytes().upper()
    # Celery would subscribe the sender to each task's channel; the API subscribes to none.
    assert redis.pubsub_channels("celery-task-meta-*") == []
    # Its one pattern subscription serves every wait: awaiting adds none.
    assert redis.pubsub_numpat() == patterns_before
