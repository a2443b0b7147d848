"""The authorization matrix: every endpoint × every kind of credential, and no existence leaks.

For each route under ``/v1/organizations/{organization_id}``:

- no token, a malformed token, a revoked token → 401;
- a valid token of another organization → 404 (the organization "does not exist" for it);
- the organization's own token → the route's success status.

And an id that belongs to another organization (a source, a job) is answered exactly as an
id that exists nowhere: same status, same body but for the id itself. API keys are kept
only as a SHA-256 (checked in the database file), compared in constant time and revocable.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api import accounts
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e

CLOSED = "http://127.0.0.1:9/"  # the discard port: nothing listens in the test machines
MISSING_SOURCE = "src_0000000000000000"
MISSING_JOB = "job_00000000000000000000000000000000"


@dataclass
class World:
    stack: Stack
    source: str  # of the stack's organization
    job: str
    other_source: str  # of the other organization
    other_job: str
    revoked: str  # a token of the stack's organization, revoked


def _source(stack: Stack, token: str, org: str) -> str:
    body = {"source_definition_id": "http", "name": "authz", "configuration": {"url": CLOSED}}
    with stack.client(token) as client:
        r = client.post(stack.url("/sources", org_id=org), json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _job(stack: Stack, token: str, org: str, source: str) -> str:
    with stack.client(token) as client:
        r = client.post(stack.url("/sources/test", org_id=org), json={"source_id": source}, params={"wait": 0})
    assert r.status_code in (200, 202), r.text
    return str(r.json()["job_info"]["job_id"])


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    source = _source(stack, stack.token, stack.org_id)
    other_source = _source(stack, stack.other_token, stack.other_org_id)
    revoked = stack.cli("apikey", "create", "--org", stack.org_id).stdout.strip()
    assert stack.cli("apikey", "revoke", revoked.split("_")[1]).returncode == 0
    return World(
        stack=stack,
        source=source,
        job=_job(stack, stack.token, stack.org_id, source),
        other_source=other_source,
        other_job=_job(stack, stack.other_token, stack.other_org_id, other_source),
        revoked=revoked,
    )


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable[[World], str]  # under .../knowledge/connectors unless it starts with /workspaces or /webhooks
    ok: tuple[int, ...]
    body: Callable[[World], Any] | None = None
    params: dict[str, Any] | None = None


def _fresh_source(w: World) -> str:
    return f"/sources/{_source(w.stack, w.stack.token, w.stack.org_id)}"


_webhooks: dict[str, str] = {}


def _webhook(w: World, fresh: bool = False) -> str:
    """``/webhooks/<id>`` of a webhook of the stack's organization (a new one if ``fresh``)."""
    if fresh or "kept" not in _webhooks:
        with w.stack.client() as client:
            r = client.post(f"/v1/organizations/{w.stack.org_id}/webhooks", json={"url": CLOSED})
        assert r.status_code == 201, r.text
        if fresh:
            return f"/webhooks/{r.json()['id']}"
        _webhooks["kept"] = r.json()["id"]
    return f"/webhooks/{_webhooks['kept']}"


ENDPOINTS = [
    Endpoint(
        "test a source", "POST", lambda w: "/sources/test", (200, 202), lambda w: {"source_id": w.source}, {"wait": 0}
    ),
    Endpoint(
        "test inline",
        "POST",
        lambda w: "/sources/test",
        (200, 202),
        lambda w: {"source_definition_id": "http", "configuration": {"url": CLOSED}},
        {"wait": 0},
    ),
    Endpoint("poll a test", "GET", lambda w: f"/sources/test/{w.job}", (200, 202)),
    Endpoint("list definitions", "GET", lambda w: "/source-definitions", (200,)),
    Endpoint("get a definition", "GET", lambda w: "/source-definitions/http", (200,)),
    Endpoint("get a definition's form", "GET", lambda w: "/source-definitions/http/form", (200,)),
    Endpoint(
        "create a source",
        "POST",
        lambda w: "/sources",
        (201,),
        lambda w: {"source_definition_id": "http", "name": "authz-created", "configuration": {"url": CLOSED}},
    ),
    Endpoint("list sources", "GET", lambda w: "/sources", (200,)),
    Endpoint("get a source", "GET", lambda w: f"/sources/{w.source}", (200,)),
    Endpoint("change a source", "PATCH", lambda w: f"/sources/{w.source}", (200,), lambda w: {"name": "renamed"}),
    Endpoint("delete a source", "DELETE", _fresh_source, (204,)),
    Endpoint("list a source's tests", "GET", lambda w: f"/sources/{w.source}/tests", (200,)),
    Endpoint("list workspaces", "GET", lambda w: "/workspaces", (200,)),
    Endpoint("create a workspace", "POST", lambda w: "/workspaces", (201,), lambda w: {"name": "authz"}),
    Endpoint("list webhooks", "GET", lambda w: "/webhooks", (200,)),
    Endpoint("create a webhook", "POST", lambda w: "/webhooks", (201,), lambda w: {"url": CLOSED}),
    Endpoint("get a webhook", "GET", _webhook, (200,)),
    Endpoint("list a webhook's deliveries", "GET", lambda w: f"{_webhook(w)}/deliveries", (200,)),
    Endpoint("delete a webhook", "DELETE", lambda w: _webhook(w, fresh=True), (204,)),
]

