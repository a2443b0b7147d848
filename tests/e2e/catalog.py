"""What every catalog test through the real stack shares: a case, its failing variants, and
the assertions on the API's answers (imported by tests/e2e/test_catalog*.py).

A connector's e2e module builds a :class:`Case` per connector from its server fixture and
runs it inline and stored, through ``stack`` (tests/servers/stack.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from connectors.registry import all_connectors
from tests.servers.stack import Stack

WRONG = "Wrong-Secret-7d41c9"
"""A wrong secret for an override: searched for in every answer, so it must never show."""


@dataclass(frozen=True)
class Failing:
    """A configuration (or an override of a stored one) that must fail, and how."""

    configuration: dict[str, Any]
    type: str
    step: str  # the step blamed
    mentions: tuple[str, ...]  # what the message must name (case-insensitive)
    secrets: tuple[str, ...] = ()  # values that must not show anywhere in the answer
    fields: tuple[str, ...] | None = None  # the configuration fields the failure must name (None: not checked)


@dataclass(frozen=True)
class Case:
    name: str  # the source definition id
    good: dict[str, Any]
    steps: tuple[str, ...]  # the planned steps of ``good``, in order
    inline_bad: Failing
    stored_bad: Failing  # an override of ``good``
    secrets: tuple[str, ...] = ()  # the real secrets of ``good``
    warnings: tuple[str, ...] = ()  # warning codes a success of ``good`` must carry (others may come too)


def run_test(stack: Stack, body: dict[str, Any]) -> httpx.Response:
    with stack.client() as client:
        return client.post(stack.url("/sources/test"), json=body, params={"timeout": 15})


def assert_succeeded(r: httpx.Response, case: Case) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    info = body["job_info"]
    assert body["status"] == "succeeded", f"{case.name}: {info['type']}: {info['message']} ({info['hint']})"
    assert [s["name"] for s in info["steps"]] == list(case.steps)
    # Every planned step ran, except one recorded as skipped in its place with its reason (no TLS on http://).
    for s in info["steps"]:
        assert s["status"] == "succeeded" or (s["status"] == "skipped" and s["message"]), s
    assert info["type"] is None and info["message"] is None and info["hint"] is None and info["fields"] is None
    codes = [w["code"] for w in info["warnings"]]
    assert set(case.warnings) <= set(codes), f"{case.name}: expected the warnings {case.warnings}, got {codes}"
    assert all(w["message"] and w["hint"] for w in info["warnings"]), info["warnings"]
    assert_no_secret_in(r, case.secrets)
    return dict(info)


def assert_failed(r: httpx.Response, case: Case, expected: Failing) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    info = body["job_info"]
    assert body["status"] == "failed", f"{case.name}: expected {expected.type}, got a success: {info['steps']}"
    assert info["type"] == expected.type, f"{case.name}: {info['type']}: {info['message']}"
    assert isinstance(info["hint"], str) and info["hint"].strip(), f"{case.name}: no hint"
    for text in expected.mentions:
        assert text.lower() in info["message"].lower(), f"{case.name}: {text!r} not in {info['message']!r}"
    assert info["retryable"] is False, f"{case.name}: a wrong configuration is not fixed by retrying"
    assert isinstance(info["fields"], list), info
    if expected.fields is not None:
        assert set(expected.fields) <= set(info["fields"]), f"{case.name}: fields {info['fields']}"
    # The planned steps, each once, in order; the blamed one failed, the later ones skipped.
    assert [s["name"] for s in info["steps"]] == list(case.steps)
    statuses = {s["name"]: s["status"] for s in info["steps"]}
    assert statuses[expected.step] == "failed", f"{case.name}: {info['steps']}"
    after = list(case.steps)[list(case.steps).index(expected.step) + 1 :]
    assert all(statuses[name] == "skipped" for name in after), info["steps"]
    assert_no_secret_in(r, case.secrets + expected.secrets)
    return dict(info)


def assert_no_secret_in(r: httpx.Response, secrets: tuple[str, ...]) -> None:
    leaked = [f"a {len(s)}-character secret" for s in secrets if s and s in r.text]
    assert not leaked, f"leaked into the answer: {leaked}"


def secret_names(schema: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(names of properties marked secret, names of properties not marked) in ``schema`` and its $defs."""

    def marked(prop: dict[str, Any]) -> bool:
        if prop.get("secret") is True:
            return True
        branches = [b for b in prop.get("anyOf", prop.get("oneOf", [])) if b.get("type") != "null"]
        return bool(branches) and all(marked(b) for b in branches)

    secret: set[str] = set()
    plain: set[str] = set()
    models = [schema, *schema.get("$defs", {}).values()]
    for model in models:
        for name, prop in model.get("properties", {}).items():
            (secret if marked(prop) else plain).add(name)
    return secret, plain


