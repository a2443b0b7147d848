"""A stored source's test history over HTTP: ``GET .../sources/{source_id}/tests`` and
``last_test`` on every source answer, on the real stack (its API's recorder writes the rows)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e


def faulty_source(client: httpx.Client, stack: Stack, **configuration: Any) -> dict[str, Any]:
    created = client.post(
        stack.url("/sources"),
        json={
            "source_definition_id": "faulty",
            "name": "history",
            "configuration": {"mode": "sleep", "seconds": 0, "tag": uuid.uuid4().hex, **configuration},
        },
    )
    assert created.status_code == 201, created.text
    source: dict[str, Any] = created.json()
    return source


def run_test(client: httpx.Client, stack: Stack, **body: Any) -> dict[str, Any]:
    answer = client.post(stack.url("/sources/test"), json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def history(client: httpx.Client, stack: Stack, source_id: str, count: int, **params: Any) -> dict[str, Any]:
    """The source's history once it holds ``count`` records (the recorder writes them just after)."""
    deadline = time.monotonic() + 15
    while True:
        page = client.get(stack.url(f"/sources/{source_id}/tests"), params=params)
        assert page.status_code == 200, page.text
        body: dict[str, Any] = page.json()
        if body["count"] >= count or time.monotonic() > deadline:
            assert body["count"] == count, body
            return body
        time.sleep(0.1)


def test_history_lists_a_sources_tests_newest_first_page_by_page(stack: Stack) -> None:
    with stack.client() as client:
        source = faulty_source(client, stack)
        jobs = [run_test(client, stack, source_id=source["id"])["job_info"]["job_id"] for _ in range(3)]
        whole = history(client, stack, source["id"], 3)
        assert [r["job_id"] for r in whole["data"]] == jobs[::-1]
        first = client.get(stack.url(f"/sources/{source['id']}/tests"), params={"limit": 2}).json()
        rest = client.get(stack.url(f"/sources/{source['id']}/tests"), params={"limit": 2, "offset": 2}).json()
        assert [r["job_id"] for r in first["data"]] == jobs[:0:-1] and first["count"] == 3
        assert [r["job_id"] for r in rest["data"]] == jobs[:1] and rest["count"] == 3
        record = whole["data"][0]
        assert record["status"] == "succeeded" and record["type"] is None and record["source_id"] == source["id"]
        assert [s["name"] for s in record["steps"]] and record["worker"] and record["duration_ms"] is not None
        assert "configuration" not in record


def test_every_source_answer_carries_its_last_test(stack: Stack) -> None:
    with stack.client() as client:
        source = faulty_source(client, stack, password="canary-last-test-0123")
        assert source["last_test"] is None
        assert client.get(stack.url(f"/sources/{source['id']}")).json()["last_test"] is None
        run_test(client, stack, source_id=source["id"])
        history(client, stack, source["id"], 1)
        changed = client.patch(stack.url(f"/sources/{source['id']}"), json={"configuration": {"mode": "echo_secret"}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["last_test"]["status"] == "succeeded"
        failed = run_test(client, stack, source_id=source["id"])
        assert failed["status"] == "failed"
        history(client, stack, source["id"], 2)
        last = client.get(stack.url(f"/sources/{source['id']}")).json()["last_test"]
        assert last == {
            "status": "failed",
            "type": failed["job_info"]["type"],
            "ended_at": last["ended_at"],
        }
        assert last["ended_at"][:19] == failed["job_info"]["ended_at"][:19]
        listed = {s["id"]: s for s in client.get(stack.url("/sources")).json()["data"]}
        assert listed[source["id"]]["last_test"] == last


def test_inline_tests_and_tests_with_overrides_are_not_recorded(stack: Stack) -> None:
    with stack.client() as client:
        source = faulty_source(client, stack)
        run_test(client, stack, source_definition_id="faulty", configuration={"mode": "sleep", "seconds": 0})
        run_test(client, stack, source_id=source["id"], configuration={"tag": uuid.uuid4().hex})
        recorded = run_test(client, stack, source_id=source["id"])  # after the others: when it is in, they were not
        page = history(client, stack, source["id"], 1)
        assert [r["job_id"] for r in page["data"]] == [recorded["job_info"]["job_id"]]


def test_another_organizations_history_is_not_found_and_bad_pages_are_refused(stack: Stack) -> None:
    with stack.client() as client:
        mine = faulty_source(client, stack)
        run_test(client, stack, source_id=mine["id"])
        history(client, stack, mine["id"], 1)
        unknown = client.get(stack.url("/sources/src_doesnotexist/tests"))
        for params in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "x"}):
            assert client.get(stack.url(f"/sources/{mine['id']}/tests"), params=params).status_code == 422, params
    with stack.client(stack.other_token) as other:
        theirs = other.get(stack.url(f"/sources/{mine['id']}/tests", org_id=stack.other_org_id))
        crossed = other.get(stack.url(f"/sources/{mine['id']}/tests"))  # the other org's key on my org's path
    assert theirs.status_code == unknown.status_code == crossed.status_code == 404
    assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    assert theirs.text.replace(mine["id"], "src_doesnotexist") == unknown.text
