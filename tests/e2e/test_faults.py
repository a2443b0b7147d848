"""Faults that really happen, end to end: a worker SIGKILLed with 200 probes in flight, a
worker stopped gracefully (SIGTERM) while it runs probes, a probe's message delivered
again, a job whose result has expired.

One stack of its own (its own Redis, two workers, short queue deadlines) so that killing
and stopping workers disturbs no other test module.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from celery import Celery

from tests.helpers import faulty
from tests.servers.http import HttpServer
from tests.servers.stack import Stack, own_stack
from worker.app import QUEUE
from worker.crypto import Cipher
from worker.jobs import FINISH_GRACE_SECONDS, TASK_NAME

pytestmark = pytest.mark.e2e

QUEUE_TIMEOUT = 3.0
FINAL = ("succeeded", "failed")


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with own_stack(
        tmp_path_factory,
        "faults",
        workers=("f1", "f2"),
        org_concurrency_limit="1000",
        org_tests_per_minute="0",
        queue_timeout_seconds=str(QUEUE_TIMEOUT),
    ) as running:
        yield running


async def _post_many(stack: Stack, bodies: list[dict[str, Any]], **params: Any) -> list[httpx.Response]:
    """Send every test, 50 at a time (this module is about faults, not load)."""
    sending = asyncio.Semaphore(50)
    async with stack.async_client() as client:

        async def one(body: dict[str, Any]) -> httpx.Response:
            async with sending:
                return await client.post(stack.url("/sources/test"), json=body, params=params)

        return await asyncio.gather(*(one(b) for b in bodies))


async def _poll_many(stack: Stack, job_ids: list[str], **params: Any) -> list[tuple[float, httpx.Response]]:
    """Poll every job once, 50 at a time; each answer with the wall-clock time its request was sent."""
    polling = asyncio.Semaphore(50)
    async with stack.async_client() as client:

        async def one(job_id: str) -> tuple[float, httpx.Response]:
            async with polling:
                sent = time.time()
                return sent, await client.get(stack.url(f"/sources/test/{job_id}"), params=params)

        return await asyncio.gather(*(one(j) for j in job_ids))


def _worker_name(info: dict[str, Any]) -> str | None:
    """The stack's name of the worker in a job_info (``f1`` for ``f1@host``)."""
    return info["worker"].split("@", 1)[0] if info.get("worker") else None


