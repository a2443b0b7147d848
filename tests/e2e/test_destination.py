"""Stored secrets are bound to their destination: a PATCH or a test with ``configuration``
overrides that points a stored source somewhere else (a field its connector's schema marks
``x-destination``: host, port, url, base_url, token_url, the tunnel's host...) is refused
with 422 ``secrets_required`` unless every secret is sent again. The attack: a key holder
points a stored postgres source at their own listener, which asks for the password in clear."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest

from connectors.base import MASK
from tests.servers.http import HttpServer, start_http_server
from tests.servers.postgres import CleartextPasswordListener, PostgresServer
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def listener() -> Iterator[CleartextPasswordListener]:
    with CleartextPasswordListener() as server:
        yield server


@pytest.fixture
def source_id(stack: Stack, postgres_server: PostgresServer) -> Iterator[str]:
    with stack.client() as client:
        created = client.post(
            stack.url("/sources"),
            json={"source_definition_id": "postgres", "name": "bound", "configuration": postgres_server.config()},
        )
        assert created.status_code == 201, created.text
        yield created.json()["id"]
        client.delete(stack.url(f"/sources/{created.json()['id']}"))


def assert_refused(answer: httpx.Response, *fields: str) -> None:
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "secrets_required"
    assert [e["field"] for e in error["errors"]] == [f"configuration.{f}" for f in fields]


def test_a_patch_to_another_host_with_the_masked_password_is_refused_and_changes_nothing(
    stack: Stack, postgres_server: PostgresServer, listener: CleartextPasswordListener, source_id: str
) -> None:
    with stack.client() as client:
        for change in ({"host": "localhost"}, {"port": listener.port}, {"host": "localhost", "port": listener.port}):
            answer = client.patch(
                stack.url(f"/sources/{source_id}"), json={"configuration": {**change, "password": MASK}}
            )
            assert_refused(answer, "password")
            assert "send" in answer.json()["error"]["message"].lower()
        shown = client.get(stack.url(f"/sources/{source_id}")).json()["configuration"]
        assert (shown["host"], shown["port"]) == (postgres_server.host, postgres_server.port)
        # Nothing moved: the source still logs in with its stored password.
        assert client.post(stack.url("/sources/test"), json={"source_id": source_id}).json()["status"] == "succeeded"
    assert listener.connections == 0


def test_a_test_with_overrides_to_the_attackers_listener_never_sends_the_stored_password(
    stack: Stack, postgres_server: PostgresServer, listener: CleartextPasswordListener, source_id: str
) -> None:
    with stack.client() as client:
        answers = [
            client.post(
                stack.url("/sources/test"),
                params={"wait": 10},
                json={"source_id": source_id, "configuration": override},
            )
            for override in ({"port": listener.port}, {"port": listener.port, "password": MASK})
        ]
        answers.append(
            client.patch(stack.url(f"/sources/{source_id}"), json={"configuration": {"port": listener.port}})
        )
        answers.append(client.post(stack.url("/sources/test"), params={"wait": 10}, json={"source_id": source_id}))
        # Another organization's test on the same worker is answered meanwhile, promptly.
        with stack.client(stack.other_token) as other:
            started = time.monotonic()
            healthy = other.post(
                stack.url("/sources/test", stack.other_org_id),
                params={"wait": 20},
                json={"source_definition_id": "postgres", "configuration": postgres_server.config()},
            )
            assert healthy.json()["status"] == "succeeded", healthy.text
            assert time.monotonic() - started < 15
    time.sleep(0.5)
    leaked = postgres_server.password.encode() in bytes(listener.received)
    assert not leaked, "the listener received the stored password"
    assert listener.connections == 0
    for answer in answers[:3]:
        assert_refused(answer, "password")
    assert answers[3].json()["status"] == "succeeded", answers[3].text  # the stored source is as it was


def test_the_new_destination_with_the_secrets_sent_again_is_accepted(
    stack: Stack, postgres_server: PostgresServer, listener: CleartextPasswordListener, source_id: str
) -> None:
    given = "sent-again-with-the-listener"
    with stack.client() as client:
        tested = client.post(
            stack.url("/sources/test"),
            params={"wait": 20},
            json={"source_id": source_id, "configuration": {"port": listener.port, "password": given}},
        )
        assert tested.status_code == 200, tested.text
        # Accepted and run: the check reached the listener, whose request for a cleartext password
        # without TLS is refused by the driver (so not even the password just sent goes out).
        assert tested.json()["status"] == "failed", tested.text
        assert "cleartext" in tested.json()["job_info"]["message"], tested.text
        received = bytes(listener.received)
        assert b"user\x00" + postgres_server.user.encode() in received
        assert given.encode() not in received
        leaked = postgres_server.password.encode() in received
        assert not leaked, "the listener received the stored password"

        moved = client.patch(
            stack.url(f"/sources/{source_id}"),
            json={"configuration": {"host": "localhost", "password": postgres_server.password}},
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["configuration"]["host"] == "localhost"


def test_other_fields_keep_the_stored_secrets(stack: Stack, postgres_server: PostgresServer, source_id: str) -> None:
    with stack.client() as client:
        same = {"host": postgres_server.host, "port": postgres_server.port, "password": MASK, "schema_name": "public"}
        answer = client.patch(stack.url(f"/sources/{source_id}"), json={"configuration": same})
        assert answer.status_code == 200, answer.text
        tested = client.post(
            stack.url("/sources/test"),
            params={"wait": 20},
            json={"source_id": source_id, "configuration": {"database": postgres_server.database}},
        )
        assert tested.json()["status"] == "succeeded", tested.text


def test_adding_a_tunnel_is_a_new_destination(
    stack: Stack, listener: CleartextPasswordListener, source_id: str
) -> None:
    tunnel = {
        "host": "127.0.0.1",
        "port": listener.port,
        "user": "attacker",
        "auth": {"type": "password", "password": "mine"},
    }
    with stack.client() as client:
        answer = client.patch(stack.url(f"/sources/{source_id}"), json={"configuration": {"ssh_tunnel": tunnel}})
        assert_refused(answer, "password")
        assert "ssh_tunnel.host" in answer.json()["error"]["message"]
    assert listener.connections == 0


def test_an_http_source_is_not_pointed_at_another_server_with_its_basic_auth_password(
    stack: Stack, http_server: HttpServer
) -> None:
    auth = {"type": "basic", "username": http_server.username, "password": http_server.password}
    with stack.client() as client, start_http_server() as attacker:
        created = client.post(
            stack.url("/sources"),
            json={
                "source_definition_id": "http",
                "name": "api",
                "configuration": {"url": http_server.url("/protected"), "auth": auth},
            },
        )
        assert created.status_code == 201, created.text
        source_id = created.json()["id"]
        moved = {"url": attacker.url("/protected"), "auth": {"type": "basic", "password": MASK}}
        answers = [
            client.post(
                stack.url("/sources/test"), params={"wait": 10}, json={"source_id": source_id, "configuration": moved}
            ),
            client.patch(stack.url(f"/sources/{source_id}"), json={"configuration": moved}),
        ]
        time.sleep(0.5)
        sent = [r.headers.get("authorization", "").removeprefix("Basic ") for r in attacker.requests]
        leaked = any(http_server.password.encode() in base64.b64decode(value + "==") for value in sent if value)
        assert not leaked, "the other server received the stored password"
        assert not attacker.connections
        for answer in answers:
            assert_refused(answer, "auth.password")
        tested = client.post(stack.url("/sources/test"), params={"wait": 20}, json={"source_id": source_id})
        assert tested.json()["status"] == "succeeded", tested.text
        client.delete(stack.url(f"/sources/{source_id}"))
