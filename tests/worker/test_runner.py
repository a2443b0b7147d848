"""The ProbeRunner keeps every deadline and survives connectors that block or crash.

Real child processes run real (misbehaving) connectors from tests/plugins/faulty.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from connectors.base import CheckResult
from worker.crypto import Cipher
from worker.runner import ProbeRunner

FAULTY = str(Path(__file__).parents[1] / "plugins" / "faulty")
KEY = Fernet.generate_key().decode()


@pytest.fixture
def runner() -> Iterator[ProbeRunner]:
    sys.path.insert(0, FAULTY)  # spawned children take the parent's sys.path
    probe_runner = ProbeRunner([KEY], processes=1, grace=0.5)
    try:
        yield probe_runner
    finally:
        probe_runner.close()
        sys.path.remove(FAULTY)


def run(runner: ProbeRunner, timeout: float, **config: object) -> CheckResult:
    return runner.run("faulty", Cipher([KEY]).encrypt_json(config), timeout)


def test_a_cooperative_probe_succeeds(runner: ProbeRunner) -> None:
    assert run(runner, 5, mode="sleep", seconds=0.1).status == "succeeded"


def test_a_probe_blocking_in_c_ends_at_its_deadline_and_the_runner_keeps_serving(runner: ProbeRunner) -> None:
    pid = runner.pids()[0]
    started = time.monotonic()
    result = run(runner, 1.0, mode="block_in_c", seconds=30)
    elapsed = time.monotonic() - started
    assert result.status == "failed"
    assert result.failure.type == "timeout"
    assert elapsed < 1.0 + 0.5 + 1.0  # deadline + grace + the watchdog's reaction
    assert run(runner, 10, mode="sleep", seconds=0).status == "succeeded"
    assert runner.pids() != [pid]  # the stuck child was replaced


def test_probes_sharing_a_child_with_a_blocked_one_are_run_again_elsewhere(runner: ProbeRunner) -> None:
    with ThreadPoolExecutor(4) as pool:
        blocked = pool.submit(run, runner, 1.0, mode="block_in_c", seconds=30)
        time.sleep(0.2)  # the blocked probe holds the only child's loop
        innocent = [pool.submit(run, runner, 8.0, mode="sleep", seconds=0.1, tag=str(i)) for i in range(3)]
        assert blocked.result().failure.type == "timeout"
        assert [f.result().status for f in innocent] == ["succeeded"] * 3


@pytest.mark.parametrize("mode", ["exit", "segfault"])
def test_a_probe_that_kills_its_process_ends_worker_lost_and_the_runner_recovers(
    runner: ProbeRunner, mode: str
) -> None:
    result = run(runner, 5.0, mode=mode)
    assert result.status == "failed"
    assert result.failure.type == "worker_lost"
    assert run(runner, 10, mode="sleep", seconds=0).status == "succeeded"


def test_hundreds_of_probes_wait_at_once_in_one_child(runner: ProbeRunner) -> None:
    with ThreadPoolExecutor(300) as pool:
        futures = [pool.submit(run, runner, 1.0, mode="sleep", seconds=30, tag=str(i)) for i in range(300)]
        results = [f.result() for f in futures]
    assert {r.failure.type for r in results} == {"timeout"}


def test_wait_ready_returns_once_the_children_have_started(runner: ProbeRunner) -> None:
    assert runner.wait_ready(timeout=60)
    started = time.monotonic()
    assert run(runner, 5, mode="sleep", seconds=0).status == "succeeded"
    assert time.monotonic() - started < 1.5  # no start-up left to pay


def test_a_sigterm_to_the_probe_processes_lets_their_probes_finish(runner: ProbeRunner) -> None:
    # What a SIGTERM to the worker's whole process group does to them: nothing; the
    # worker decides when they stop (after its warm shutdown), by closing their pipes.
    assert runner.wait_ready(timeout=60)
    pid = runner.pids()[0]
    with ThreadPoolExecutor(1) as pool:
        probe = pool.submit(run, runner, 10, mode="sleep", seconds=1)
        time.sleep(0.3)
        os.kill(pid, signal.SIGTERM)
        assert probe.result(timeout=10).status == "succeeded"
    assert runner.pids() == [pid]


# --- the memory bound of a probe process ------------------------------------------------------

LIMIT_MB = 256


@pytest.fixture
def bounded() -> Iterator[ProbeRunner]:
    sys.path.insert(0, FAULTY)
    probe_runner = ProbeRunner([KEY], processes=1, grace=0.5, memory_mb=LIMIT_MB)
    try:
        assert probe_runner.wait_ready(timeout=60)
        yield probe_runner
    finally:
        probe_runner.close()
        sys.path.remove(FAULTY)


def hog(runner: ProbeRunner, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    # Twice the bound, then success: without the bound this probe succeeds.
    return run(runner, timeout, mode="memory_hog", megabytes=2 * LIMIT_MB, seconds=1)


def replaced(runner: ProbeRunner, pid: int, timeout: float = 60) -> list[int]:
    """The runner's children once ``pid`` has been replaced and the replacement has started."""
    deadline = time.monotonic() + timeout
    while pid in runner.pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.wait_ready(timeout=max(0.0, deadline - time.monotonic()))
    assert pid not in runner.pids()
    return runner.pids()