def _look(stack: Stack, job_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """Every job's (status, worker) now."""
    answers = asyncio.run(_poll_many(stack, job_ids))
    assert {r.status_code for _, r in answers} <= {200, 202}, [
        r.text for _, r in answers if r.status_code not in (200, 202)
    ][:3]
    return {
        j: (r.json()["status"], _worker_name(r.json()["job_info"])) for j, (_, r) in zip(job_ids, answers, strict=True)
    }


def _wait_started(stack: Stack, job_ids: list[str], timeout: float = 30) -> dict[str, tuple[str, str | None]]:
    """Wait until a worker has taken every job; returns each job's (status, worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started: dict[str, tuple[str, str | None]] = {
            j: (status, worker)
            for j, (status, worker) in _look(stack, job_ids).items()
            if status != "pending" and worker
        }
        if len(started) == len(job_ids):
            return started
        time.sleep(0.2)
    raise AssertionError(f"only {len(started)} of {len(job_ids)} jobs started within {timeout} s")


def _busiest(started: dict[str, tuple[str, str | None]]) -> tuple[str, list[str]]:
    """The worker running the most of these jobs, and the jobs it runs."""
    running: dict[str, list[str]] = {}
    for job_id, (status, worker) in started.items():
        if status == "running" and worker:
            running.setdefault(worker, []).append(job_id)
    assert running, "no job was running"
    victim = max(running, key=lambda w: len(running[w]))
    return victim, running[victim]


def _deadline_of(info: dict[str, Any]) -> float:
    """When the API writes the job off at the latest: its record's deadline_at (see worker.jobs.new_job)."""
    created = datetime.fromisoformat(info["created_at"])
    return (created + timedelta(seconds=QUEUE_TIMEOUT + info["timeout_seconds"] + FINISH_GRACE_SECONDS)).timestamp()


def _stop_worker(stack: Stack, name: str, sig: signal.Signals) -> subprocess.Popen[bytes]:
    process = stack.workers.pop(name)
    os.killpg(process.pid, sig)  # the whole process group, as a terminal or systemd would
    return process


# --- graceful shutdown ----------------------------------------------------------------------


def test_sigterm_lets_running_probes_finish_and_the_worker_takes_no_new_ones(faults: Stack) -> None:
    slow = asyncio.run(_post_many(faults, [faulty("sleep", 3) for _ in range(12)], wait=0, timeout=10))
    assert {r.status_code for r in slow} == {202}
    slow_ids = [r.json()["job_info"]["job_id"] for r in slow]
    victim, on_victim = _busiest(_wait_started(faults, slow_ids))
    survivors = set(faults.workers) - {victim}

    process = _stop_worker(faults, victim, signal.SIGTERM)
    after = asyncio.run(_post_many(faults, [faulty("sleep", 0.2) for _ in range(6)], wait=15, timeout=5))
    # The probes it was running end normally: the probe runner closes only after them.
    with faults.client() as client:
        finished = {j: client.get(faults.url(f"/sources/test/{j}"), params={"wait": 15}).json() for j in slow_ids}
    assert {j: f["status"] for j, f in finished.items()} == dict.fromkeys(slow_ids, "succeeded")
    assert all(_worker_name(finished[j]["job_info"]) == victim for j in on_victim)
    assert process.wait(timeout=30) == 0, "the worker did not end cleanly after its probes"
    # Jobs sent after the SIGTERM ran on the other workers (one the stopping worker had
    # already popped from the queue, it gave back untouched).
    assert {r.json()["status"] for r in after} == {"succeeded"}
    assert {_worker_name(r.json()["job_info"]) for r in after} <= survivors
    # Nothing it was running was handed to another worker (no redelivery on shutdown).
    others = "".join(faults.logs[f"worker-{w}"].read_text() for w in survivors)
    assert not [j for j in on_victim if j in others]
    faults.start_worker(f"{victim}b")


# --- SIGKILL with 200 probes in flight --------------------------------------------------------


def test_sigkill_with_200_probes_in_flight_leaves_every_job_final_once_by_its_deadline(faults: Stack) -> None:
    # Probes long enough that all 200 are still in flight when the worker dies, however
    # slowly a busy machine accepts them.
    batch = asyncio.run(_post_many(faults, [faulty("sleep", 25) for _ in range(200)], wait=0, timeout=30))
    assert {r.status_code for r in batch} == {202}
    infos = {r.json()["job_info"]["job_id"]: r.json()["job_info"] for r in batch}
    job_ids = list(infos)
    before = _look(faults, job_ids)
    assert not [j for j, (status, _) in before.items() if status in FINAL], "a job ended before the kill"
    victim, killed = _busiest(before)
    _stop_worker(faults, victim, signal.SIGKILL).wait()

    outcomes: dict[str, tuple[str, str | None]] = {}
    late: list[tuple[str, str]] = []  # (job, status) seen unfinished after its deadline
    give_up = max(_deadline_of(i) for i in infos.values()) + 10
    while time.time() < give_up and len(outcomes) < len(job_ids):
        for job_id, (sent, answer) in zip(job_ids, asyncio.run(_poll_many(faults, job_ids)), strict=True):
            assert answer.status_code in (200, 202), answer.text
            body = answer.json()
            if body["status"] in FINAL:
                outcome = (body["status"], body["job_info"]["type"])
                assert outcomes.setdefault(job_id, outcome) == outcome, f"job {job_id} changed its outcome"
            elif sent > _deadline_of(infos[job_id]):
                late.append((job_id, body["status"]))
        time.sleep(1)
    assert not late, f"jobs still unfinished after their deadline: {late[:5]}"
    assert len(outcomes) == len(job_ids), "some jobs never reached a final state"
    # One more look at all of them: still the same outcome.
    for job_id, (_, answer) in zip(job_ids, asyncio.run(_poll_many(faults, job_ids)), strict=True):
        assert (answer.json()["status"], answer.json()["job_info"]["type"]) == outcomes[job_id]
    # What the killed worker was running is lost; everything else (the survivor's share and
    # what was still queued) succeeded.
    assert {outcomes[j] for j in killed} == {("failed", "worker_lost")}
    assert {outcomes[j] for j in job_ids if j not in killed} == {("succeeded", None)}
    faults.start_worker(f"{victim}c")


# --- a message delivered again ----------------------------------------------------------------


def _republish(stack: Stack, job_id: str, definition: str, configuration: dict[str, Any], **options: Any) -> None:
    """Send a job's message again, as kombu does when it restores an unacknowledged one."""
    cipher = Cipher(stack.env["SOURCECHECK_SECRET_KEYS"].split(","))
    payload = {
        "job_id": job_id,
        "organization_id": stack.org_id,
        "definition": definition,
        "config": cipher.encrypt_json(configuration),
        "timeout": 5.0,
        "fingerprint": None,
    }
    sender = Celery("republish", broker=stack.redis.url)
    sender.conf.update(task_serializer="json", accept_content=["json"])
    try:
        sender.send_task(TASK_NAME, args=[payload], task_id=job_id, queue=QUEUE, **options)
    finally:
        sender.close()


def _wait_log(stack: Stack, pattern: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, stack.log_text()):
            return
        time.sleep(0.2)
    raise AssertionError(f"no log line matches {pattern!r} within {timeout} s")


def test_a_probe_delivered_again_is_not_run_again(faults: Stack, http_server: HttpServer) -> None:
    path = f"/ok?probe={uuid.uuid4().hex}"
    configuration = {"url": http_server.url(path)}
    with faults.client() as client:
        first = client.post(
            faults.url("/sources/test"), json={"source_definition_id": "http", "configuration": configuration}
        )
        assert first.json()["status"] == "succeeded"
        job_id = first.json()["job_info"]["job_id"]

        # Delivered again before its deadline (a message restored early): the task finds
        # the final result and does not run the probe.
        _republish(faults, job_id, "http", configuration)
        _wait_log(faults, rf"job {job_id} already has its final result; not run again")
        # Delivered again after its deadline (how kombu restores, after the visibility
        # timeout): the worker drops it as expired without running it.
        _republish(faults, job_id, "http", configuration, expires=datetime.now(UTC) - timedelta(seconds=60))
        _wait_log(faults, rf"(?i)discarding revoked task: {TASK_NAME}\[{job_id}\]")

        again = client.get(faults.url(f"/sources/test/{job_id}"))
    assert len([r for r in http_server.requests if r.path == path]) == 1, "the probe ran again"
    assert again.json() == first.json(), "the stored result changed"


# --- expired and unknown jobs -------------------------------------------------------------------


def test_a_job_whose_result_expired_or_that_never_existed_is_a_404(faults: Stack) -> None:
    with faults.client() as client:
        done = client.post(faults.url("/sources/test"), json=faulty("sleep", 0))
        assert done.json()["status"] == "succeeded"
        job_id = done.json()["job_info"]["job_id"]
        redis = faults.redis.client()
        keys = [f"sourcecheck:job:{job_id}", f"sourcecheck:result:{job_id}"]
        # Both keys of a job expire (SOURCECHECK_RESULT_TTL_SECONDS, 3600 here) ...
        assert all(0 < redis.ttl(k) <= 3600 for k in keys), [redis.ttl(k) for k in keys]
        # ... and once Redis has expired them (brought forward here), the job is gone.
        for key in keys:
            redis.pexpire(key, 1)
        time.sleep(0.05)
        assert redis.exists(*keys) == 0
        expired = client.get(faults.url(f"/sources/test/{job_id}"))
        unknown = client.get(faults.url(f"/sources/test/job_{uuid.uuid4().hex}"))
        waited = client.get(faults.url(f"/sources/test/job_{uuid.uuid4().hex}"), params={"wait": 5})
    for answer in (expired, unknown, waited):
        assert answer.status_code == 404
        error = answer.json()["error"]
        assert error["code"] == "not_found"
        assert "unknown or its result has expired" in error["message"]
    assert job_id in expired.json()["error"]["message"]
