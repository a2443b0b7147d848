"""POST .../sources/test and GET .../sources/test/{job_id}, end to end through the real stack."""

from __future__ import annotations

import time

import pytest

from tests.servers.postgres import PostgresServer
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e


def _test(stack: Stack, body: dict, **params: object):  # type: ignore[no-untyped-def]
    with stack.client() as client:
        return client.post(stack.url("/sources/test"), json=body, params=params)


def _create_source(stack: Stack, config: dict, definition: str = "postgres") -> str:
    with stack.client() as client:
        r = client.post(
            stack.url("/sources"), json={"source_definition_id": definition, "name": "db", "configuration": config}
        )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_inline_postgres_test_succeeds_with_full_job_info(stack: Stack, postgres_server: PostgresServer) -> None:
    r = _test(stack, {"source_definition_id": "postgres", "configuration": postgres_server.config(), "name": "replica"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded"
    info = body["job_info"]
    assert info["job_id"].startswith("job_")
    assert info["source_definition_id"] == "postgres"
    assert info["source_id"] is None and info["name"] == "replica"
    assert info["created_at"] and info["started_at"] and info["ended_at"]
    assert info["duration_ms"] > 0
    assert info["worker"].startswith("e2e@")
    assert [s["name"] for s in info["steps"]] == ["resolve", "tcp", "tls", "authenticate", "access"]
    assert all(s["status"] == "succeeded" and s["duration_ms"] >= 0 for s in info["steps"])
    assert info["type"] is None and info["message"] is None


def test_stored_source_test_succeeds(stack: Stack, postgres_server: PostgresServer) -> None:
    source_id = _create_source(stack, postgres_server.config())
    r = _test(stack, {"source_id": source_id})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    assert r.json()["job_info"]["source_id"] == source_id


def test_wrong_password_fails_with_authentication_failed_and_a_useful_message(
    stack: Stack, postgres_server: PostgresServer
) -> None:
    wrong = "Wrong-Password-5c1e"
    r = _test(stack, {"source_definition_id": "postgres", "configuration": postgres_server.config(password=wrong)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "failed"
    info = body["job_info"]
    assert info["type"] == "authentication_failed"
    assert postgres_server.user in info["message"]
    assert info["hint"] and info["retryable"] is False
    assert wrong not in r.text


def test_override_fields_of_a_stored_source_without_saving_them(stack: Stack, postgres_server: PostgresServer) -> None:
    source_id = _create_source(stack, postgres_server.config())
    r = _test(stack, {"source_id": source_id, "configuration": {"password": "not-the-password"}})
    assert r.json()["status"] == "failed"
    assert r.json()["job_info"]["type"] == "authentication_failed"
    # Nothing was saved: the stored source still works.
    assert _test(stack, {"source_id": source_id}).json()["status"] == "succeeded"


def test_masked_secret_sent_back_keeps_its_stored_value(stack: Stack, postgres_server: PostgresServer) -> None:
    source_id = _create_source(stack, postgres_server.config())
    with stack.client() as client:
        shown = client.get(stack.url(f"/sources/{source_id}")).json()["configuration"]
    assert shown["password"] == "**********"
    r = _test(stack, {"source_id": source_id, "configuration": shown})
    assert r.json()["status"] == "succeeded", r.text


def test_closed_port_fails_with_connection_refused(stack: Stack, closed_port: int) -> None:
    config = {"host": "127.0.0.1", "port": closed_port, "database": "app", "user": "u", "password": "p"}
    r = _test(stack, {"source_definition_id": "postgres", "configuration": config})
    assert r.status_code == 200
    info = r.json()["job_info"]
    assert r.json()["status"] == "failed"
    assert info["type"] == "connection_refused"
    assert "Connection refused" in info["message"]
    # resolve, tcp, tls, authenticate, access: no ssh, ssh_auth, tunnel without an SSH tunnel
    assert [s["name"] for s in info["steps"]] == ["resolve", "tcp", "tls", "authenticate", "access"]
    assert [s["status"] for s in info["steps"]] == ["succeeded", "failed"] + ["skipped"] * 3


def test_server_that_never_answers_fails_at_the_deadline_with_timeout(
    stack: Stack, hung_server: tuple[str, int]
) -> None:
    host, port = hung_server
    config = {"host": host, "port": port, "database": "app", "user": "u", "password": "p"}
    started = time.monotonic()
    r = _test(stack, {"source_definition_id": "postgres", "configuration": config}, timeout=1.5)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed"
    assert r.json()["job_info"]["type"] == "timeout"
    assert r.json()["job_info"]["timeout_seconds"] == 1.5
    assert 1.5 <= elapsed < 6


def test_slow_test_answers_202_with_location_and_can_be_polled(stack: Stack, hung_server: tuple[str, int]) -> None:
    host, port = hung_server
    config = {"host": host, "port": port, "database": "app", "user": "u", "password": "p"}
    r = _test(stack, {"source_definition_id": "postgres", "configuration": config}, wait=0, timeout=2)
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("pending", "running")
    job_id = r.json()["job_info"]["job_id"]
    location = r.headers["location"]
    assert location.endswith(stack.url(f"/sources/test/{job_id}"))
    with stack.client() as client:
        polled = client.get(location, params={"wait": 0})
        assert polled.status_code in (200, 202)
        final = client.get(location, params={"wait": 10})
    assert final.status_code == 200, final.text
    assert final.json()["status"] == "failed"
    assert final.json()["job_info"]["type"] == "timeout"
    assert final.json()["job_info"]["job_id"] == job_id


def test_polling_an_unknown_job_answers_404(stack: Stack) -> None:
    with stack.client() as client:
        r = client.get(stack.url("/sources/test/job_0123456789abcdef0123456789abcdef"))
    assert r.status_code == 404
    assert "expired" in r.json()["error"]["message"]


def test_polling_another_organizations_job_answers_404(stack: Stack, closed_port: int) -> None:
    config = {"host": "127.0.0.1", "port": closed_port, "database": "app", "user": "u", "password": "p"}
    job_id = _test(stack, {"source_definition_id": "postgres", "configuration": config}).json()["job_info"]["job_id"]
    with stack.client(stack.other_token) as client:
        r = client.get(stack.url(f"/sources/test/{job_id}", org_id=stack.other_org_id))
    assert r.status_code == 404


def test_mysql_inline_succeeds_and_wrong_password_fails(stack: Stack, mariadb_server) -> None:  # type: ignore[no-untyped-def]
    ok = _test(stack, {"source_definition_id": "mysql", "configuration": mariadb_server.config()})
    assert ok.json()["status"] == "succeeded", ok.text
    bad = _test(stack, {"source_definition_id": "mysql", "configuration": mariadb_server.config(password="nope-nope")})
    assert bad.json()["status"] == "failed"
    assert bad.json()["job_info"]["type"] == "authentication_failed"


def test_http_inline_succeeds_and_unauthorized_fails(stack: Stack, http_server) -> None:  # type: ignore[no-untyped-def]
    ok = _test(stack, {"source_definition_id": "http", "configuration": {"url": f"{http_server.base_url}/ok"}})
    assert ok.json()["status"] == "succeeded", ok.text
    bad = _test(
        stack,
        {
            "source_definition_id": "http",
            "configuration": {
                "url": f"{http_server.base_url}/protected",
                "auth": {"type": "basic", "username": http_server.username, "password": "wrong"},
            },
        },
    )
    assert bad.json()["status"] == "failed"
    assert bad.json()["job_info"]["type"] == "authentication_failed"
