"""A stack with limits, end to end: the per-organization rate limit, and the egress policy
as the worker's probe processes get it from the environment.

The stack (its own Redis, API and worker) runs with ``SOURCECHECK_ORG_TESTS_PER_MINUTE=5``,
``SOURCECHECK_EGRESS_DENY=127.0.0.0/8,::1/128`` and ``SOURCECHECK_EGRESS_ALLOW=127.0.0.2/32``:
loopback is refused (as the production profile does; tests/worker/test_runner_egress.py runs
that profile) but for that one address, where the tests put the servers to reach.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from tests.helpers import faulty
from tests.servers import free_port
from tests.servers.http import HttpServer, start_http_server
from tests.servers.redis import RedisServer
from tests.servers.stack import Stack, launch_stack
from tests.servers.tcp import CountingListener
from worker.jobs import RATE_KEY, RATE_WINDOW_SECONDS

pytestmark = pytest.mark.e2e

PER_MINUTE = 5


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    server = RedisServer(port=free_port(), directory=tmp_path_factory.mktemp("limits-redis"))
    server.start()
    try:
        with launch_stack(
            server,
            tmp_path_factory.mktemp("limits"),
            org_tests_per_minute=str(PER_MINUTE),
            egress_deny="127.0.0.0/8,::1/128",
            egress_allow="127.0.0.2/32",
            worker_metrics_port="0",
        ) as running:
            yield running
    finally:
        server.stop()


@pytest.fixture
def allowed_server() -> Iterator[HttpServer]:
    with start_http_server(host="127.0.0.2") as server:
        yield server


def _jobs(client: redis_lib.Redis) -> set[bytes]:
    return set(client.scan_iter("sourcecheck:job:*"))


# --- the rate limit ----------------------------------------------------------------------------


def test_an_organization_over_its_tests_per_minute_gets_429_and_nothing_is_enqueued(limited: Stack) -> None:
    r = limited.redis.client()
    r.delete(RATE_KEY.format(limited.org_id))  # a fresh window for this organization
    with limited.client() as client:
        for _ in range(PER_MINUTE):
            ok = client.post(limited.url("/sources/test"), json=faulty(), params={"wait": 0})
            assert ok.status_code in (200, 202), ok.text
        before = _jobs(r)
        over = client.post(limited.url("/sources/test"), json=faulty(), params={"wait": 0})
        assert over.status_code == 429, over.text
        assert over.json()["error"]["code"] == "too_many_requests"
        assert f"{PER_MINUTE} tests in the last minute" in over.json()["error"]["message"]
        assert 1 <= int(over.headers["retry-after"]) <= RATE_WINDOW_SECONDS
        assert _jobs(r) == before, "a refused test was recorded"
        assert r.zcard(RATE_KEY.format(limited.org_id)) == PER_MINUTE  # the refused one does not count
        # An invalid request is a 422 whatever the limit (it is validated first), and a poll is free.
        assert client.post(limited.url("/sources/test"), json={}).status_code == 422
        assert client.get(
            ok.headers.get("location") or limited.url(f"/sources/test/{ok.json()['job_info']['job_id']}")
        ).status_code in (200, 202)
    with limited.client(limited.other_token) as other:  # per organization: the other one is not limited
        theirs = other.post(
            limited.url("/sources/test", org_id=limited.other_org_id), json=faulty(), params={"wait": 10}
        )
    assert theirs.status_code == 200 and theirs.json()["status"] == "succeeded", theirs.text


def test_the_window_slides_the_oldest_test_leaving_makes_room(limited: Stack) -> None:
    r = limited.redis.client()
    key = RATE_KEY.format(limited.org_id)
    r.delete(key)
    with limited.client() as client:
        for _ in range(PER_MINUTE):
            assert client.post(limited.url("/sources/test"), json=faulty(), params={"wait": 0}).status_code in (
                200,
                202,
            )
        assert client.post(limited.url("/sources/test"), json=faulty(), params={"wait": 0}).status_code == 429
        # Age the window's oldest entry past 60 s, as time would: one more test fits, then none.
        oldest, score = r.zrange(key, 0, 0, withscores=True)[0]
        r.zadd(key, {oldest: score - RATE_WINDOW_SECONDS - 1})
        assert client.post(limited.url("/sources/test"), json=faulty(), params={"wait": 0}).status_code in (200, 202)
        assert client.post(limited.url("/sources/test"), json=faulty(), params={"wait": 0}).status_code == 429


def test_joining_an_identical_test_in_flight_costs_nothing(limited: Stack) -> None:
    r = limited.redis.client()
    key = RATE_KEY.format(limited.org_id)
    r.delete(key)
    slow = {"source_definition_id": "faulty", "configuration": {"mode": "sleep", "seconds": 2, "tag": uuid.uuid4().hex}}
    with limited.client() as client:
        first = client.post(limited.url("/sources/test"), json=slow, params={"wait": 0, "timeout": 5})
        joined = client.post(limited.url("/sources/test"), json=slow, params={"wait": 0, "timeout": 5})
    assert first.json()["job_info"]["job_id"] == joined.json()["job_info"]["job_id"]
    assert r.zcard(key) == 1


# --- egress, through the worker's probe processes -------------------------------------------------


def _test(stack: Stack, configuration: dict[str, Any], definition: str = "http") -> dict[str, Any]:
    with stack.client(stack.other_token) as client:  # the other organization: not rate-limited by the tests above
        r = client.post(
            stack.url("/sources/test", org_id=stack.other_org_id),
            json={"source_definition_id": definition, "configuration": configuration},
            params={"wait": 20},
        )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_denied_address_is_refused_without_connecting(limited: Stack) -> None:
    listener = CountingListener("127.0.0.1")
    try:
        answer = _test(limited, {"url": f"http://127.0.0.1:{listener.port}/"})
        assert answer["status"] == "failed"
        info = answer["job_info"]
        assert info["type"] == "egress_blocked" and info["retryable"] is False
        assert "egress policy" in info["hint"]
        assert [s["status"] for s in info["steps"]][:2] == ["failed", "skipped"]
        assert listener.accepted == 0
    finally:
        listener.close()


def test_the_metadata_address_is_refused(limited: Stack) -> None:
    answer = _test(limited, {"url": "http://169.254.169.254/latest/meta-data/"})
    assert answer["job_info"]["type"] == "egress_blocked"
    assert "cloud metadata" in answer["job_info"]["message"]


def test_what_the_operator_allowed_is_reached_but_not_a_redirect_out_of_it(
    limited: Stack, allowed_server: HttpServer
) -> None:
    assert _test(limited, {"url": allowed_server.url("/ok")})["status"] == "succeeded"
    listener = CountingListener("127.0.0.1")
    try:
        answer = _test(limited, {"url": allowed_server.url(f"/redirect?to=http://localhost:{listener.port}/")})
        assert answer["job_info"]["type"] == "egress_blocked", answer
        assert listener.accepted == 0
    finally:
        listener.close()
