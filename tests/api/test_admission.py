"""Admission (api.admission.Admission): a few requests at a time, the newest first, and only
authenticated ones: a flood of requests without a valid key against a real stack takes no
place while the tests of a valid key go through."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Message, Receive, Scope, Send

from api.admission import Admission, AdmissionGate, AdmissionSlot
from api.errors import ServiceUnavailable
from api.settings import ApiSettings
from tests.servers.http import HttpServer
from tests.servers.stack import Stack, own_stack


async def _queue_up(admission: Admission, names: list[str], admitted: list[str]) -> list[asyncio.Task[None]]:
    async def one(name: str) -> None:
        await admission.acquire()
        admitted.append(name)

    tasks = []
    for name in names:
        tasks.append(asyncio.create_task(one(name)))
        await asyncio.sleep(0)  # each reaches its wait in the order given
    return tasks


async def test_free_places_are_taken_at_once_and_waiting_requests_go_newest_first() -> None:
    admission = Admission(2)
    admitted: list[str] = []
    tasks = await _queue_up(admission, ["a", "b", "c", "d", "e"], admitted)
    assert admitted == ["a", "b"]
    for _ in range(3):
        admission.release()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert admitted == ["a", "b", "e", "d", "c"]


async def test_a_request_that_gives_up_waiting_leaves_no_hole() -> None:
    admission = Admission(1)
    admitted: list[str] = []
    tasks = await _queue_up(admission, ["a", "b", "c"], admitted)
    tasks[2].cancel()  # the newest waiter's caller went away
    await asyncio.sleep(0)
    admission.release()  # the place goes to the next waiter, not to the cancelled one
    await asyncio.sleep(0)
    assert admitted == ["a", "b"]
    admission.release()
    await admission.acquire()  # the place came back: free again
    assert admitted == ["a", "b"]


async def test_a_request_waits_at_most_wait_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Admission, "WAIT_SECONDS", 0.05)
    admission = Admission(1)
    await admission.acquire()
    with pytest.raises(TimeoutError):
        await admission.acquire()
    admission.release()
    await admission.acquire()  # the one that timed out took nothing with it


# --- the gate: api.admission.AdmissionGate, the ASGI middleware that applies it ----------

TEST_PATH = "/v1/organizations/org_a/knowledge/connectors/sources/test"


class _Route:
    """An ASGI app standing in for the API: records what it saw, answers once released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.hold = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append((scope["path"], scope.get("state", {}).get("admission")))
        await self.hold.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def _request(gate: AdmissionGate, method: str, path: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await gate({"type": "http", "method": method, "path": path}, receive, send)
    return sent


async def test_the_gate_hands_test_requests_a_place_the_route_takes_and_takes_it_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Admission, "WAIT_SECONDS", 0.1)
    route = _Route()
    admission = Admission(1)
    gate = AdmissionGate(route, admission)
    first = asyncio.create_task(_request(gate, "POST", TEST_PATH))
    await asyncio.sleep(0.01)
    slot = route.calls[0][1]
    assert isinstance(slot, AdmissionSlot) and admission.admitted == 0  # handed over, not taken: the route takes it
    await slot.acquire()
    assert admission.admitted == 1

    with pytest.raises(ServiceUnavailable):  # the only place is taken: 503 once the wait is over
        await AdmissionSlot(admission).acquire()

    polling = asyncio.create_task(_request(gate, "GET", TEST_PATH + "/job_1"))  # not a test request: no place
    await asyncio.sleep(0.01)
    assert len(route.calls) == 2 and route.calls[1][1] is None

    route.hold.set()
    await asyncio.gather(first, polling)
    await asyncio.wait_for(admission.acquire(), 1)  # the route never gave the place back: the gate did


def test_the_app_takes_its_number_of_places_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from api import main

    monkeypatch.setattr(main, "get_api_settings", lambda: ApiSettings(admission_slots=3))
    gates = [m for m in main.create_app().user_middleware if m.cls is AdmissionGate]
    assert len(gates) == 1 and gates[0].kwargs["admission"]._free == 3


# --- a flood of requests without a valid key, against a real stack ----------------------

FLOOD_THREADS = 8
FLOOD_SECONDS = 4.0
HEALTHY_TESTS = 8
PROMPT_SECONDS = 10.0  # generous: the machine is shared; a starved test waits Admission.WAIT_SECONDS (30 s)


@pytest.fixture(scope="module")
def one_place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose API has a single admission place: whoever holds it keeps every other test waiting."""
    with own_stack(tmp_path_factory, "admission", admission_slots="1") as running:
        yield running


def _admitted(stack: Stack) -> float:
    text = httpx.get(f"{stack.base_url}/metrics", timeout=10).text
    found = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "sourcecheck_admission_admitted_total"
    ]
    assert found, "the admission gate's count is not on /metrics"
    return found[0]


def _flood(stack: Stack, stop: threading.Event, answers: collections.Counter[int]) -> None:
    """Unauthenticated test requests, back to back on one connection, until ``stop`` (or FLOOD_SECONDS)."""
    bodies = {"source_definition_id": "http", "configuration": {"url": "http://127.0.0.1:9/"}}
    headers = [
        {},
        {"Authorization": "Bearer sck_aaaaaaaaaaaa_" + "a" * 43},
        {"Authorization": f"Bearer {stack.token}x"},
    ]
    deadline = time.monotonic() + FLOOD_SECONDS
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        i = 0
        while not stop.is_set() and time.monotonic() < deadline:
            r = client.post(stack.url("/sources/test"), json=bodies, headers=headers[i % len(headers)])
            answers[r.status_code] += 1
            i += 1


def test_requests_without_a_valid_key_take_no_admission_place(one_place: Stack, http_server: HttpServer) -> None:
    stack = one_place
    before = _admitted(stack)
    stop, answers = threading.Event(), collections.Counter[int]()
    flood = [threading.Thread(target=_flood, args=(stack, stop, answers)) for _ in range(FLOOD_THREADS)]
    for thread in flood:
        thread.start()
    took: list[float] = []
    try:
        time.sleep(0.5)  # the flood is on
        with stack.client() as client:
            for i in range(HEALTHY_TESTS):
                started = time.monotonic()
                r = client.post(
                    stack.url("/sources/test"),
                    json={"source_definition_id": "http", "configuration": {"url": http_server.url(f"/ok?n={i}")}},
                )
                took.append(time.monotonic() - started)
                assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    finally:
        stop.set()
        for thread in flood:
            thread.join(timeout=60)
    assert set(answers) == {401}, answers  # every flood request was refused, none reached a place
    assert sum(answers.values()) > 10 * HEALTHY_TESTS, answers  # it was a flood
    assert max(took) < PROMPT_SECONDS, took
    # Only the authenticated tests took a place: the flood's requests never entered the gate.
    assert _admitted(stack) - before == HEALTHY_TESTS
