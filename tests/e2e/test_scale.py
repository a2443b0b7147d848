"""Load behaviour end to end: coalescing, reuse, the per-organization cap, crashes, and a
worker killed mid-batch — on a stack of three workers with short queue deadlines."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.helpers import faulty
from tests.servers.http import HttpServer
from tests.servers.stack import Stack, own_stack
from tests.servers.tcp import HungListener

pytestmark = pytest.mark.e2e

CAP = 40


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with own_stack(
        tmp_path_factory, "fleet", workers=("w1", "w2", "w3"), org_concurrency_limit=str(CAP), queue_timeout_seconds="3"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One worker process, the default per-organization cap, no rate limit."""
    with own_stack(tmp_path_factory, "one-worker", org_tests_per_minute="0") as running:
        yield running


async def _post_many(
    stack: Stack, bodies: list[dict], token: str | None = None, org: str | None = None, **params: object
) -> list:  # type: ignore[type-arg]
    async with stack.async_client(token) as client:
        return await asyncio.gather(
            *(client.post(stack.url("/sources/test", org_id=org), json=b, params=params) for b in bodies)
        )


def test_identical_concurrent_tests_run_the_probe_once(fleet: Stack, http_server: HttpServer) -> None:
    # The probe stays in flight for 1.5 s, so all 100 requests arrive while it runs, however
    # slowly this client sends them (a fast probe may end before the last one is sent).
    path = f"/ok?probe={uuid.uuid4().hex}&delay=1.5"
    body = {"source_definition_id": "http", "configuration": {"url": http_server.url(path)}}
    responses = asyncio.run(_post_many(fleet, [body] * 100))
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["status"] for r in responses} == {"succeeded"}
    assert len({r.json()["job_info"]["job_id"] for r in responses}) == 1
    assert len([r for r in http_server.requests if r.path == path]) == 1


def test_max_age_reuses_a_recent_result_only_when_asked(fleet: Stack, http_server: HttpServer) -> None:
    path = f"/ok?probe={uuid.uuid4().hex}"
    body = {"source_definition_id": "http", "configuration": {"url": http_server.url(path)}}
    with fleet.client() as client:
        first = client.post(fleet.url("/sources/test"), json=body).json()
        reused = client.post(fleet.url("/sources/test"), json=body, params={"max_age": 60}).json()
        again = client.post(fleet.url("/sources/test"), json=body).json()
    assert reused["job_info"]["job_id"] == first["job_info"]["job_id"]
    assert again["job_info"]["job_id"] != first["job_info"]["job_id"]
    assert len([r for r in http_server.requests if r.path == path]) == 2


def test_an_organization_over_its_cap_gets_429_and_others_are_not_starved(fleet: Stack) -> None:
    held = asyncio.run(_post_many(fleet, [faulty("sleep", 2) for _ in range(CAP)], wait=0, timeout=2))
    assert {r.status_code for r in held} == {202}
    with fleet.client() as client:
        over = client.post(fleet.url("/sources/test"), json=faulty("sleep", 0), params={"wait": 0})
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) >= 1
    with fleet.client(fleet.other_token) as other:
        theirs = other.post(fleet.url("/sources/test", org_id=fleet.other_org_id), json=faulty("sleep", 0))
    assert theirs.status_code == 200 and theirs.json()["status"] == "succeeded"
    with fleet.client() as client:  # the slots come back when the held tests end
        for r in held:
            assert client.get(r.headers["location"], params={"wait": 10}).json()["status"] == "failed"
        assert client.post(fleet.url("/sources/test"), json=faulty("sleep", 0)).status_code == 200


def test_a_connector_that_crashes_its_process_fails_and_the_worker_keeps_serving(fleet: Stack) -> None:
    with fleet.client() as client:
        crashed = client.post(fleet.url("/sources/test"), json=faulty("segfault"), params={"timeout": 5})
        assert crashed.status_code == 200
        assert crashed.json()["status"] == "failed"
        assert crashed.json()["job_info"]["type"] == "worker_lost"
        after = client.post(fleet.url("/sources/test"), json=faulty("sleep", 0))
    assert after.json()["status"] == "succeeded"


def test_a_connector_blocking_in_c_ends_at_its_deadline(fleet: Stack) -> None:
    with fleet.client() as client:
        started = time.monotonic()
        r = client.post(fleet.url("/sources/test"), json=faulty("block_in_c", 30), params={"timeout": 1})
    assert r.json()["status"] == "failed"
    assert r.json()["job_info"]["type"] == "timeout"
    assert time.monotonic() - started < 5


