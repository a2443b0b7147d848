"""Webhooks over HTTP on the real stack: registration (egress policy, the secret shown once),
authorization by organization, validation, and a change delivered by the API process's own
dispatcher to a receiver on loopback, signed, logged, counted on /metrics, the secret never
stored or logged in clear."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from sourcecheck_client import verify_webhook
from sqlalchemy import create_engine
from sqlmodel import Session

from api.deliveries import WebhookChange, deliver_change
from tests.helpers import assert_absent
from tests.servers.stack import Stack
from tests.servers.webhooks import WebhookReceiver

pytestmark = pytest.mark.e2e

MISSING = "wh_0000000000000000"


def _hooks(stack: Stack, path: str = "", org: str | None = None) -> str:
    return f"/v1/organizations/{org or stack.org_id}/webhooks{path}"


def _create(client: httpx.Client, stack: Stack, url: str, org: str | None = None) -> dict[str, Any]:
    r = client.post(_hooks(stack, org=org), json={"url": url})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def test_the_secret_is_shown_once_and_never_again(stack: Stack, webhook_receiver: WebhookReceiver) -> None:
    with stack.client() as client:
        created = _create(client, stack, webhook_receiver.url("ok", uuid.uuid4().hex))
        secret = created["secret"]
        assert created["id"].startswith("wh_") and secret.startswith("whsec_") and len(secret) > 40
        assert created["active"] is True and created["organization_id"] == stack.org_id
        answers = [
            client.get(_hooks(stack, f"/{created['id']}")),
            client.get(_hooks(stack)),
            client.get(_hooks(stack, f"/{created['id']}/deliveries")),
        ]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert answers[0].json() == {k: v for k, v in created.items() if k != "secret"}
        assert created["id"] in [w["id"] for w in answers[1].json()["data"]]
        assert answers[2].json() == {"data": [], "count": 0}
        for answer in answers:
            assert_absent(secret, answer.content, str(answer.request.url))
        assert client.delete(_hooks(stack, f"/{created['id']}")).status_code == 204
        assert client.get(_hooks(stack, f"/{created['id']}")).status_code == 404
    assert_absent(secret, stack.log_text().encode(), "the logs")


def test_another_organizations_webhook_is_answered_as_one_that_does_not_exist(
    stack: Stack, webhook_receiver: WebhookReceiver
) -> None:
    with stack.client(stack.other_token) as other:
        theirs = _create(other, stack, webhook_receiver.url("ok", uuid.uuid4().hex), org=stack.other_org_id)["id"]
    with stack.client() as client:
        for method, path in (("GET", "/{}"), ("DELETE", "/{}"), ("GET", "/{}/deliveries")):
            answers = [client.request(method, _hooks(stack, path.format(i))) for i in (theirs, MISSING)]
            assert [a.status_code for a in answers] == [404, 404]
            assert answers[0].text.replace(theirs, "<id>") == answers[1].text.replace(MISSING, "<id>")
        assert theirs not in client.get(_hooks(stack)).text
        # Their organization's routes, with this organization's token: 404 like an unknown organization.
        assert client.get(_hooks(stack, org=stack.other_org_id)).status_code == 404
        assert client.post(_hooks(stack, org=stack.other_org_id), json={"url": "https://x.example/"}).status_code == 404
    with stack.client(stack.other_token) as other:
        assert other.get(_hooks(stack, f"/{theirs}", org=stack.other_org_id)).status_code == 200  # untouched
    assert httpx.get(stack.base_url + _hooks(stack)).status_code == 401


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("https://169.254.169.254/", "a cloud metadata address"),
        ("http://[::ffff:169.254.169.254]/", "a cloud metadata address"),
        ("http://169.254.10.1/", "a link-local address"),
        ("http://[fe80::1]/", "a link-local address"),
        ("ftp://hooks.example.com/", "must be http:// or https://"),
        ("https://user:pw@hooks.example.com/", "must not contain credentials"),
        ("https:///nohost", "must name a host"),
        ("https://hooks.example.com/a b", "must not contain whitespace"),
        ("https://hooks.example.com:99999/", "is not valid"),
        ("https://hooks.example.com/#frag", "must not have a fragment"),
        ("not a url", "must not contain whitespace"),
        ("https://no-such-host.invalid/", "Could not resolve host"),
    ],
)
def test_a_url_the_policy_refuses_is_422_naming_the_field(stack: Stack, url: str, why: str) -> None:
    with stack.client() as client:
        before = client.get(_hooks(stack)).json()["count"]
        r = client.post(_hooks(stack), json={"url": url})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_request" and why in error["message"]
        assert [e["field"] for e in error["errors"]] == ["url"]
        assert client.get(_hooks(stack)).json()["count"] == before


@pytest.mark.parametrize(
    "body",
    [{}, {"url": ""}, {"url": "https://x.example/" + "a" * 2000}, {"url": 5}, {"url": "https://x.example/", "x": 1}],
)
def test_a_malformed_body_is_422(stack: Stack, body: dict[str, Any]) -> None:
    with stack.client() as client:
        r = client.post(_hooks(stack), json=body)
    assert r.status_code == 422 and set(r.json()) == {"error"}, r.text


def test_malformed_ids_and_pages_are_422(stack: Stack) -> None:
    with stack.client() as client:
        assert client.get(_hooks(stack, "/wh_bad$id")).status_code == 422
        assert client.get(_hooks(stack, f"/{MISSING}/deliveries"), params={"limit": 0}).status_code == 422
        assert client.get(_hooks(stack, f"/{MISSING}/deliveries"), params={"offset": -1}).status_code == 422
        assert client.get(_hooks(stack, f"/{MISSING}/deliveries"), params={"limit": 1000}).status_code == 422


def test_an_organization_has_a_bounded_number_of_webhooks(stack: Stack, webhook_receiver: WebhookReceiver) -> None:
    with stack.client(stack.other_token) as client:
        org = stack.other_org_id
        made = [w["id"] for w in client.get(_hooks(stack, org=org)).json()["data"]]
        while len(made) < 20:
            made.append(_create(client, stack, webhook_receiver.url("ok", uuid.uuid4().hex), org=org)["id"])
        refused = client.post(_hooks(stack, org=org), json={"url": webhook_receiver.url("ok", "one-more")})
        assert refused.status_code == 422 and "at most 20 webhooks" in refused.json()["error"]["message"]
        for webhook_id in made:
            assert client.delete(_hooks(stack, f"/{webhook_id}", org=org)).status_code == 204


def _wait(predicate: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("not within the time allowed")


async def _change(stack: Stack, source_id: str, old: str, new: str) -> None:
    """A status change of ``source_id`` recorded in the stack's database, as the status hook does."""
    change = WebhookChange(
        organization_id=stack.org_id,
        source_id=source_id,
        old_status=old,
        new_status=new,
        result={
            "job_id": "job_x",
            "source_id": source_id,
            "source_definition_id": "postgres",
            "status": new,
            "type": None,
            "message": None,
            "hint": None,
            "retryable": None,
            "fields": None,
            "warnings": [],
            "steps": [],
            "worker": None,
            "started_at": None,
            "ended_at": "2026-12-04T00:00:00Z",
            "duration_ms": None,
        },
    )
    engine = create_engine(f"sqlite:///{stack.data_dir / 'sourcecheck.db'}", connect_args={"timeout": 15})
    try:
        await deliver_change(lambda: Session(engine), change)
    finally:
        engine.dispose()


