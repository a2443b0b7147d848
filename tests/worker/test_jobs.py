"""The API's JobStore against a real Redis (tests/servers/redis.py)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import CheckResult, CheckStatus
from connectors.errors import FailureType
from tests.servers.redis import RedisServer
from worker.app import app
from worker.jobs import Job, JobStatus, JobStore, new_job
from worker.keys import INFLIGHT_KEY, JOB_KEY, RESULT_KEY
from worker.records import final_record, view_from_record
from worker.reporting import Reporter


async def test_start_opens_the_pool_and_subscribes(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """The whole pool opens at start, and the result subscription comes on top of it: begun
    first, the subscription held one of the pool's connections while start waited for it."""
    store = JobStore(app, redis_server.url, result_ttl=60)
    with caplog.at_level(logging.WARNING, logger="worker.jobs"):
        await store.start()
    try:
        assert not [r for r in caplog.records if "could not open" in r.getMessage()]
        with store.awaiting("job_started") as published:
            for _ in range(50):  # the subscription is made in the background
                if await store.redis.publish(f"{store._prefix}job_started", b"{}"):
                    break
                await asyncio.sleep(0.05)
            async with asyncio.timeout(5):
                await published.wait()
    finally:
        await store.close()


def _job(organization_id: str = "org_1", deadline_in: float = 30) -> Job:
    job = new_job(organization_id=organization_id, source_definition_id="faulty", timeout=1, queue_timeout=1)
    return replace(job, deadline_at=datetime.now(UTC) + timedelta(seconds=deadline_in))


def _payload(job: Job) -> dict[str, Any]:
    return {"job_id": job.id, "organization_id": job.organization_id, "fingerprint": job.fingerprint}


def _record(status: str) -> str:
    check = CheckResult(status=CheckStatus(status))
    return final_record(check, started_at=None, ended_at=datetime.now(UTC), worker="w1")


def test_a_final_result_is_written_once_and_a_job_that_has_one_is_not_started_again(redis_server: RedisServer) -> None:
    reporter = Reporter(redis_server.client())
    job = _job()
    assert reporter.begin(job.id, started_at=datetime.now(UTC), worker="w1", ttl=60)
    assert reporter.finish(_payload(job), _record("succeeded"), 60)
    assert not reporter.finish(_payload(job), _record("failed"), 60)  # a late or redelivered run
    assert not reporter.begin(job.id, started_at=datetime.now(UTC), worker="w2", ttl=60)
    stored = redis_server.client().get(RESULT_KEY.format(job.id))
    assert view_from_record(job, stored).status == JobStatus.SUCCEEDED


async def test_a_job_past_its_deadline_is_written_off_once_and_a_late_result_does_not_replace_it(
    redis_server: RedisServer,
) -> None:
    reporter = Reporter(redis_server.client())
    job = _job(deadline_in=-1)
    client = redis_server.client()
    client.set(JOB_KEY.format(job.id), job.to_json(), ex=60)
    client.zadd(INFLIGHT_KEY.format(job.organization_id), {job.id: job.deadline_at.timestamp()})
    reporter.begin(job.id, started_at=datetime.now(UTC), worker="w1", ttl=60)
    store = JobStore(app, redis_server.url, result_ttl=60)
    try:
        view = await store.load(job.id)
        assert view is not None and view.status == JobStatus.FAILED
        assert view.result is not None and view.result.failure is not None
        assert view.result.failure.type == FailureType.WORKER_LOST  # it had started
        assert client.zscore(INFLIGHT_KEY.format(job.organization_id), job.id) is None
        assert not reporter.finish(_payload(job), _record("succeeded"), 60)
        again = await store.load(job.id)
        assert again is not None and again.status == JobStatus.FAILED
    finally:
        await store.close()
