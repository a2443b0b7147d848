"""Watching and cancelling a test, end to end: the live event stream of a test
(``GET .../sources/test/{job_id}/events``) and ``DELETE .../sources/test/{job_id}``.

A stack of its own: a heartbeat of 0.4 s (so a test sees it), a short queue deadline (a
test queued with no worker is written off soon), a second API process on the same Redis,
and a worker that a test may stop to keep a job queued.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sourcecheck_client import (
    AsyncClient,
    Client,
    ConflictError,
    PlanEvent,
    ResultEvent,
    StepEvent,
    TestEvent,
    TestResult,
)

from api.settings import ApiSettings
from cli.processes import LOOPBACK, api_argv
from tests.e2e.test_secrets import flower, flower_task
from tests.helpers import faulty
from tests.servers import free_port
from tests.servers.http import HttpServer
from tests.servers.stack import Stack, _healthy, _wait_for, own_stack
from tests.servers.tcp import HostPort

pytestmark = pytest.mark.e2e
__all__ = ["flower"]  # a fixture (tests/e2e/test_secrets.py), used here on this module's stack

HEARTBEAT = 0.4
QUEUE_TIMEOUT = 2.0
STREAMS = 2  # event streams one API process reads at once
SETTINGS = {
    "events_heartbeat_seconds": str(HEARTBEAT),
    "queue_timeout_seconds": str(QUEUE_TIMEOUT),
    "events_streams": str(STREAMS),
}
WORKER = "s1"


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with own_stack(tmp_path_factory, "streams", workers=(WORKER,), **SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def second_api(streams: Stack) -> Iterator[str]:
    """Another API process on the same Redis and database: its base URL."""
    port = free_port()
    log = streams.data_dir / "api2.log"
    streams.logs["api2"] = log
    with log.open("ab") as out:
        process = subprocess.Popen(
            api_argv(LOOPBACK, port, ApiSettings(**SETTINGS), extra=("--log-level", "warning")),  # type: ignore[arg-type]
            env=streams.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _healthy(f"{url}/healthz") or process.poll() is not None, "second API")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def no_worker(streams: Stack) -> Iterator[None]:
    """No worker takes jobs during the test (it is started again after)."""
    if WORKER in streams.workers:
        streams.kill_worker(WORKER)
    try:
        yield
    finally:
        if WORKER not in streams.workers:
            streams.start_worker(WORKER)


@dataclass
class Event:
    id: str | None
    event: str
    data: Any
    at: float  # monotonic: when it arrived


def events(
    stack: Stack,
    job_id: str,
    *,
    base_url: str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    lines: list[str] | None = None,
    stop_after: int | None = None,
) -> list[Event]:
    """The events of a test's stream until it closes (or ``stop_after`` events); every raw
    line goes into ``lines``."""
    found: list[Event] = []
    url = (base_url or stack.base_url) + stack.url(f"/sources/test/{job_id}/events")
    auth = {"Authorization": f"Bearer {token or stack.token}", **(headers or {})}
    with httpx.stream("GET", url, headers=auth, params=params, timeout=30) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if lines is not None:
                lines.append(line)
            if line == "":
                if fields:
                    data = json.loads(fields["data"])
                    found.append(Event(fields.get("id"), fields["event"], data, time.monotonic()))
                    fields = {}
                    if stop_after is not None and len(found) >= stop_after:
                        break
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            assert name not in fields, f"field {name} twice in one event"
            fields[name] = value.removeprefix(" ")
    return found


def send(stack: Stack, body: dict[str, Any], **params: Any) -> dict[str, Any]:
    """Send a test without waiting for it; its answer."""
    with stack.client() as client:
        answer = client.post(stack.url("/sources/test"), json=body, params={"wait": 0, **params})
    assert answer.status_code in (200, 202), answer.text
    result: dict[str, Any] = answer.json()
    return result


def poll(stack: Stack, job_id: str, **params: Any) -> httpx.Response:
    with stack.client() as client:
        return client.get(stack.url(f"/sources/test/{job_id}"), params=params)


def http_test(url: str) -> dict[str, Any]:
    """A test of ``url`` made unique by a query tag (the server ignores it): identical tests would be coalesced."""
    tagged = url + ("&" if "?" in url else "?") + f"tag={uuid.uuid4().hex}"
    return {"source_definition_id": "http", "configuration": {"url": tagged}}


def steps_of(found: list[Event]) -> list[tuple[str, str]]:
    return [(e.data["name"], e.data["status"]) for e in found if e.event == "step"]


# --- the stream ----------------------------------------------------------------------------------


def test_the_steps_arrive_as_they_happen_then_the_result_the_poll_answers(
    streams: Stack, http_server: HttpServer
) -> None:
    job_id = send(streams, http_test(http_server.url("/ok?delay=1")))["job_info"]["job_id"]
    found = events(streams, job_id)
    assert [e.event for e in found][:1] == ["plan"]
    assert found[0].data == {"steps": ["resolve", "tcp", "tls", "request"]}
    assert steps_of(found) == [
        ("resolve", "running"),
        ("resolve", "succeeded"),
        ("tcp", "running"),
        ("tcp", "succeeded"),
        ("tls", "skipped"),
        ("request", "running"),
        ("request", "succeeded"),
    ]
    started = next(e for e in found if e.event == "step" and e.data == {"name": "request", "status": "running"})
    result = found[-1]
    assert result.event == "result"
    assert result.at - started.at > 0.7, "the running step was not sent before the step ended"
    ended = [e.data for e in found if e.event == "step" and e.data["status"] != "running"]
    assert all(
        isinstance(d["duration_ms"], int) and set(d) == {"name", "status", "duration_ms", "message"} for d in ended
    )
    assert ended[-1]["duration_ms"] >= 900
    answer = poll(streams, job_id)
    assert answer.status_code == 200
    assert result.data == answer.json()  # exactly what the poll endpoint answers
    assert result.data["status"] == "succeeded"
    ids = [e.id for e in found]
    assert all(ids) and len(set(ids)) == len(ids)


def test_a_reconnect_with_last_event_id_gets_only_what_it_missed_from_another_api_process(
    streams: Stack, second_api: str, http_server: HttpServer
) -> None:
    job_id = send(streams, http_test(http_server.url("/ok?delay=1.5")))["job_info"]["job_id"]
    first = events(streams, job_id, stop_after=3)  # plan, resolve running, resolve succeeded: then it goes away
    rest = events(streams, job_id, base_url=second_api, headers={"Last-Event-ID": str(first[-1].id)})
    assert steps_of(rest)[0] == ("tcp", "running")
    assert rest[-1].event == "result" and rest[-1].data["status"] == "succeeded"
    whole = events(streams, job_id, base_url=second_api)  # after the end: the whole history, then the result
    assert [e.id for e in whole] == [e.id for e in first + rest]
    assert [e.data for e in whole] == [e.data for e in first + rest]
    # The query parameter does what the header does (for EventSource, which cannot set headers).
    tail = events(streams, job_id, params={"last_event_id": str(whole[4].id)})
    assert [e.id for e in tail] == [e.id for e in whole[5:]]
    # The result's own id: nothing is missed but the result, which comes again.
    again = events(streams, job_id, headers={"Last-Event-ID": str(whole[-1].id)})
    assert [(e.event, e.data) for e in again] == [("result", whole[-1].data)]


def test_a_test_nobody_watched_writes_no_event_and_its_history_is_told_from_its_result(
    streams: Stack, http_server: HttpServer
) -> None:
    job_id = send(streams, http_test(http_server.url("/ok")), wait=10)["job_info"]["job_id"]
    answer = poll(streams, job_id).json()
    assert answer["status"] == "succeeded"
    redis = streams.redis.client()
    assert not redis.exists(f"sourcecheck:events:{job_id}")  # a test nobody watches costs Redis no event
    found = events(streams, job_id)
    assert found[0].event == "plan" and found[0].data == {"steps": ["resolve", "tcp", "tls", "request"]}
    assert steps_of(found) == [
        ("resolve", "running"),
        ("resolve", "succeeded"),
        ("tcp", "running"),
        ("tcp", "succeeded"),
        ("tls", "skipped"),
        ("request", "running"),
        ("request", "succeeded"),
    ]
    assert [e.id for e in found] == [f"0-{i}" for i in range(1, len(found) + 1)]
    assert found[-1].event == "result" and found[-1].data == answer
    tail = events(streams, job_id, headers={"Last-Event-ID": str(found[3].id)})
    assert [(e.id, e.data) for e in tail] == [(e.id, e.data) for e in found[4:]]
    assert not redis.exists(f"sourcecheck:events:{job_id}")


def test_an_idle_stream_sends_heartbeats(streams: Stack, http_server: HttpServer) -> None:
    job_id = send(streams, http_test(http_server.url("/ok?delay=2")))["job_info"]["job_id"]
    lines: list[str] = []
    found = events(streams, job_id, lines=lines)
    running = lines.index('data: {"name":"request","status":"running"}')
    ended = next(i for i, line in enumerate(lines) if line.startswith("event: result"))
    beats = [line for line in lines[running:ended] if line == ": keepalive"]
    assert len(beats) >= 2, lines  # 2 s of an idle step at a heartbeat of 0.4 s
    assert found[-1].event == "result"


def test_more_watchers_than_the_api_reads_at_once_take_turns_and_all_get_every_event(
    streams: Stack, http_server: HttpServer
) -> None:
    job_id = send(streams, http_test(http_server.url("/ok?delay=2")))["job_info"]["job_id"]
    redis = streams.redis.client()
    most = 0
    with ThreadPoolExecutor(4) as pool:
        watchers = [pool.submit(events, streams, job_id) for _ in range(4)]
        while not all(w.done() for w in watchers):
            # Blocked in XREAD now (flag b): an idle connection shows its last command too.
            blocked = [c for c in redis.client_list() if c.get("cmd") == "xread" and "b" in c.get("flags", "")]
            reading = len(blocked)
            most = max(most, reading)
            time.sleep(0.02)
        seen = [w.result() for w in watchers]
    assert 1 <= most <= STREAMS  # the bound holds with four watchers
    assert all([(e.event, e.data) for e in found] == [(e.event, e.data) for e in seen[0]] for found in seen)
    assert steps_of(seen[0])[-1] == ("request", "succeeded")


def test_another_organizations_or_an_unknown_job_is_404_and_a_bad_last_event_id_422(
    streams: Stack, http_server: HttpServer
) -> None:
    job_id = send(streams, http_test(http_server.url("/ok")))["job_info"]["job_id"]
    with httpx.Client(base_url=streams.base_url, timeout=10) as client:
        theirs = client.get(
            streams.url(f"/sources/test/{job_id}/events", org_id=streams.other_org_id),
            headers={"Authorization": f"Bearer {streams.other_token}"},
        )
        assert theirs.status_code == 404
        assert theirs.json()["error"]["code"] == "not_found"
        mine = {"Authorization": f"Bearer {streams.token}"}
        assert client.get(streams.url("/sources/test/job_nothere/events"), headers=mine).status_code == 404
        bad = client.get(streams.url(f"/sources/test/{job_id}/events"), headers={**mine, "Last-Event-ID": "x; DEL"})
        assert bad.status_code == 422
        assert client.get(streams.url(f"/sources/test/{job_id}/events")).status_code == 401


def test_a_stream_carries_no_secret(streams: Stack, no_worker: None) -> None:
    secret = "Stream-Secret-Never-Sent-77"
    body = {"source_definition_id": "faulty", "configuration": {"mode": "echo_secret", "password": secret}}
    job_id = send(streams, body)["job_info"]["job_id"]
    lines: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        watching = pool.submit(events, streams, job_id, lines=lines)
        time.sleep(0.5)  # the stream is open: the job is watched before a worker starts it
        streams.start_worker(WORKER)
        found = watching.result(timeout=60)
    assert found[-1].data["job_info"]["type"] == "authentication_failed"
    assert any("rejected" in line for line in lines)
    assert secret not in "\n".join(lines)
    stored = streams.redis.client().xrange(f"sourcecheck:events:{job_id}")
    assert len(stored) >= 4  # plan, the step's start and end, end: written by the worker as it ran
    assert secret.encode() not in b"".join(k + v for _, fields in stored for k, v in fields.items())


# --- cancel --------------------------------------------------------------------------------------


def test_cancelling_a_test_hung_on_a_tarpit_ends_it_cancelled_within_a_second_and_spares_its_neighbour(
    streams: Stack, hung_server: HostPort, http_server: HttpServer
) -> None:
    hung = send(streams, http_test(f"http://{hung_server.host}:{hung_server.port}/"), timeout=20)
    job_id = hung["job_info"]["job_id"]
    healthy = send(streams, http_test(http_server.url("/ok?delay=1.5")), timeout=20)["job_info"]["job_id"]
    with ThreadPoolExecutor(1) as pool:
        watched = pool.submit(events, streams, job_id)
        deadline = time.monotonic() + 10
        while poll(streams, job_id).json()["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # in its request step, which the tarpit never answers
        with streams.client() as client:
            sent = time.monotonic()
            answer = client.delete(streams.url(f"/sources/test/{job_id}"))
            took = time.monotonic() - sent
        assert answer.status_code == 200, answer.text
        assert took < 1.0
        result = answer.json()
        assert result["status"] == "failed"
        assert result["job_info"]["type"] == "cancelled"
        assert result["job_info"]["retryable"] is True
        steps = {s["name"]: s["status"] for s in result["job_info"]["steps"]}
        assert steps["tcp"] == "succeeded" and steps["request"] == "failed"
        found = watched.result(timeout=10)
    assert ("request", "failed") in steps_of(found)
    assert found[-1].event == "result" and found[-1].data == result
    assert poll(streams, job_id).json() == result  # the cancelled result is the test's, for good
    neighbour = poll(streams, healthy, wait=10).json()
    assert neighbour["status"] == "succeeded", neighbour


def test_cancelling_a_queued_test_ends_it_now_and_it_never_runs(streams: Stack, no_worker: None) -> None:
    job_id = send(streams, faulty("sleep", 0))["job_info"]["job_id"]
    with streams.client() as client:
        answer = client.delete(streams.url(f"/sources/test/{job_id}"))
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] == "failed" and result["job_info"]["type"] == "cancelled"
    assert result["job_info"]["started_at"] is None
    streams.start_worker(WORKER)  # now a worker takes its message
    log = streams.logs[f"worker-{WORKER}"]
    _wait_for(lambda: f"job {job_id} already has its final result" in log.read_text(), "the worker's message", 30)
    assert poll(streams, job_id).json() == result


def test_a_stream_ends_at_the_jobs_deadline_whatever_the_worker_does(streams: Stack, no_worker: None) -> None:
    job_id = send(streams, faulty("sleep", 0), timeout=0.5)["job_info"]["job_id"]
    found = events(streams, job_id)  # nobody takes it: written off at created + 2 + 0.5 + 5 s
    assert [e.event for e in found] == ["result"]
    assert found[0].data["status"] == "failed"
    assert found[0].data["job_info"]["type"] == "timeout"
    assert found[0].data == poll(streams, job_id).json()


def test_cancelling_an_ended_test_is_409_and_changes_nothing(streams: Stack, http_server: HttpServer) -> None:
    job_id = send(streams, http_test(http_server.url("/ok")), wait=10)["job_info"]["job_id"]
    before = poll(streams, job_id, wait=10).json()
    assert before["status"] == "succeeded"
    with streams.client() as client:
        answer = client.delete(streams.url(f"/sources/test/{job_id}"))
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "test_ended"
        assert "already ended" in answer.json()["error"]["message"]
        other = client.delete(
            streams.url(f"/sources/test/{job_id}", org_id=streams.other_org_id),
            headers={"Authorization": f"Bearer {streams.other_token}"},
        )
        assert other.status_code == 404
    assert poll(streams, job_id).json() == before


def test_a_coalesced_test_cannot_be_cancelled_by_one_of_its_callers(streams: Stack) -> None:
    body = faulty("sleep", 1.5)
    first = send(streams, body)["job_info"]["job_id"]
    second = send(streams, body)["job_info"]["job_id"]
    assert second == first  # the identical request joined the test in flight
    with streams.client() as client:
        answer = client.delete(streams.url(f"/sources/test/{first}"))
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "test_shared"
    assert "coalesced" in answer.json()["error"]["message"]
    assert poll(streams, first, wait=10).json()["status"] == "succeeded"  # it ran on for both
    alone = send(streams, faulty("sleep", 5))["job_info"]["job_id"]  # one nobody joined can be
    time.sleep(0.3)
    with streams.client() as client:
        assert client.delete(streams.url(f"/sources/test/{alone}")).json()["job_info"]["type"] == "cancelled"


# --- the client ----------------------------------------------------------------------------------


def test_the_client_streams_typed_events_and_cancels_a_hung_test(streams: Stack, hung_server: HostPort) -> None:
    body = http_test(f"http://{hung_server.host}:{hung_server.port}/")
    with Client(api_key=streams.token, base_url=streams.base_url, organization_id=streams.org_id) as client:
        sent = client.knowledge_connectors.test_source(
            source_definition_id="http", configuration=body["configuration"], wait=0, timeout=20, poll=False
        )
        assert sent.job_id is not None
        seen: list[TestEvent] = []
        for event in client.knowledge_connectors.stream_test(sent.job_id):
            seen.append(event)
            if isinstance(event, StepEvent) and event.name == "request" and event.running:
                cancelled = client.knowledge_connectors.cancel_test(sent.job_id)
                assert cancelled.failed and cancelled.job_info is not None
                assert cancelled.job_info.type == "cancelled"
        assert isinstance(seen[0], PlanEvent)
        last = seen[-1]
        assert isinstance(last, ResultEvent) and last.result == cancelled
        with pytest.raises(ConflictError) as ended:
            client.knowledge_connectors.cancel_test(sent.job_id)
        assert ended.value.code == "test_ended"


def test_the_async_client_replays_an_ended_tests_events(streams: Stack, http_server: HttpServer) -> None:
    async def watch() -> tuple[list[TestEvent], TestResult]:
        async with AsyncClient(api_key=streams.token, base_url=streams.base_url) as client:
            connectors = client.knowledge_connectors
            result = await connectors.test_source(organization_id=streams.org_id, **http_test(http_server.url("/ok")))
            assert result.job_id is not None
            found = [e async for e in connectors.stream_test(result.job_id, organization_id=streams.org_id)]
            return found, result

    found, result = asyncio.run(watch())
    assert [type(e) for e in found[:2]] == [PlanEvent, StepEvent]
    assert isinstance(found[-1], ResultEvent) and found[-1].result == result


# --- Flower ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(streams: Stack) -> Stack:
    """This module's stack, for the fixtures written for the session's (Flower's)."""
    return streams


def test_flower_shows_a_cancelled_test_as_ended(streams: Stack, flower: str) -> None:
    job_id = send(streams, faulty("sleep", 30), timeout=20)["job_info"]["job_id"]
    deadline = time.monotonic() + 10
    while poll(streams, job_id).json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    with streams.client() as client:
        assert client.delete(streams.url(f"/sources/test/{job_id}")).json()["job_info"]["type"] == "cancelled"
    task = json.loads(flower_task(flower, job_id, timeout=30))[job_id]
    assert task["state"] == "SUCCESS"  # the task ended normally, with the cancelled result
    assert "failed (cancelled)" in task["result"]