def test_a_probe_taking_more_memory_than_its_process_may_ends_worker_lost_and_its_process_is_replaced(
    bounded: ProbeRunner,
) -> None:
    pid = bounded.pids()[0]
    started = time.monotonic()
    result = hog(bounded)
    assert time.monotonic() - started < 10  # at the bound, not at the deadline
    assert result.status == "failed", result
    assert result.failure.type == "worker_lost"
    assert "ran out of memory" in result.failure.message
    assert f"{LIMIT_MB} MB" in result.failure.message
    replacement = replaced(bounded, pid)
    # The hog is not sent again: its replacement lives on and serves.
    assert run(bounded, 10, mode="sleep", seconds=0.5).status == "succeeded"
    assert bounded.pids() == replacement


def test_probes_sharing_a_process_with_a_memory_hog_are_run_again_and_succeed(bounded: ProbeRunner) -> None:
    with ThreadPoolExecutor(4) as pool:
        innocent = [pool.submit(run, bounded, 30, mode="sleep", seconds=1.5, tag=str(i)) for i in range(3)]
        time.sleep(0.3)  # they are on the only process when the hog arrives
        hostile = pool.submit(hog, bounded)
        assert hostile.result().failure.type == "worker_lost"
        assert [f.result().status for f in innocent] == ["succeeded"] * 3


