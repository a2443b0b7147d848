"""A password sent to the API appears in plaintext nowhere but the probe's own connection:
not in any answer (errors included), Redis (keys, values, the broker's messages), Flower,
the logs of the API, the workers and Flower, nor the database file."""

from __future__ import annotations

import base64
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import assert_absent
from tests.servers import free_port, wait_for_port
from tests.servers.postgres import PostgresServer
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e


def test_forms_finds_a_secret_hidden_in_base64() -> None:
    secret = "canary-0123456789-abcdef"
    for prefix in (b"", b"x", b"xy"):
        with pytest.raises(AssertionError):
            assert_absent(secret, base64.b64encode(prefix + secret.encode() + b"tail"), "test")


@pytest.fixture(scope="module")
def flower(stack: Stack) -> Iterator[str]:
    """Flower watching the stack's Redis (its REST API open, as in development); its log
    joins the stack's logs while it runs."""
    port = free_port()
    log = stack.data_dir / "flower.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.flower", "--address=127.0.0.1", f"--port={port}"],
            env={**stack.env, "FLOWER_UNAUTHENTICATED_API": "true"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    stack.logs["flower"] = log
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, timeout=60)
        # Flower knows only the tasks whose events it received after its event consumer
        # connected (some time after its port opens): send tasks until it sees one.
        deadline = time.monotonic() + 90
        with stack.client() as client:
            while True:
                seen = client.post(
                    stack.url("/sources/test"),
                    json={
                        "source_definition_id": "faulty",
                        "configuration": {"mode": "sleep", "tag": uuid.uuid4().hex},
                    },
                )
                try:
                    flower_task(url, seen.json()["job_info"]["job_id"], timeout=5)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        stack.logs.pop("flower", None)