async def test_a_change_is_delivered_once_signed_by_the_api_process_and_logged(
    stack: Stack, webhook_receiver: WebhookReceiver
) -> None:
    key = uuid.uuid4().hex
    with stack.client() as client:
        created = _create(client, stack, webhook_receiver.url("ok", key))
    await _change(stack, "src_e2e_hooks", "succeeded", "failed")
    _wait(lambda: len(webhook_receiver.posts("ok", key)) == 1)
    time.sleep(2.5)  # two more rounds of the dispatcher: still one
    [post] = webhook_receiver.posts("ok", key)
    event = verify_webhook(created["secret"], post.headers, post.body)
    assert (event.source_id, event.previous_status, event.status) == ("src_e2e_hooks", "succeeded", "failed")
    with stack.client() as client:
        log = client.get(_hooks(stack, f"/{created['id']}/deliveries")).json()
        metrics = client.get("/metrics").text
        client.delete(_hooks(stack, f"/{created['id']}"))
    assert log["count"] == 1
    [attempt] = log["data"]
    assert (attempt["state"], attempt["status_code"], attempt["attempt"]) == ("succeeded", 200, 1)
    assert attempt["event_id"] == event.id and attempt["source_id"] == "src_e2e_hooks"
    assert 'sourcecheck_webhook_deliveries_total{outcome="succeeded"}' in metrics
    assert "src_e2e_hooks" not in metrics and created["id"] not in metrics  # no label per source or webhook
    for path in stack.data_dir.glob("sourcecheck.db*"):  # the database and its WAL
        assert_absent(created["secret"], path.read_bytes(), path.name)
    assert_absent(created["secret"], stack.log_text().encode(), "the logs")


def test_the_delivery_log_is_paged_newest_first(stack: Stack, webhook_receiver: WebhookReceiver) -> None:
    key = uuid.uuid4().hex
    with stack.client() as client:
        created = _create(client, stack, webhook_receiver.url("flaky", key))
    asyncio.run(_change(stack, "src_e2e_paged", "failed", "succeeded"))
    path = _hooks(stack, f"/{created['id']}/deliveries")
    with stack.client() as client:
        # The stack's backoff is the default (10 s, then 20 s): the first failure is logged
        # with the second attempt pending.
        _wait(lambda: client.get(path).json()["count"] == 2)
        page = client.get(path).json()
        assert [(a["attempt"], a["state"]) for a in page["data"]] == [(2, "pending"), (1, "failed")]
        assert page["data"][1]["status_code"] == 503
        assert client.get(path, params={"limit": 1, "offset": 1}).json() == {"data": [page["data"][1]], "count": 2}
        assert client.delete(_hooks(stack, f"/{created['id']}")).status_code == 204
