"""Observability end to end: Prometheus metrics of the API and the worker, JSON logs that
carry the job's ids from the request to the probe process and no secret, /readyz, and
what Flower shows of a task."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from api.health import readiness
from tests.api.test_server import api
from tests.helpers import assert_absent
from tests.servers import free_port, wait_for_port
from tests.servers.http import HttpServer
from tests.servers.redis import RedisServer
from tests.servers.stack import Stack, own_stack
from worker import logs
from worker.metrics import Heartbeat

TEST_ROUTE = "/v1/organizations/{organization_id}/knowledge/connectors/sources/test"


@dataclass
class Observed:
    stack: Stack
    worker_metrics_url: str


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    """A stack of its own: JSON logs at DEBUG (the probe processes' lines too) and the
    worker's metrics on a free port."""
    port = free_port()
    with own_stack(
        tmp_path_factory, "observed", log_format="json", log_level="DEBUG", worker_metrics_port=str(port)
    ) as stack:
        yield Observed(stack, f"http://127.0.0.1:{port}/metrics")


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float | None:
    found = [v for n, ls, v in samples(text) if n == name and all(ls.get(k) == want for k, want in labels.items())]
    return sum(found) if found else None


def protected(server: HttpServer, password: str) -> dict[str, Any]:
    """An inline http test that the server refuses (401): authentication_failed."""
    return {
        "source_definition_id": "http",
        "configuration": {
            "url": server.url("/protected"),
            "auth": {"type": "basic", "username": server.username, "password": password},
        },
    }


def canary() -> str:
    return f"Canary-{uuid.uuid4().hex}"


# --- metrics ----------------------------------------------------------------------------


def test_api_metrics_count_the_test_once_and_observe_its_latency(observed: Observed, http_server: HttpServer) -> None:
    stack = observed.stack
    with stack.client() as client:
        r = client.post(stack.url("/sources/test"), json=protected(http_server, canary()))
        assert r.status_code == 200, r.text
        assert r.json()["job_info"]["type"] == "authentication_failed"
        job_id = r.json()["job_info"]["job_id"]
        scraped = httpx.get(f"{stack.base_url}/metrics", timeout=10)  # no Authorization header
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        first = scraped.text
        counted = value(
            first, "sourcecheck_tests_total", definition="http", status="failed", type="authentication_failed"
        )
        assert counted is not None and counted >= 1
        latency = value(
            first, "sourcecheck_http_request_duration_seconds_count", method="POST", route=TEST_ROUTE, status="200"
        )
        assert latency is not None and latency >= 1
        assert value(first, "sourcecheck_queue_depth", queue="sourcecheck.probes") is not None
        assert value(first, "sourcecheck_jobs_awaiting_result") is not None

        # Polling the same job again answers it again, but it is counted once.
        again = client.get(stack.url(f"/sources/test/{job_id}"))
        assert again.status_code == 200 and again.json()["status"] == "failed"
        second = httpx.get(f"{stack.base_url}/metrics", timeout=10).text
        assert (
            value(second, "sourcecheck_tests_total", definition="http", status="failed", type="authentication_failed")
            == counted
        )
        polled = value(
            second,
            "sourcecheck_http_request_duration_seconds_count",
            method="GET",
            route=TEST_ROUTE + "/{job_id}",
            status="200",
        )
        assert polled is not None and polled >= 1
    # A path no route serves is one label value, not one per path.
    httpx.get(f"{stack.base_url}/no/such/{uuid.uuid4().hex}", timeout=10)
    third = httpx.get(f"{stack.base_url}/metrics", timeout=10).text
    assert value(third, "sourcecheck_http_request_duration_seconds_count", route="(unmatched)", status="404")
    assert "/no/such/" not in third


def test_worker_metrics_show_probe_steps_by_connector(observed: Observed, http_server: HttpServer) -> None:
    stack = observed.stack
    with stack.client() as client:
        r = client.post(
            stack.url("/sources/test"),
            json={"source_definition_id": "http", "configuration": {"url": http_server.url("/ok")}},
        )
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    text = httpx.get(observed.worker_metrics_url, timeout=10).text
    for step in ("resolve", "tcp", "request"):
        count = value(text, "sourcecheck_probe_step_duration_seconds_count", connector="http", step=step)
        assert count is not None and count >= 1, step
    assert (
        value(text, "sourcecheck_probe_step_duration_seconds_count", connector="http", step="tls") is None
    )  # skipped: http://
    assert (value(text, "sourcecheck_probe_duration_seconds_count", connector="http") or 0) >= 1
    assert (value(text, "sourcecheck_probes_total", connector="http", status="succeeded", type="none") or 0) >= 1
    assert value(text, "sourcecheck_probes_in_flight") is not None


# --- logs -------------------------------------------------------------------------------


def _json_lines(path: Path) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{path.name} line {number} is not JSON: {line[:300]!r}")
        assert isinstance(entry, dict) and {"time", "level", "logger", "message"} <= entry.keys(), line[:300]
        entries.append(entry)
    return entries


def test_the_api_process_logs_json_from_its_first_line(redis_server: RedisServer, tmp_path: Path) -> None:
    """uvicorn's own lines before the app starts ("Started server process") are JSON too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCECHECK_")}
    env.update(
        SOURCECHECK_LOG_FORMAT="json",
        SOURCECHECK_REDIS_URL=redis_server.url,
        SOURCECHECK_DATA_DIR=str(tmp_path),
        SOURCECHECK_DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}",
    )
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(free_port()), "--log-level", "info"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while (
            b"Application startup complete" not in log.read_bytes()
            and api.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
    finally:
        api.terminate()
        api.wait(timeout=20)
    messages = [e["message"] for e in _json_lines(log)]  # fails on the first line that is not JSON
    assert any(m.startswith("Started server process") for m in messages), messages[:3]
    assert "Application startup complete." in messages
    assert any(m.startswith("Finished server process") for m in messages), messages[-3:]


def test_logs_are_json_lines_carrying_the_job_and_no_secret(observed: Observed, http_server: HttpServer) -> None:
    stack = observed.stack
    password = canary()
    with stack.client() as client:
        created = client.post(
            stack.url("/sources"),
            json={
                "source_definition_id": "http",
                "name": "logged",
                "configuration": protected(http_server, password)["configuration"],
            },
        )
        assert created.status_code == 201, created.text
        source_id = created.json()["id"]
        r = client.post(stack.url("/sources/test"), json={"source_id": source_id})
    assert r.status_code == 200 and r.json()["status"] == "failed", r.text
    job_id = r.json()["job_info"]["job_id"]
    time.sleep(0.5)  # the worker's last lines of the job (after it stored the result)

    api = [e for e in _json_lines(stack.logs["api"]) if e.get("job_id") == job_id]
    assert api, "no API log line carries the job id"
    assert all(
        e["organization_id"] == stack.org_id and e["source_id"] == source_id and e["definition"] == "http" for e in api
    )

    worker = [e for e in _json_lines(stack.logs["worker-e2e"]) if e.get("job_id") == job_id]
    # Celery's "received" line knows only the job id; the task's own lines know all of it.
    task = [e for e in worker if e["logger"] == "worker.tasks" and e["pid"] == stack.workers["e2e"].pid]
    child = [e for e in worker if e["logger"] == "worker.runner" and e["pid"] != stack.workers["e2e"].pid]
    assert task, "no worker log line carries the job id"
    assert child, "no probe process log line carries the job id"
    for entry in task + child:
        assert (
            entry["organization_id"] == stack.org_id
            and entry["source_id"] == source_id
            and entry["definition"] == "http"
        ), entry

    assert_absent(password, stack.log_text().encode(), "the API and worker logs")


def test_redaction_masks_credentials_in_messages_arguments_and_tracebacks() -> None:
    records: list[str] = []
    handler = logs.StderrHandler()
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    handler.addFilter(logs.RedactingFilter())
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with logs.bound(job_id="job_1", organization_id="org_1", definition="http"):
            logger.info("headers %s", {"Authorization": "Bearer tok-Secret-1"})
            logger.info("dsn postgresql://reader:pw-Secret-2@db/app and password=pw-Secret-3&x=1")
            logger.info('config {"token": "tk Secret-4", "client_secret": "cs-Secret-5"}')
            try:
                raise ValueError("api_key=ak-Secret-6")
            except ValueError:
                logger.exception("failed")
        logger.info("no context")
    finally:
        logger.removeHandler(handler)
    entries = [json.loads(r) for r in records]
    text = "\n".join(records)
    for secret in ("tok-Secret-1", "pw-Secret-2", "pw-Secret-3", "Secret-4", "cs-Secret-5", "ak-Secret-6"):
        assert secret not in text, secret
    assert entries[0]["message"] == "headers {'Authorization': 'Bearer ***'}"
    assert "postgresql://reader:***@db/app" in entries[1]["message"] and "&x=1" in entries[1]["message"]
    assert (
        entries[0]["job_id"] == "job_1"
        and entries[0]["organization_id"] == "org_1"
        and entries[0]["definition"] == "http"
    )
    assert "ValueError" in entries[3]["exception"]
    assert "job_id" not in entries[4]
    # Ordinary messages about passwords stay readable.
    assert (
        logs.redact('password authentication failed for user "reader"')
        == 'password authentication failed for user "reader"'
    )


def test_log_format_defaults_to_json_in_production_and_text_in_development() -> None:
    assert logs.format_for("production", None) == "json"
    assert logs.format_for("development", None) == "text"
    assert logs.format_for("production", "text") == "text"


# --- health -----------------------------------------------------------------------------


def test_readyz_is_ready_with_every_check(stack: Stack) -> None:
    r = httpx.get(f"{stack.base_url}/readyz", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "redis": "ok",
        "workers": "ok",
    }
    assert body["checks"]["workers"]["alive"] >= 1


def test_readyz_names_redis_when_redis_is_dead(closed_port: int, tmp_path: Path) -> None:
    async def check() -> tuple[bool, dict[str, Any]]:
        redis = aioredis.Redis.from_url(f"redis://127.0.0.1:{closed_port}/0", socket_connect_timeout=5)
        try:
            return await readiness(redis, create_engine(f"sqlite:///{tmp_path / 'ready.db'}"))
        finally:
            await redis.aclose()

    started = time.monotonic()
    ready, body = asyncio.run(check())
    assert time.monotonic() - started < 10  # each check is bounded (0.5 s); generous for a busy machine
    assert not ready
    assert body["status"] == "not_ready"
    assert "redis" in body["failed"] and "database" not in body["failed"]
    assert body["checks"]["redis"]["status"] == "failed" and body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["status"] == "ok"


def test_readyz_counts_workers_by_their_heartbeat(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    redis_server = RedisServer(port=free_port(), directory=tmp_path_factory.mktemp("lonely-redis"))
    redis_server.start()

    def check() -> tuple[bool, dict[str, Any]]:
        async def run() -> tuple[bool, dict[str, Any]]:
            redis = aioredis.Redis.from_url(redis_server.url)
            try:
                return await readiness(redis, create_engine(f"sqlite:///{tmp_path / 'ready.db'}"))
            finally:
                await redis.aclose()

        return asyncio.run(run())

    try:
        ready, body = check()
        assert not ready and body["failed"] == ["workers"], body  # no worker ever beat
        heartbeat = Heartbeat(redis_server.client(), "unit@test", interval=0.2, ttl=5)
        heartbeat.start()
        ready, body = check()
        assert ready and body["checks"]["workers"]["alive"] == 1, body
        heartbeat.stop()  # a worker that stops says so at once, without waiting for the TTL
        ready, body = check()
        assert not ready and body["failed"] == ["workers"], body
    finally:
        redis_server.stop()


# --- Flower -----------------------------------------------------------------------------


@pytest.fixture
def flower(stack: Stack, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**stack.env, "FLOWER_UNAUTHENTICATED_API": "true"}
    with (tmp_path / "flower.log").open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.flower", "--address=127.0.0.1", f"--port={port}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_flower_logs_json_lines_from_its_first_one(observed: Observed, tmp_path: Path) -> None:
    """`sourcecheck flower` (python -m worker.flower) logs like the other processes, not in tornado's format."""
    port = free_port()
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.flower", "--address=127.0.0.1", f"--port={port}"],
            env=observed.stack.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, timeout=60)
    finally:
        process.terminate()  # right after the port opens: Flower is still starting (see worker/flower.py)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail("Flower did not stop within 20 s of SIGTERM")
    assert process.returncode == 0
    entries = _json_lines(log)  # fails on the first line that is not JSON
    assert any(e["logger"] == "flower.command" and e["message"].startswith("Visit me at") for e in entries), entries[:3]
    assert any(e["message"].endswith("shutting down") for e in entries), entries[-3:]


