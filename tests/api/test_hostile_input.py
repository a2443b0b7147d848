"""Hostile requests: oversized, deeply nested, huge or malformed input gets a 4xx, never a 5xx,
and nothing is enqueued or stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.models import MAX_CONFIGURATION_DEPTH, MAX_CONFIGURATION_ITEMS
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e

LIMIT = 64 * 1024  # ApiSettings.max_body_bytes' default


@pytest.fixture
def nothing_enqueued(stack: Stack) -> Iterator[None]:
    r = stack.redis.client()
    before = set(r.scan_iter("sourcecheck:job:*"))
    yield
    assert set(r.scan_iter("sourcecheck:job:*")) == before, "a job was recorded"


def _post(stack: Stack, path: str, content: bytes | Iterator[bytes], org: str | None = None) -> httpx.Response:
    with stack.client() as client:
        return client.post(stack.url(path, org_id=org), content=content, headers={"Content-Type": "application/json"})


def _nested(depth: int) -> dict[str, Any]:
    """A configuration ``depth`` objects deep (the configuration itself is the first)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return dict(body["error"])


# --- size ------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_when_declared(stack: Stack, nothing_enqueued: None) -> None:
    body = json.dumps({"source_definition_id": "http", "configuration": {"url": "http://x/", "pad": "x" * LIMIT}})
    _error(_post(stack, "/sources/test", body.encode()), 413, "payload_too_large")


def test_a_body_over_the_limit_is_413_when_streamed_without_a_length(stack: Stack, nothing_enqueued: None) -> None:
    def chunks() -> Iterator[bytes]:  # chunked transfer encoding: no Content-Length to refuse early
        yield b'{"source_definition_id": "http", "configuration": {"pad": "'
        for _ in range(LIMIT // 1024 + 8):
            yield b"x" * 1024
        yield b'"}}'

    _error(_post(stack, "/sources/test", chunks()), 413, "payload_too_large")
    _error(_post(stack, "/sources", chunks()), 413, "payload_too_large")


def test_a_body_just_under_the_limit_is_read(stack: Stack, nothing_enqueued: None) -> None:
    body = json.dumps({"source_definition_id": "nope", "configuration": {"pad": "x" * (LIMIT - 200)}}).encode()
    assert len(body) <= LIMIT
    error = _error(_post(stack, "/sources/test", body), 422, "invalid_request")
    assert "nope" in error["message"]  # it got as far as looking up the definition


# --- shape -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/sources/test", "/sources"])
def test_a_configuration_nested_past_the_limit_is_422(stack: Stack, path: str, nothing_enqueued: None) -> None:
    body = {"source_definition_id": "http", "name": "deep", "configuration": _nested(MAX_CONFIGURATION_DEPTH + 1)}
    error = _error(_post(stack, path, json.dumps(body).encode()), 422, "invalid_request")
    assert error["errors"] == [
        {"field": "configuration", "message": f"Value error, is nested deeper than {MAX_CONFIGURATION_DEPTH} levels"}
    ]


def test_a_configuration_at_the_depth_limit_is_validated_by_its_connector(stack: Stack, nothing_enqueued: None) -> None:
    body = {"source_definition_id": "http", "configuration": _nested(MAX_CONFIGURATION_DEPTH)}
    error = _error(_post(stack, "/sources/test", json.dumps(body).encode()), 422, "invalid_configuration")
    assert {e["field"] for e in error["errors"]} >= {"configuration.url", "configuration.a"}


def test_json_nested_past_the_parser_is_422_not_500(stack: Stack, nothing_enqueued: None) -> None:
    depth = 9_000  # past Python's recursion limit, within the size limit
    body = b'{"source_definition_id": "http", "configuration": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    assert len(body) < LIMIT
    _error(_post(stack, "/sources/test", body), 422, "invalid_request")
    arrays = b"[" * 30_000 + b"]" * 30_000
    _error(_post(stack, "/sources", arrays), 422, "invalid_request")


def test_a_configuration_with_too_many_keys_is_422(stack: Stack, nothing_enqueued: None) -> None:
    wide = {f"k{i}": i for i in range(MAX_CONFIGURATION_ITEMS + 1)}
    body = {"source_definition_id": "http", "configuration": wide}
    error = _error(_post(stack, "/sources/test", json.dumps(body).encode()), 422, "invalid_request")
    assert "keys and list items" in error["errors"][0]["message"]
    items = {"url": "http://x/", "list": [[0] * 100 for _ in range(6)]}  # 600 list items, 3 levels
    body = {"source_definition_id": "http", "configuration": items}
    _error(_post(stack, "/sources/test", json.dumps(body).encode()), 422, "invalid_request")


def test_a_configuration_key_that_is_too_long_is_422(stack: Stack, nothing_enqueued: None) -> None:
    body = {"source_definition_id": "http", "configuration": {"k" * 201: 1}}
    error = _error(_post(stack, "/sources/test", json.dumps(body).encode()), 422, "invalid_request")
    assert "key longer than" in error["errors"][0]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'"text"',
        b"{",
        b"\xff\xfe",
        b'{"source_id": 5}',
        b'{"configuration": []}',
        b'{"source_definition_id": "http", "configuration": "x"}',
        b'{"source_id": "src_\\u0000"}',
        b'{"source_id": "' + b"s" * 5000 + b'"}',
        b'{"source_definition_id": "../../etc/passwd", "configuration": {}}',
        b'{"source_definition_id": "http", "configuration": {"url": "http://x/"}, "extra": 1}',
    ],
)
def test_malformed_bodies_are_422(stack: Stack, body: bytes, nothing_enqueued: None) -> None:
    _error(_post(stack, "/sources/test", body), 422, "invalid_request")