CREDENTIALS = {
    "no token": lambda w: {},
    "bearer without a token": lambda w: {"Authorization": "Bearer"},
    "not bearer": lambda w: {"Authorization": f"Basic {w.stack.token}"},
    "malformed token": lambda w: {"Authorization": "Bearer not-a-token"},
    "unknown key": lambda w: {"Authorization": "Bearer sck_000000000000_" + "A" * 43},
    "right key id, wrong secret": lambda w: {"Authorization": "Bearer " + w.stack.token[:-4] + "AAAA"},
    "revoked token": lambda w: {"Authorization": f"Bearer {w.revoked}"},
    "other organization's token": lambda w: {"Authorization": f"Bearer {w.stack.other_token}"},
    "right token": lambda w: {"Authorization": f"Bearer {w.stack.token}"},
}


def _expected(credential: str, endpoint: Endpoint) -> tuple[int, ...]:
    if credential == "right token":
        return endpoint.ok
    if credential == "other organization's token":
        return (404,)
    return (401,)


def _url(stack: Stack, path: str, org: str | None = None) -> str:
    org = org or stack.org_id
    if path.startswith(("/workspaces", "/webhooks")):
        return f"{stack.base_url}/v1/organizations/{org}{path}"
    return stack.base_url + stack.url(path, org_id=org)


def _call(w: World, endpoint: Endpoint, headers: dict[str, str], org: str | None = None) -> httpx.Response:
    return httpx.request(
        endpoint.method,
        _url(w.stack, endpoint.path(w), org),
        headers=headers,
        json=endpoint.body(w) if endpoint.body else None,
        params=endpoint.params,
        timeout=70,
    )


@pytest.mark.parametrize("credential", list(CREDENTIALS))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
def test_every_endpoint_answers_each_credential_as_documented(
    world: World, endpoint: Endpoint, credential: str
) -> None:
    r = _call(world, endpoint, CREDENTIALS[credential](world))
    assert r.status_code in _expected(credential, endpoint), (r.status_code, r.text)
    if r.status_code >= 400:
        assert set(r.json()) == {"error"} and r.json()["error"]["code"] in ("unauthorized", "not_found")
    if r.status_code == 401:
        assert r.headers["www-authenticate"] == "Bearer"
    assert world.stack.token not in r.text and world.revoked not in r.text


def _shape(response: httpx.Response, *ids: str) -> tuple[int, Any]:
    """The status and the body with the ids asked about replaced by a placeholder."""
    text = response.text
    for value in ids:
        text = text.replace(value, "<id>")
    return response.status_code, text