def test_killing_a_worker_mid_batch_leaves_every_job_final_with_one_outcome(fleet: Stack) -> None:
    batch = asyncio.run(_post_many(fleet, [faulty("sleep", 1.5) for _ in range(30)], wait=0, timeout=4))
    assert {r.status_code for r in batch} == {202}
    time.sleep(0.5)
    fleet.kill_worker("w1")
    seen: dict[str, tuple[str, str | None]] = {}
    deadline = time.monotonic() + 30
    with fleet.client() as client:
        while time.monotonic() < deadline and len(seen) < len(batch):
            for r in batch:
                job_id = r.json()["job_info"]["job_id"]
                polled = client.get(r.headers["location"]).json()
                if polled["status"] in ("succeeded", "failed"):
                    outcome = (polled["status"], polled["job_info"]["type"])
                    assert seen.setdefault(job_id, outcome) == outcome, "a job changed its outcome"
            time.sleep(0.5)
    assert len(seen) == len(batch), "some jobs never reached a final state"
    outcomes = {o for o in seen.values()}
    assert outcomes <= {("succeeded", None), ("failed", "worker_lost"), ("failed", "timeout")}
    assert ("succeeded", None) in outcomes  # the surviving workers ran their share


def test_tests_of_a_healthy_source_pass_hung_ones_in_one_worker(
    one_worker: Stack, http_server: HttpServer, hung_listener: HungListener
) -> None:
    """No head-of-line blocking: while one worker holds 300 tests whose server accepts and
    never answers (150 from each of two organizations), tests of a healthy source, from
    both organizations, pass them: each answers `succeeded` while every hung one is still
    in flight, and the hung ones then end `timeout` at their deadline."""
    hung_count, deadline = 300, 10

    def hung(i: int) -> dict:  # type: ignore[type-arg]
        return {
            "source_definition_id": "http",
            "configuration": {"url": f"http://127.0.0.1:{hung_listener.address.port}/{i}"},
        }

    async def scenario() -> tuple[list[str], int, list[tuple[int, str | None]]]:
        params = {"timeout": deadline, "wait": 30}
        async with one_worker.async_client() as ours, one_worker.async_client(one_worker.other_token) as theirs:
            calls = [(ours, one_worker.org_id), (theirs, one_worker.other_org_id)]
            pending = [
                asyncio.create_task(
                    client.post(one_worker.url("/sources/test", org_id=org), json=hung(i), params=params)
                )
                for i in range(hung_count // 2)
                for client, org in calls
            ]
            try:
                async with asyncio.timeout(deadline - 2):  # every hung test is connected to the silent server
                    while len(hung_listener.held) < hung_count:
                        await asyncio.sleep(0.05)
                fast = []
                for client, org in calls * 3:
                    body = {
                        "source_definition_id": "http",
                        "configuration": {"url": http_server.url(f"/ok?n={uuid.uuid4().hex}")},
                    }
                    fast.append(
                        (await client.post(one_worker.url("/sources/test", org_id=org), json=body)).json()["status"]
                    )
                in_flight = sum(not task.done() for task in pending)
                answers = await asyncio.gather(*pending)
            finally:
                for task in pending:
                    task.cancel()
        return fast, in_flight, [(r.status_code, (r.json().get("job_info") or {}).get("type")) for r in answers]

    fast, in_flight, hung_outcomes = asyncio.run(scenario())
    assert fast == ["succeeded"] * 6
    assert in_flight == hung_count
    assert set(hung_outcomes) == {(200, "timeout")}


def test_each_worker_added_adds_its_threads_to_the_capacity_for_slow_probes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Horizontal scale: with one worker of 5 threads, 10 slow tests run in two waves; with
    a second worker of 5, all 10 run at once, shared between the two."""
    with own_stack(tmp_path_factory, "scale", workers=(), org_tests_per_minute="0") as stack:

        def run_batch() -> list[dict]:  # type: ignore[type-arg]
            sent = asyncio.run(_post_many(stack, [faulty("sleep", 1.5) for _ in range(10)], wait=0, timeout=10))
            with stack.client() as client:
                done = [client.get(r.headers["location"], params={"wait": 30}).json() for r in sent]
            assert {d["status"] for d in done} == {"succeeded"}, done
            return [d["job_info"] for d in done]

        def waited(infos: list[dict]) -> int:  # type: ignore[type-arg]
            """How many tests started only after another had ended (a thread had to come free)."""
            first_end = min(datetime.fromisoformat(i["ended_at"]) for i in infos)
            return sum(datetime.fromisoformat(i["started_at"]) >= first_end for i in infos)

        stack.start_worker("s1", concurrency=5)
        one = run_batch()
        assert waited(one) == 5 and all(i["worker"].startswith("s1@") for i in one)

        stack.start_worker("s2", concurrency=5)
        two = run_batch()
        assert waited(two) == 0
        assert {i["worker"].split("@")[0] for i in two} == {"s1", "s2"}