@pytest.mark.parametrize("name", ["", "a\x00b", "line\nbreak", "tab\there", "x" * 201, "esc\x1b[31m"])
def test_names_with_control_characters_or_out_of_bounds_are_422(stack: Stack, name: str) -> None:
    with stack.client() as client:
        r = client.post(
            stack.url("/sources"),
            json={"source_definition_id": "http", "name": name, "configuration": {"url": "http://x/"}},
        )
        _error(r, 422, "invalid_request")
        r = client.post(f"/v1/organizations/{stack.org_id}/workspaces", json={"name": name})
        _error(r, 422, "invalid_request")


@pytest.mark.parametrize("bad_id", ["src%00x", "src x", "a" * 101, "src_%E2%80%AE", "..%2F..%2Fsecret", "src;drop"])
def test_malformed_ids_in_paths_are_422_and_well_formed_unknown_ones_404(stack: Stack, bad_id: str) -> None:
    with stack.client() as client:
        for path in (f"/sources/{bad_id}", f"/sources/test/{bad_id}", f"/source-definitions/{bad_id}"):
            r = client.get(stack.base_url + stack.url(path))
            assert r.status_code in (404, 422), (path, r.status_code)  # a decoded "/" may end the route: 404
            assert r.status_code < 500
            if r.status_code == 422:
                assert r.json()["error"]["code"] == "invalid_request"
        assert client.get(stack.url("/sources/src_doesnotexist")).status_code == 404


def test_hostile_host_fields_are_422_naming_the_field(stack: Stack, nothing_enqueued: None) -> None:
    for host in ("db.example.com\r\nX: y", "db example.com", "host=evil dbname=x", "a@b", "db\x00.example.com", "a,b"):
        config = {"host": host, "database": "app", "user": "reader", "password": "pw"}
        with stack.client() as client:
            r = client.post(
                stack.url("/sources/test"), json={"source_definition_id": "postgres", "configuration": config}
            )
        error = _error(r, 422, "invalid_configuration")
        assert [e["field"] for e in error["errors"]] == ["configuration.host"]
        assert host not in r.text
