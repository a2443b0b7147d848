"""Bad requests to POST .../sources/test get a clear error and enqueue nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.postgres import PostgresServer
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e

SECRET = "Sup3r-Secret-Value-913"


@pytest.fixture
def nothing_enqueued(stack: Stack) -> Iterator[None]:
    """Fails the test if it made a job record or left a message on the queue."""
    r = stack.redis.client()
    before = set(r.scan_iter("sourcecheck:job:*"))
    yield
    assert set(r.scan_iter("sourcecheck:job:*")) == before, "a job was recorded"
    assert r.llen("sourcecheck.probes") == 0


def _post(stack: Stack, body: object, token: str | None = None, org: str | None = None, **params: object):  # type: ignore[no-untyped-def]
    with stack.client(token) as client:
        return client.post(stack.url("/sources/test", org_id=org), json=body, params=params)


def test_neither_mode_is_a_422_that_says_what_to_send(stack: Stack, nothing_enqueued: None) -> None:
    r = _post(stack, {})
    assert r.status_code == 422
    assert "source_id" in r.json()["error"]["message"]


def test_definition_without_configuration_is_a_422(stack: Stack, nothing_enqueued: None) -> None:
    r = _post(stack, {"source_definition_id": "postgres"})
    assert r.status_code == 422
    assert "configuration" in r.json()["error"]["message"]


def test_unknown_definition_is_a_422_naming_the_known_ones(stack: Stack, nothing_enqueued: None) -> None:
    r = _post(stack, {"source_definition_id": "oracle", "configuration": {}})
    assert r.status_code == 422
    assert "oracle" in r.json()["error"]["message"]
    assert "postgres" in r.json()["error"]["message"]


def test_invalid_configuration_names_each_bad_field_and_never_echoes_secrets(
    stack: Stack, nothing_enqueued: None
) -> None:
    config = {"host": "db example", "port": 99999, "user": "u", "password": SECRET, "unexpected": SECRET}
    r = _post(stack, {"source_definition_id": "postgres", "configuration": config})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["error"]["errors"]}
    assert {"configuration.host", "configuration.port", "configuration.database", "configuration.unexpected"} <= fields
    assert SECRET not in r.text


def test_malformed_body_is_a_422_without_echoing_input(stack: Stack, nothing_enqueued: None) -> None:
    r = _post(stack, {"source_definition_id": "postgres", "configuration": SECRET})
    assert r.status_code == 422
    assert SECRET not in r.text


def test_malformed_organization_id_is_a_422(stack: Stack, nothing_enqueued: None) -> None:
    r = _post(stack, {"source_id": "src_x"}, org="acme")
    assert r.status_code == 422


def test_unknown_source_is_a_404(stack: Stack, nothing_enqueued: None) -> None:
    r = _post(stack, {"source_id": "src_doesnotexist"})
    assert r.status_code == 404


def test_another_organizations_source_is_a_404(stack: Stack, postgres_server: PostgresServer) -> None:
    with stack.client(stack.other_token) as client:
        created = client.post(
            stack.url("/sources", org_id=stack.other_org_id),
            json={"source_definition_id": "postgres", "name": "theirs", "configuration": postgres_server.config()},
        )
    assert created.status_code == 201
    r = _post(stack, {"source_id": created.json()["id"]})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_unknown_workspace_is_a_404(stack: Stack, postgres_server: PostgresServer, nothing_enqueued: None) -> None:
    r = _post(
        stack,
        {"source_definition_id": "postgres", "workspace_id": "ws_nope", "configuration": postgres_server.config()},
    )
    assert r.status_code == 404
    assert "ws_nope" in r.json()["error"]["message"]


def test_missing_token_is_a_401(stack: Stack, nothing_enqueued: None) -> None:
    import httpx

    r = httpx.post(stack.base_url + stack.url("/sources/test"), json={"source_id": "src_x"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_wrong_token_is_a_401(stack: Stack, nothing_enqueued: None) -> None:
    r = _post(stack, {"source_id": "src_x"}, token="sck_000000000000_" + "A" * 43)
    assert r.status_code == 401


def test_token_of_another_organization_is_a_404(stack: Stack, nothing_enqueued: None) -> None:
    r = _post(stack, {"source_id": "src_x"}, token=stack.other_token)
    assert r.status_code == 404


def test_wait_and_timeout_out_of_bounds_are_422(
    stack: Stack, postgres_server: PostgresServer, nothing_enqueued: None
) -> None:
    body = {"source_definition_id": "postgres", "configuration": postgres_server.config()}
    assert _post(stack, body, wait=10_000).status_code == 422
    assert _post(stack, body, timeout=0).status_code == 422
    assert _post(stack, body, timeout=3600).status_code == 422
