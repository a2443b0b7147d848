"""A stored source's history through the whole system, on a stack of this module's own (its
status-change count starts at zero): a real PostgreSQL login that works, then fails when the
role's password is changed on the server. The history shows both, newest first, with no
secret in it, the source's status changes were dispatched once each, and a webhook on
loopback received each once, signed.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from sourcecheck_client import verify_webhook

from tests.helpers import assert_absent
from tests.servers.postgres import PostgresServer
from tests.servers.stack import Stack, own_stack
from tests.servers.webhooks import WebhookReceiver
from worker.keys import HISTORY_STREAM

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def history_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with own_stack(tmp_path_factory, "history", workers=("h1",)) as running:
        yield running


@pytest.fixture
def role(postgres_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """A login role of its own on the real server (so changing its password disturbs no other test)."""
    name, password = f"hist_{secrets.token_hex(4)}", f"canary-{secrets.token_hex(12)}"
    admin = postgres_server.dsn(superuser=True, database="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT CONNECT ON DATABASE {postgres_server.database} TO {name}")
    try:
        yield name, password
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"REVOKE CONNECT ON DATABASE {postgres_server.database} FROM {name}")
            conn.execute(f"DROP ROLE IF EXISTS {name}")


def status_changes(stack: Stack) -> dict[str, float]:
    text = httpx.get(f"{stack.base_url}/metrics", timeout=10).text
    found = re.findall(r'^sourcecheck_status_changes_total\{outcome="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {outcome: float(value) for outcome, value in found}


def test_a_source_that_breaks_shows_both_tests_newest_first_without_its_secret_and_one_change(
    history_stack: Stack, postgres_server: PostgresServer, role: tuple[str, str], webhook_receiver: WebhookReceiver
) -> None:
    stack, (user, password) = history_stack, role
    admin = postgres_server.dsn(superuser=True, database="postgres")
    hook_key = secrets.token_hex(8)
    with stack.client() as client:
        hook = client.post(
            f"/v1/organizations/{stack.org_id}/webhooks", json={"url": webhook_receiver.url("ok", hook_key)}
        )
        assert hook.status_code == 201, hook.text
        signing_secret = hook.json()["secret"]
        created = client.post(
            stack.url("/sources"),
            json={
                "source_definition_id": "postgres",
                "name": "breaks",
                "configuration": postgres_server.config(user=user, password=password),
            },
        )
        assert created.status_code == 201, created.text
        source_id = created.json()["id"]
        tests_url = stack.url(f"/sources/{source_id}/tests")

        worked = client.post(stack.url("/sources/test"), json={"source_id": source_id}).json()
        assert worked["status"] == "succeeded", worked
        with psycopg.connect(admin, autocommit=True) as conn:  # the password rotated on the server
            conn.execute(f"ALTER ROLE {user} PASSWORD '{secrets.token_hex(12)}'")
        broke = client.post(stack.url("/sources/test"), json={"source_id": source_id}).json()
        assert broke["status"] == "failed" and broke["job_info"]["type"] == "authentication_failed", broke

        deadline = time.monotonic() + 15
        while (page := client.get(tests_url)).json()["count"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        source = client.get(stack.url(f"/sources/{source_id}"))

    body = page.json()
    assert body["count"] == 2
    newest, oldest = body["data"]
    assert (newest["job_id"], oldest["job_id"]) == (broke["job_info"]["job_id"], worked["job_info"]["job_id"])
    assert (newest["status"], newest["type"], newest["fields"]) == (
        "failed",
        "authentication_failed",
        ["user", "password"],
    )
    assert newest["hint"] and newest["message"] and newest["retryable"] is False
    assert [s["name"] for s in newest["steps"]] == [s["name"] for s in broke["job_info"]["steps"]]
    assert all(s["duration_ms"] >= 0 for s in newest["steps"]) and newest["worker"].startswith("h1@")
    assert oldest["status"] == "succeeded" and oldest["type"] is None
    last = source.json()["last_test"]
    assert (last["status"], last["type"]) == ("failed", "authentication_failed")

    deadline = time.monotonic() + 10
    while status_changes(stack).get("broke") != 1.0 and time.monotonic() < deadline:
        time.sleep(0.1)
    # The first success carries a new warning (a password sent without TLS): a change; the break is one more.
    assert oldest["warnings"] and {w["code"] for w in oldest["warnings"]} == {"weak_authentication"}
    assert status_changes(stack) == {"warnings_changed": 1.0, "broke": 1.0}
    assert len(re.findall(rf"source {source_id} status changed \(broke\)", stack.log_text())) == 1

    # Each change reached the webhook once, signed, saying what broke and what to fix.
    deadline = time.monotonic() + 15
    while len(webhook_receiver.posts("ok", hook_key)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # another round of the dispatcher: still two
    posts = webhook_receiver.posts("ok", hook_key)
    events = sorted((verify_webhook(signing_secret, p.headers, p.body) for p in posts), key=lambda e: e.occurred_at)
    assert [(e.previous_status, e.status) for e in events] == [(None, "succeeded"), ("succeeded", "failed")]
    assert all(e.source_id == source_id for e in events)
    broken = events[1].result
    assert (broken.job_id, broken.type, broken.fields) == (
        broke["job_info"]["job_id"],
        "authentication_failed",
        ["user", "password"],
    )
    assert broken.hint
    for post in posts:
        assert_absent(password, post.body, "a webhook delivery")

    # No secret in the history: the answer, the table, the stream it came through.
    with sqlite3.connect(stack.data_dir / "sourcecheck.db") as db:
        rows = db.execute("SELECT * FROM test_record WHERE source_id = ?", (source_id,)).fetchall()
    assert len(rows) == 2
    assert_absent(password, page.content, "the history answer")
    assert_absent(password, repr(rows).encode(), "the history table (test_record)")
    for path in stack.data_dir.glob("sourcecheck.db*"):
        assert_absent(password, path.read_bytes(), f"the database file {path.name}")
    entries = stack.redis.client().xrange(HISTORY_STREAM)
    assert entries == []  # recorded, acknowledged and deleted
