"""`sourcecheck run` (what `make run` starts, cli/stack.py): the whole development system
from an empty folder, a test through it, Ctrl-C stopping all of it and a start again at
once; a worker SIGKILLed under it is restarted while the API answers on, so are Redis,
Flower and the API, and a worker that keeps dying stops the stack with a message naming it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.stack import CRASH_LIMIT, CRASH_WINDOW_SECONDS
from tests.servers import free_port
from tests.servers.http import HttpServer
from tests.servers.stack import BIN, FAULTY_PLUGINS

pytestmark = pytest.mark.e2e

TCP_TIME_WAIT = "06"  # the state column of /proc/net/tcp


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _in_time_wait(port: int) -> int:
    """How many connections with local port ``port`` sit in TIME_WAIT."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == TCP_TIME_WAIT)


@dataclass
class Run:
    process: subprocess.Popen[bytes]
    api: str
    log: Path
    env: dict[str, str]
    folder: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [str(BIN / "sourcecheck"), *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.text())) < count:
            assert time.monotonic() < deadline, f"no {count} log lines match {pattern!r}:\n{self.text()[-3000:]}"
            time.sleep(0.1)


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCECHECK_")}
    env["SOURCECHECK_WORKER_METRICS_PORT"] = "0"  # the default port may be taken on this machine
    env.update({f"SOURCECHECK_{k.upper()}": v for k, v in settings.items()})
    return env


def _start(folder: Path, env: dict[str, str], api_port: int, flower_port: int, log_name: str = "run.log") -> Run:
    log = folder / log_name
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "sourcecheck"), "run", "--api-port", str(api_port), "--flower-port", str(flower_port)],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Run(process, f"http://127.0.0.1:{api_port}", log, env, folder)


def _wait_ready(run: Run) -> None:
    deadline = time.monotonic() + 120
    while run.process.poll() is None and time.monotonic() < deadline:  # ready: the database, Redis and a worker answer
        try:
            if httpx.get(f"{run.api}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready (exit code {run.process.poll()}):\n{run.text()[-3000:]}")


def _ensure_stopped(run: Run) -> None:
    if run.process.poll() is None:  # the test failed midway: stop the children too, then the rest
        run.process.send_signal(signal.SIGINT)
        try:
            run.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            run.process.kill()
            run.process.wait()


@contextmanager
def _running(
    folder: Path, env: dict[str, str], api_port: int, flower_port: int, log_name: str = "run.log"
) -> Iterator[Run]:
    run = _start(folder, env, api_port, flower_port, log_name)
    try:
        _wait_ready(run)
        yield run
    finally:
        _ensure_stopped(run)


def _test(
    run: Run,
    client: httpx.Client,
    org: str,
    token: str,
    configuration: dict[str, Any],
    definition: str = "http",
    **params: Any,
) -> httpx.Response:
    return client.post(
        f"{run.api}/v1/organizations/{org}/knowledge/connectors/sources/test",
        timeout=60,
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        json={"source_definition_id": definition, "configuration": configuration},
    )


def _account(run: Run, org: str) -> str:
    run.cli("org", "create", "--id", org, "--name", org)
    return run.cli("apikey", "create", "--org", org)


def test_run_starts_everything_from_an_empty_folder_ctrl_c_stops_it_and_it_starts_again_at_once(
    tmp_path: Path, http_server: HttpServer
) -> None:
    api_port, flower_port = free_port(), free_port()
    env = _env()
    with _running(tmp_path, env, api_port, flower_port) as run, httpx.Client() as client:
        assert httpx.get(f"http://127.0.0.1:{flower_port}/healthcheck", timeout=5).status_code == 200
        token = _account(run, "org_run")
        answer = _test(run, client, "org_run", token, {"url": http_server.url("/ok")})
        assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text
        redis_port = int(re.search(r"Redis\s+redis://127\.0\.0\.1:(\d+)/", run.text())[1])  # type: ignore[index]
        assert (tmp_path / ".sourcecheck" / "sourcecheck.db").exists()  # its files are in the folder it was started in

        run.process.send_signal(signal.SIGINT)  # Ctrl-C, with the client's connection open: the API closes it first
        assert run.process.wait(timeout=90) == 0
        assert not any(_listening(port) for port in (api_port, flower_port, redis_port))
    assert _in_time_wait(api_port), "the stopped API left no connection in TIME_WAIT: this test proves nothing"

    # `make run` again at once, in the same folder: it comes up, with what the first one stored.
    with _running(tmp_path, env, api_port, flower_port, "run-again.log") as again, httpx.Client() as client:
        answer = _test(again, client, "org_run", token, {"url": http_server.url("/ok")})
        assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text
        again.process.send_signal(signal.SIGINT)
        assert again.process.wait(timeout=90) == 0


def _children(pid: int, command: bytes) -> list[int]:
    """The processes whose parent is ``pid`` and whose command line contains ``command``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                if command in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        except (OSError, ValueError):
            continue  # it ended while we looked
    return found


def _group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if entry.name.isdigit() and int(fields[3]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _worker(run: Run, other_than: int = 0, timeout: float = 60) -> int:
    """The pid of the stack's Celery worker (a new one when ``other_than`` is given)."""
    deadline = time.monotonic() + timeout
    while not (pids := [p for p in _children(run.process.pid, b"celery") if p != other_than]):
        assert time.monotonic() < deadline and run.process.poll() is None, f"no worker process:\n{run.text()[-3000:]}"
        time.sleep(0.05)
    return pids[0]