def test_flower_shows_a_readable_summary_and_the_worker_but_no_secret(
    stack: Stack, flower: str, http_server: HttpServer
) -> None:
    password = canary()
    task: dict[str, Any] | None = None
    tasks_body = b""
    with stack.client() as client:
        # Flower sees only the events sent after it subscribed: test again until it has seen all of one.
        for _ in range(10):
            r = client.post(stack.url("/sources/test"), json=protected(http_server, password))
            assert r.status_code == 200, r.text
            job_id = r.json()["job_info"]["job_id"]
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                listed = httpx.get(f"{flower}/api/tasks", timeout=10)
                assert listed.status_code == 200, listed.text
                candidate = listed.json().get(job_id)
                # All of its events seen (Flower may have subscribed in the middle of the first one).
                if (
                    candidate
                    and candidate.get("state") == "SUCCESS"
                    and candidate.get("worker")
                    and candidate.get("args")
                ):
                    task, tasks_body = candidate, listed.content
                    break
                time.sleep(0.2)
            if task is not None:
                break
    assert task is not None, "Flower never showed the test's task"
    assert task["args"] == f"job={job_id} org={stack.org_id} definition=http", task
    assert task["kwargs"] == "{}"
    assert task["worker"].startswith("e2e@")
    assert task["name"] == "sourcecheck.run_probe"
    detail = httpx.get(f"{flower}/api/task/info/{job_id}", timeout=10)
    assert detail.status_code == 200, detail.text
    assert detail.json()["args"] == task["args"] and detail.json()["worker"].startswith("e2e@")
    for body, where in ((tasks_body, "Flower's task list"), (detail.content, "Flower's task detail")):
        assert_absent(password, body, where)
    assert_absent(password, httpx.get(f"{flower}/api/workers", timeout=20).content, "Flower's workers")
    flower_metrics = httpx.get(f"{flower}/metrics", timeout=10).text
    assert "flower_events_total" in flower_metrics