def test_a_probe_within_the_bound_is_not_disturbed(bounded: ProbeRunner) -> None:
    pid = bounded.pids()[0]
    result = run(bounded, 30, mode="memory_hog", megabytes=LIMIT_MB // 2, seconds=0.5)
    assert result.status == "succeeded", result
    assert bounded.pids() == [pid]


# --- cancelling a probe, and its events -------------------------------------------------------


def run_job(runner: ProbeRunner, job_id: str, timeout: float, **config: object) -> CheckResult:
    return runner.run("faulty", Cipher([KEY]).encrypt_json(config), timeout, job_id=job_id)


def test_a_cancelled_probe_ends_cancelled_at_once_and_its_neighbour_in_the_child_succeeds(
    runner: ProbeRunner,
) -> None:
    assert runner.wait_ready(timeout=60)
    pid = runner.pids()[0]
    with ThreadPoolExecutor(2) as pool:
        hung = pool.submit(run_job, runner, "job_hung", 20, mode="sleep", seconds=30)
        healthy = pool.submit(run, runner, 20, mode="sleep", seconds=1.5, tag="neighbour")
        time.sleep(0.5)  # both run on the only child
        sent = time.monotonic()
        assert runner.cancel("job_hung")
        result = hung.result(timeout=5)
        assert time.monotonic() - sent < 1.0
        assert result.status == "failed" and result.failure.type == "cancelled", result
        assert [s.status for s in result.steps] == ["failed"]  # the step that ran: failed, "cancelled"
        assert healthy.result().status == "succeeded"
    assert runner.pids() == [pid]  # cancelled in its child, which lives on


def test_a_job_cancelled_before_its_probe_comes_ends_cancelled_without_running(runner: ProbeRunner) -> None:
    assert not runner.cancel("job_early")
    started = time.monotonic()
    result = run_job(runner, "job_early", 20, mode="sleep", seconds=10)
    assert result.failure.type == "cancelled"
    assert time.monotonic() - started < 1.0


def test_a_cancelled_probe_that_ignores_it_has_its_child_replaced_and_ends_cancelled(runner: ProbeRunner) -> None:
    assert runner.wait_ready(timeout=60)
    pid = runner.pids()[0]
    with ThreadPoolExecutor(1) as pool:
        blocked = pool.submit(run_job, runner, "job_blocked", 20, mode="block_in_c", seconds=30)
        time.sleep(0.5)
        sent = time.monotonic()
        assert runner.cancel("job_blocked")
        result = blocked.result(timeout=10)
    assert result.failure.type == "cancelled"
    assert time.monotonic() - sent < 0.5 + 1.0  # grace + the watchdog's reaction
    assert pid not in runner.pids()


def test_closing_while_a_lost_child_is_being_replaced_leaves_no_probe_process_behind() -> None:
    # A replacement that finished starting after close() used to stay, its pipe open and SIGTERM
    # ignored: the interpreter's exit then waited for it for ever.
    closing = ProbeRunner([KEY], processes=1, grace=0.5)
    assert closing.wait_ready(timeout=60)
    (pid,) = closing.pids()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid in closing.pids() and time.monotonic() < deadline:
        pass  # close as soon as the loss is seen: the replacement is then being started
    closing.close()
    time.sleep(3)  # long enough for the replacement to finish starting
    assert [p.name for p in multiprocessing.active_children() if p.name == "sourcecheck-probes"] == []


def test_a_watched_probe_sends_its_events_in_order_before_its_result(runner: ProbeRunner) -> None:
    events: list[tuple[str, str]] = []
    result = runner.run(
        "faulty",
        Cipher([KEY]).encrypt_json({"mode": "sleep", "seconds": 0.2}),
        5,
        on_events=events.extend,
        watched=True,
    )
    assert result.status == "succeeded"
    assert events[0] == ("plan", '{"steps":["misbehave"]}')
    assert events[1] == ("step", '{"name":"misbehave","status":"running"}')
    assert events[2][0] == "step", events
    ended = json.loads(events[2][1])
    assert ended["name"] == "misbehave" and ended["status"] == "succeeded" and ended["duration_ms"] >= 200
    assert len(events) == 3


def test_the_events_of_a_probe_carry_no_secret(runner: ProbeRunner) -> None:
    secret = "Event-Secret-Never-Streamed-42"
    events: list[tuple[str, str]] = []
    config = {"mode": "echo_secret", "password": secret}
    result = runner.run("faulty", Cipher([KEY]).encrypt_json(config), 5, on_events=events.extend, watched=True)
    assert result.failure.type == "authentication_failed"
    ended = events[-1][1]
    assert '"status":"failed"' in ended and "rejected" in ended
    assert secret not in "".join(data for _, data in events)


def test_a_probe_nobody_watches_sends_no_event_until_it_is_watched_then_what_it_missed_first(
    runner: ProbeRunner,
) -> None:
    token = Cipher([KEY]).encrypt_json({"mode": "sleep", "seconds": 0.2})
    unwatched: list[tuple[str, str]] = []
    assert runner.run("faulty", token, 5, job_id="job_nobody", on_events=unwatched.extend).status == "succeeded"
    assert unwatched == []
    late: list[tuple[str, str]] = []
    with ThreadPoolExecutor(1) as pool:
        token = Cipher([KEY]).encrypt_json({"mode": "sleep", "seconds": 1.0})
        running = pool.submit(runner.run, "faulty", token, 5, job_id="job_late", on_events=late.extend)
        time.sleep(0.5)  # in its only step
        assert late == []
        assert runner.watch("job_late")
        assert running.result().status == "succeeded"
    assert [name for name, _ in late] == ["plan", "step", "step"]
    assert json.loads(late[1][1]) == {"name": "misbehave", "status": "running"}
    assert json.loads(late[2][1])["status"] == "succeeded"