ID_ENDPOINTS: list[tuple[str, str, Callable[[str], dict[str, Any]] | None]] = [
    ("GET", "/sources/{}", None),
    ("PATCH", "/sources/{}", lambda _: {"name": "stolen"}),
    ("DELETE", "/sources/{}", None),
    ("GET", "/sources/{}/tests", None),
    ("POST", "/sources/test", lambda source: {"source_id": source}),
    ("POST", "/sources/test", lambda source: {"source_id": source, "configuration": {"url": CLOSED}}),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), ID_ENDPOINTS, ids=[f"{m} {p} {i}" for i, (m, p, _) in enumerate(ID_ENDPOINTS)]
)
def test_another_organizations_source_is_answered_as_one_that_does_not_exist(
    world: World, method: str, path: str, body: Callable[[str], dict[str, Any]] | None
) -> None:
    answers = []
    for source in (world.other_source, MISSING_SOURCE):
        url = world.stack.base_url + world.stack.url(path.format(source) if "{}" in path else path)
        r = httpx.request(
            method,
            url,
            headers={"Authorization": f"Bearer {world.stack.token}"},
            json=body(source) if body else None,
            params={"wait": 0},
            timeout=70,
        )
        answers.append(_shape(r, source))
    assert answers[0] == answers[1]
    assert answers[0][0] == 404
    # and the other organization's source is untouched
    with world.stack.client(world.stack.other_token) as other:
        r = other.get(world.stack.url(f"/sources/{world.other_source}", org_id=world.stack.other_org_id))
    assert r.status_code == 200 and r.json()["name"] == "authz"


def test_another_organizations_job_is_answered_as_one_that_does_not_exist(world: World) -> None:
    answers = []
    for job in (world.other_job, MISSING_JOB):
        with world.stack.client() as client:
            answers.append(_shape(client.get(world.stack.url(f"/sources/test/{job}")), job))
    assert answers[0] == answers[1] and answers[0][0] == 404


def test_another_organization_is_answered_as_one_that_does_not_exist(world: World) -> None:
    """A token used on another organization's path gets what a path of no organization gets."""
    answers = []
    for org in (world.stack.other_org_id, "org_doesnotexist"):
        r = httpx.get(_url(world.stack, "/sources", org), headers={"Authorization": f"Bearer {world.stack.token}"})
        answers.append(_shape(r, org))
    assert answers[0] == answers[1] and answers[0][0] == 404


def test_a_revoked_token_is_answered_as_an_unknown_one(world: World) -> None:
    unknown = "sck_" + world.revoked.split("_")[1][:-1] + "0_" + "A" * 43
    answers = [
        _shape(httpx.get(_url(world.stack, "/sources"), headers={"Authorization": f"Bearer {token}"}))
        for token in (world.revoked, unknown)
    ]
    assert answers[0] == answers[1] and answers[0][0] == 401


# --- API keys --------------------------------------------------------------------------------


def test_api_keys_are_stored_only_as_a_hash_and_never_in_clear(world: World) -> None:
    token = world.stack.cli("apikey", "create", "--org", world.stack.org_id).stdout.strip()
    key_id = token.split("_")[1]
    database = world.stack.data_dir / "sourcecheck.db"
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT id, organization_id, token_hash, revoked_at FROM apikey WHERE id = ?", (key_id,)
        ).fetchall()
        revoked = db.execute("SELECT revoked_at FROM apikey WHERE id = ?", (world.revoked.split("_")[1],)).fetchone()
    assert rows == [(key_id, world.stack.org_id, hashlib.sha256(token.encode()).hexdigest(), None)]
    assert revoked is not None and revoked[0] is not None  # revocation is a timestamp on the row
    secret = token.split("_", 2)[2]
    for path in database.parent.glob("sourcecheck.db*"):  # the WAL too
        content = path.read_bytes()
        assert token.encode() not in content and secret.encode() not in content
    assert token not in world.stack.log_text()


def test_api_keys_are_compared_in_constant_time() -> None:
    source = inspect.getsource(accounts.organization_for_token)
    assert "hmac.compare_digest(" in source
    assert not re.search(r"token_hash\s*==|==\s*key\.token_hash|_hash\(token\)\s*==", source)


def test_a_token_is_shown_once_and_no_route_returns_it(world: World) -> None:
    token = world.stack.cli("apikey", "create", "--org", world.stack.org_id).stdout.strip()
    with world.stack.client(token) as client:
        bodies = [client.get(world.stack.url(p)).text for p in ("/sources", "/source-definitions")]
        bodies.append(client.get(f"/v1/organizations/{world.stack.org_id}/workspaces").text)
        bodies.append(client.get("/openapi.json").text)
    assert all(token not in b and token.split("_", 2)[2] not in b for b in bodies)