def check_inline_success(stack: Stack, case: Case) -> None:
    r = run_test(stack, {"source_definition_id": case.name, "configuration": case.good})
    info = assert_succeeded(r, case)
    assert info["source_definition_id"] == case.name and info["source_id"] is None


def check_inline_failure(stack: Stack, case: Case) -> None:
    r = run_test(stack, {"source_definition_id": case.name, "configuration": case.inline_bad.configuration})
    assert_failed(r, case, case.inline_bad)


def check_stored(stack: Stack, case: Case) -> None:
    with stack.client() as client:
        created = client.post(
            stack.url("/sources"),
            json={"source_definition_id": case.name, "name": f"catalog {case.name}", "configuration": case.good},
        )
    assert created.status_code == 201, created.text
    assert_no_secret_in(created, case.secrets)
    source_id = created.json()["id"]
    try:
        info = assert_succeeded(run_test(stack, {"source_id": source_id}), case)
        assert info["source_id"] == source_id and info["source_definition_id"] == case.name

        bad = case.stored_bad
        info = assert_failed(run_test(stack, {"source_id": source_id, "configuration": bad.configuration}), case, bad)
        assert info["source_id"] == source_id

        # The override was not saved: the stored source still works.
        assert_succeeded(run_test(stack, {"source_id": source_id}), case)
    finally:
        with stack.client() as client:
            client.delete(stack.url(f"/sources/{source_id}"))


def check_unreachable(
    stack: Stack, name: str, configuration: dict[str, Any], expected: str = "connection_refused"
) -> None:
    """A configuration aimed at a closed port fails, retryable, with the planned steps after it skipped."""
    r = run_test(stack, {"source_definition_id": name, "configuration": configuration})
    assert r.status_code == 200, r.text
    info = r.json()["job_info"]
    assert r.json()["status"] == "failed" and info["type"] == expected, info
    assert info["retryable"] is True and info["hint"], info
    assert info["fields"], f"{name}: an unreachable server must name the fields to check: {info}"


def check_hung(stack: Stack, name: str, configuration: dict[str, Any], timeout: float = 2.0) -> None:
    """A configuration aimed at a server that accepts and never answers ends in ``timeout`` by the deadline."""
    with stack.client() as client:
        r = client.post(
            stack.url("/sources/test"),
            json={"source_definition_id": name, "configuration": configuration},
            params={"timeout": timeout},
        )
    assert r.status_code == 200, r.text
    info = r.json()["job_info"]
    assert r.json()["status"] == "failed" and info["type"] in ("timeout", "connection_timeout"), info
    assert info["retryable"] is True, info


def check_definition(stack: Stack, name: str, secret_fields: set[str]) -> None:
    """``GET .../source-definitions/{name}`` serves the connector's whole schema, ``secret_fields`` marked."""
    with stack.client() as client:
        r = client.get(stack.url(f"/source-definitions/{name}"))
    assert r.status_code == 200, r.text
    definition = r.json()
    spec = definition["connection_specification"]
    assert definition["category"] in ("database", "files", "web", "saas"), definition
    assert spec == all_connectors()[name].connection_specification(), name
    secret, plain = secret_names(spec)
    assert secret_fields <= secret, f"{name}: not marked secret: {secret_fields - secret}"
    assert not (secret_fields & plain), f"{name}: a secret field is also unmarked somewhere"


def check_through_the_stack(
    stack: Stack,
    case: Case,
    *,
    unreachable: dict[str, Any],
    hung: dict[str, Any],
    secret_fields: set[str],
) -> None:
    """Every check of ``case``: inline success and failure, stored with an override, aimed at a
    closed port (``unreachable``) and at a silent server (``hung``), and its definition."""
    check_inline_success(stack, case)
    check_inline_failure(stack, case)
    check_stored(stack, case)
    check_unreachable(stack, case.name, unreachable)
    check_hung(stack, case.name, hung)
    check_definition(stack, case.name, secret_fields)