# --- the metrics port of production ---------------------------------------------------------


def test_production_serves_metrics_on_their_own_port_not_on_the_api_port(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    metrics_port = free_port()
    settings = {
        "profile": "production",
        "secret_keys": Fernet.generate_key().decode(),
        "metrics_port": str(metrics_port),
        "metrics_address": "127.0.0.1",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCECHECK_")}
    env.update(SOURCECHECK_DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}", SOURCECHECK_DATA_DIR=str(tmp_path))
    env.update({f"SOURCECHECK_{k.upper()}": v for k, v in settings.items()})
    upgraded = subprocess.run(
        [str(Path(sys.executable).with_name("sourcecheck")), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgraded.returncode == 0, upgraded.stderr  # production refuses a schema behind head
    with api(redis_server, tmp_path, **settings) as port:
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 404  # not on the public port
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        assert value(scraped.text, "sourcecheck_http_request_duration_seconds_count", route="(unmatched)", status="404")
        assert (
            value(scraped.text, "sourcecheck_queue_depth", queue="sourcecheck.probes") is not None
        )  # read from Redis at scrape time
        assert value(scraped.text, "sourcecheck_admission_waiting") == 0
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/docs", timeout=10).status_code == 404  # only /metrics there
        with socket.create_connection(("127.0.0.1", metrics_port), timeout=30) as stalled:
            stalled.sendall(b"GET /metr")  # a scraper that never finishes its head is let go
            assert stalled.recv(100) == b""
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).status_code == 200


def test_development_serves_metrics_on_the_api_port(stack: Stack) -> None:
    assert httpx.get(f"{stack.base_url}/metrics", timeout=10).status_code == 200