def _child(run: Run, command: bytes) -> int:
    (pid,) = _children(run.process.pid, command)
    return pid


def _wait_succeeds(run: Run, client: httpx.Client, org: str, token: str, configuration: dict[str, Any]) -> None:
    """A test succeeds within a minute (the API and the worker reconnect to Redis by themselves)."""
    deadline = time.monotonic() + 60
    while (answer := _test(run, client, org, token, configuration)).json().get("status") != "succeeded":
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)


def _wait_answers(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} does not answer"
        time.sleep(0.1)


def _job(run: Run, client: httpx.Client, org: str, token: str, job_id: str, **params: Any) -> dict[str, Any]:
    """The job's answer; a 503 (a connection the API held to a Redis that has restarted fails once) is asked again."""
    deadline = time.monotonic() + 30
    while (
        answer := client.get(
            f"{run.api}/v1/organizations/{org}/knowledge/connectors/sources/test/{job_id}",
            timeout=60,
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        )
    ).status_code == 503:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.1)
    assert answer.status_code in (200, 202), answer.text
    return dict(answer.json())


def test_parts_killed_under_run_are_restarted_and_a_worker_that_keeps_dying_stops_the_stack(
    tmp_path: Path, http_server: HttpServer
) -> None:
    # A job's deadline is short (2 s of queueing allowed): the one in flight is written off soon.
    env = _env(queue_timeout_seconds="2")
    env["PYTHONPATH"] = os.pathsep.join([str(FAULTY_PLUGINS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    api_port, flower_port = free_port(), free_port()
    with _running(tmp_path, env, api_port, flower_port) as run, httpx.Client() as client:
        token = _account(run, "org_kill")
        # Hung in C: its probe process does not notice that its worker died.
        in_flight = _test(
            run, client, "org_kill", token, {"mode": "block_in_c", "seconds": 60}, "faulty", wait=0, timeout=3
        )
        assert in_flight.status_code == 202, in_flight.text
        job_id = in_flight.json()["job_info"]["job_id"]
        while _job(run, client, "org_kill", token, job_id)["status"] == "pending":
            time.sleep(0.05)
        time.sleep(0.5)  # the probe process has it (well before the watchdog's hard deadline, 4 s)
        worker = _worker(run)
        probes = _group(worker)
        os.kill(worker, signal.SIGKILL)  # the main worker process only, as the OOM killer does

        # The API answers on while the worker is down; the worker is started again.
        while not re.search(r"worker restarted \(pid \d+\)", run.text()):
            assert httpx.get(f"{run.api}/healthz", timeout=2).status_code == 200
            assert run.process.poll() is None, run.text()[-3000:]
            time.sleep(0.05)
        assert re.search(r"worker exited with code -9; restarting it in [\d.]+ s", run.text()), run.text()[-3000:]
        assert not set(_group(worker)) & set(probes), "the dead worker's probe processes live on"
        # A new test succeeds once the new worker is up.
        run.wait_log(r"worker1@\S+ ready\.", count=2)
        answer = _test(run, client, "org_kill", token, {"url": http_server.url("/ok")})
        assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text

        # Redis, Flower and the API killed: all come back, Redis on its port with its data (the job in flight).
        for command in (b"redis-server", b"worker.flower", b"uvicorn"):
            os.kill(_child(run, command), signal.SIGKILL)
        for part in ("redis", "flower", "api"):
            run.wait_log(rf"{part} restarted \(pid \d+\)")
        _wait_answers(f"{run.api}/healthz")
        _wait_succeeds(run, client, "org_kill", token, {"url": http_server.url("/ok")})
        _wait_answers(f"http://127.0.0.1:{flower_port}/healthcheck")
        # The test it was running ends worker_lost (at its deadline: its message died with the worker).
        lost = _job(run, client, "org_kill", token, job_id, wait=30)
        assert (lost["status"], lost["job_info"]["type"]) == ("failed", "worker_lost"), lost

        # A worker that keeps dying is broken: the stack gives up, naming it.
        kills = 0
        while run.process.poll() is None and kills < CRASH_LIMIT:
            try:
                victim = _worker(run, other_than=worker, timeout=30)
            except AssertionError:
                break  # the stack stopped
            os.kill(victim, signal.SIGKILL)
            kills, worker = kills + 1, victim
        assert run.process.wait(timeout=90) != 0
        assert re.search(
            rf"error: worker crashed {CRASH_LIMIT} times within {CRASH_WINDOW_SECONDS:g} s \(last exit code -9\); "
            r"giving up and stopping everything",
            run.text(),
        ), run.text()[-3000:]
        assert not any(_listening(port) for port in (api_port, flower_port))


def test_run_refuses_a_port_another_server_listens_on(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: the check must still see it
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        run = subprocess.run(
            [str(BIN / "sourcecheck"), "run", "--api-port", str(port), "--flower-port", str(free_port())],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 1
    assert f"port {port} for the API is in use" in run.stderr