def flower_task(url: str, task_id: str, timeout: float = 30) -> bytes:
    """The task as Flower's task list shows it (raw JSON), once Flower has its result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = httpx.get(f"{url}/api/tasks", timeout=10)
        assert tasks.status_code == 200, tasks.text
        if tasks.json().get(task_id, {}).get("state") in ("SUCCESS", "FAILURE"):
            return tasks.content
        time.sleep(0.2)
    raise AssertionError(f"Flower did not see task {task_id} finish within {timeout} s")


def redis_dump(stack: Stack) -> dict[bytes, bytes]:
    """Every key of the stack's Redis with its value (all of it, whatever the type)."""
    client: Any = stack.redis.client()  # bytes in, bytes out (no decode_responses)
    dump: dict[bytes, bytes] = {}
    for key in client.scan_iter("*"):
        kind = client.type(key)
        if kind == b"string":
            value = client.get(key) or b""
        elif kind == b"list":
            value = b"".join(client.lrange(key, 0, -1))
        elif kind == b"hash":
            value = b"".join(k + v for k, v in client.hgetall(key).items())
        elif kind == b"set":
            value = b"".join(client.smembers(key))
        elif kind == b"zset":
            value = b"".join(member for member, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == b"stream":  # the history stream, and a job's live events (worker.events)
            value = b"".join(k + v for _, fields in client.xrange(key) for k, v in fields.items())
        else:
            raise AssertionError(f"key {key!r} has a type this scan does not read: {kind!r}")
        dump[key] = value
    return dump


def test_password_is_nowhere_but_in_the_probes_own_connection(
    stack: Stack, postgres_server: PostgresServer, flower: str, tmp_path: Path
) -> None:
    password = postgres_server.password
    # A second canary, for a connector whose errors echo it (in a URL, percent-encoded too).
    echoed = "c@n ary/" + uuid.uuid4().hex[:12]
    canaries = (password, echoed, urllib.parse.quote(echoed, safe=""), urllib.parse.quote_plus(echoed))
    answers: list[httpx.Response] = []
    job_ids: list[str] = []
    with stack.redis.monitor(tmp_path / "monitor.log") as monitor_log, stack.client() as client:
        config = postgres_server.config()
        created = client.post(
            stack.url("/sources"), json={"source_definition_id": "postgres", "name": "canary", "configuration": config}
        )
        assert created.status_code == 201
        source = stack.url(f"/sources/{created.json()['id']}")
        inline = client.post(
            stack.url("/sources/test"), json={"source_definition_id": "postgres", "configuration": config}
        )
        stored = client.post(stack.url("/sources/test"), json={"source_id": created.json()["id"]})
        overridden = client.post(
            stack.url("/sources/test"),
            json={"source_id": created.json()["id"], "configuration": {"password": password + "-wrong"}},
        )
        leaked = client.post(
            stack.url("/sources/test"),
            json={
                "source_definition_id": "faulty",
                "configuration": {"mode": "echo_secret", "password": echoed, "tag": uuid.uuid4().hex},
            },
        )
        crashed = client.post(
            stack.url("/sources/test"),
            json={
                "source_definition_id": "faulty",
                "configuration": {"mode": "raise_secret", "password": echoed, "tag": uuid.uuid4().hex},
            },
        )
        # A stored source whose failures echo the secret: its result goes into the history table too.
        echoing = client.post(
            stack.url("/sources"),
            json={
                "source_definition_id": "faulty",
                "name": "echoing",
                "configuration": {"mode": "echo_secret", "password": echoed, "tag": uuid.uuid4().hex},
            },
        )
        recorded = client.post(stack.url("/sources/test"), json={"source_id": echoing.json()["id"]})
        histories = [
            recorded_history(stack, client, source_id) for source_id in (created.json()["id"], echoing.json()["id"])
        ]
        answers += [created, inline, stored, overridden, leaked, crashed, echoing, recorded, *histories]
        answers += [
            client.get(stack.url("/sources")),
            client.get(source),
            client.patch(source, json={"name": "canary2", "configuration": {"password": password}}),
            client.get(stack.url("/source-definitions")),
            client.get(stack.url("/source-definitions/postgres")),
            client.get(stack.url(f"/sources/test/{stored.json()['job_info']['job_id']}")),
            client.get(stack.url(f"/sources/test/{leaked.json()['job_info']['job_id']}")),
        ]
        # Errors: the secret in configuration fields that fail validation (a wrong type, an
        # unknown field, an invalid host), and as a body of the wrong shape. (A 422 names an
        # unknown source_definition_id, on purpose: it is no secret field.)
        bad = {**config, "port": password, "unexpected": password, "host": password + " x"}
        errors = [
            client.post(
                stack.url("/sources"), json={"source_definition_id": "postgres", "name": "bad", "configuration": bad}
            ),
            client.post(stack.url("/sources/test"), json={"source_definition_id": "postgres", "configuration": bad}),
            client.patch(source, json={"configuration": {"port": password}}),
            client.post(
                stack.url("/sources/test"), json={"source_definition_id": "postgres", "configuration": password}
            ),
        ]
        assert {e.status_code for e in errors} == {422}, [e.text for e in errors]
        answers += errors
        job_ids = [r.json()["job_info"]["job_id"] for r in (inline, stored, overridden, leaked, crashed)]
        tasks = b"".join(flower_task(flower, job_id) for job_id in job_ids)
        details = [httpx.get(f"{flower}/api/task/info/{job_id}", timeout=10) for job_id in job_ids]

    # The probe really used the password: it got in; the wrong one did not.
    assert inline.json()["status"] == "succeeded" and stored.json()["status"] == "succeeded"
    assert overridden.json()["job_info"]["type"] == "authentication_failed"
    # A driver that echoes the connection string: redacted before it left the worker.
    assert leaked.json()["job_info"]["type"] == "authentication_failed"
    assert leaked.json()["job_info"]["message"] == (
        "password ********** rejected: postgresql://reader:**********@127.0.0.1:5432/app "
        "(postgresql://reader:**********@127.0.0.1:5432/app)"
    )
    assert crashed.json()["job_info"]["type"] == "internal_error"
    # The history holds both stored sources' tests, the echoed secret masked (so the scans below mean something).
    assert [r["job_id"] for r in histories[0].json()["data"]] == [stored.json()["job_info"]["job_id"]]
    [echoed_record] = histories[1].json()["data"]
    assert echoed_record["message"].startswith("password ********** rejected")

    def absent(data: bytes, where: str) -> None:
        for canary in canaries:
            assert_absent(canary, data, where)

    for response in answers:
        absent(response.content, f"the answer to {response.request.method} {response.request.url.path}")
    for job_id, detail in zip(job_ids, details, strict=True):
        assert detail.status_code == 200 and job_id.encode() in detail.content
        absent(detail.content, f"Flower's task detail of {job_id}")
    absent(tasks, "Flower's task list")
    # Flower shows results: the echoing connector's, masked (so the scan above means something).
    assert b"postgresql://reader:**********@" in details[job_ids.index(leaked.json()["job_info"]["job_id"])].content

    traffic = monitor_log.read_bytes()
    assert b"LPUSH" in traffic.upper() or b"lpush" in traffic  # the broker messages were seen
    absent(traffic, "the Redis command stream (broker messages, results, job records)")
    for key, value in redis_dump(stack).items():
        absent(key + value, f"Redis key {key!r}")
    absent(stack.log_text().encode(), "the API, worker and Flower logs")
    for path in stack.data_dir.glob("sourcecheck.db*"):
        absent(path.read_bytes(), f"the database file {path.name}")
    with sqlite3.connect(stack.data_dir / "sourcecheck.db") as db:
        rows = db.execute("SELECT * FROM test_record").fetchall()
    assert {echoed_record["job_id"], stored.json()["job_info"]["job_id"]} <= {str(v) for row in rows for v in row}
    absent(repr(rows).encode(), "the history table (test_record)")


def recorded_history(stack: Stack, client: httpx.Client, source_id: str) -> httpx.Response:
    """``GET .../sources/{source_id}/tests`` once the API has recorded the source's test."""
    deadline = time.monotonic() + 15
    while True:
        page = client.get(stack.url(f"/sources/{source_id}/tests"))
        assert page.status_code == 200, page.text
        if page.json()["count"] or time.monotonic() > deadline:
            return page
        time.sleep(0.1)


def test_awaiting_results_subscribes_to_nothing_per_job(stack: Stack, closed_port: int, tmp_path: Path) -> None:
    config = {"host": "127.0.0.1", "port": closed_port, "database": "app", "user": "u", "password": "p"}
    redis = stack.redis.client()
    patterns_before = redis.pubsub_numpat()
    with stack.redis.monitor(tmp_path / "monitor.log") as log, stack.client() as client:
        for _ in range(20):
            assert (
                client.post(
                    stack.url("/sources/test"), json={"source_definition_id": "postgres", "configuration": config}
                ).json()["status"]
                == "failed"
            )
    # A wait subscribes to no job's own channel (Celery's backend would, one per task).
    assert b'"SUBSCRIBE"' not in log.read_bytes().upper()
    # The only channels subscribed to are the workers' two (worker.control), none per job.
    assert set(redis.pubsub_channels("*")) <= {b"sourcecheck:cancel", b"sourcecheck:watch"}
    # Its one pattern subscription serves every wait: awaiting adds none.
    assert redis.pubsub_numpat() == patterns_before
