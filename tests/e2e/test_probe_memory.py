"""A probe that takes memory without bound, end to end: it ends ``failed``/``worker_lost``
at its probe process's memory bound (SOURCECHECK_PROBE_MEMORY_MB), the worker stays up,
the probe process is replaced, and another organization's tests on the same worker
succeed meanwhile.

One stack of its own (its own Redis, one worker, a small bound) so that the bound and the
replaced probe process disturb no other test module.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.servers.http import HttpServer
from tests.servers.stack import Stack, own_stack

pytestmark = pytest.mark.e2e

LIMIT_MB = 512
WORKER = "m1"


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with own_stack(
        tmp_path_factory,
        "memory",
        workers=(WORKER,),
        probe_memory_mb=str(LIMIT_MB),
        org_concurrency_limit="1000",
        org_tests_per_minute="0",
    ) as running:
        yield running


def probe_processes(worker_pid: int) -> set[int]:
    """The worker's probe processes: its children started by multiprocessing's spawn."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # it ended while we looked
        if ppid == worker_pid and b"spawn_main" in cmdline:
            found.add(int(stat.parent.name))
    return found


def wait_for_processes(worker_pid: int, count: int, timeout: float = 60) -> set[int]:
    deadline = time.monotonic() + timeout
    while len(found := probe_processes(worker_pid)) != count and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def memory_hog() -> dict[str, Any]:
    # Twice the bound, then success: without the bound the test sees `succeeded` (and fails).
    return {
        "source_definition_id": "faulty",
        "configuration": {"mode": "memory_hog", "megabytes": 2 * LIMIT_MB, "seconds": 4, "tag": uuid.uuid4().hex},
    }


def healthy(http_server: HttpServer) -> dict[str, Any]:
    return {"source_definition_id": "http", "configuration": {"url": http_server.url(f"/ok?m={uuid.uuid4().hex}")}}


def test_a_probe_taking_memory_without_bound_ends_worker_lost_and_other_tenants_go_on(
    bounded: Stack,
    http_server: HttpServer,
) -> None:
    worker = bounded.workers[WORKER]
    before = wait_for_processes(worker.pid, 2)
    assert len(before) == 2, before
    with bounded.client() as hostile, bounded.client(bounded.other_token) as other:
        sent = hostile.post(bounded.url("/sources/test"), json=memory_hog(), params={"wait": 0, "timeout": 30})
        assert sent.status_code == 202, sent.text
        job_id = sent.json()["job_info"]["job_id"]
        started = time.monotonic()

        # While the hog grows to its bound and its process is replaced, the other
        # organization's tests run on the same worker (some on the hog's own process:
        # they are run again on its replacement).
        answers = []
        while time.monotonic() - started < 6:
            began = time.monotonic()
            answer = other.post(
                bounded.url("/sources/test", bounded.other_org_id),
                json=healthy(http_server),
                params={"wait": 30, "timeout": 20},
            )
            answers.append((time.monotonic() - began, answer))
            time.sleep(0.3)

        outcome = hostile.get(bounded.url(f"/sources/test/{job_id}"), params={"wait": 30}).json()
    assert outcome["status"] == "failed", outcome
    info = outcome["job_info"]
    assert info["type"] == "worker_lost"
    assert "ran out of memory" in info["message"] and f"{LIMIT_MB} MB" in info["message"]
    assert time.monotonic() - started < 20  # at the bound, well before its 30 s deadline

    assert len(answers) >= 3
    assert [a.json()["status"] for _, a in answers] == ["succeeded"] * len(answers), [a.text for _, a in answers]
    assert {a.json()["job_info"]["worker"].split("@")[0] for _, a in answers} == {WORKER}
    assert max(seconds for seconds, _ in answers) < 15  # at worst: run again once its replacement has started

    # The worker is up, with one probe process replaced and the other untouched.
    assert worker.poll() is None
    after = wait_for_processes(worker.pid, 2)
    assert len(after) == 2 and len(after & before) == 1, (before, after)
    assert "ran out of memory" in bounded.logs[f"worker-{WORKER}"].read_text()
    with bounded.client(bounded.other_token) as other:
        again = other.post(bounded.url("/sources/test", bounded.other_org_id), json=healthy(http_server))
    assert again.json()["status"] == "succeeded", again.text
