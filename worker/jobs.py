"""A job is one test of one source: how it is sent, read back, awaited and described.

The API process calls :func:`send_job` (blocking: run it in a thread) and awaits with a
:class:`JobStore` (asyncio). Results are Celery's ``celery-task-meta-<id>`` keys; the
store reads them with ``redis.asyncio`` and wakes on the channel Celery publishes them
on, through one pattern subscription per process. Our own job record
(``sourcecheck:job:<id>``) tells an unknown or expired id from a job that waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from redis.exceptions import RedisError

from connectors.base import CheckResult, CheckStatus, Failure, Step, StepStatus
from connectors.errors import DEFAULT_HINTS, RETRYABLE, FailureType
from worker.crypto import Cipher

log = logging.getLogger(__name__)

TASK_NAME = "sourcecheck.run_probe"
JOB_KEY = "sourcecheck:job:{}"
# Hard limit of the task beyond the probe's own deadline: the probe ends itself first.
SOFT_GRACE_SECONDS = 2.0
HARD_GRACE_SECONDS = 5.0


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass(frozen=True)
class Job:
    """What is known of a job when it is sent. Holds no secret."""

    id: str
    organization_id: str
    source_definition_id: str
    timeout: float
    created_at: datetime
    source_id: str | None = None
    workspace_id: str | None = None
    name: str | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Job:
        data = json.loads(raw)
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        return cls(**data)


@dataclass(frozen=True)
class JobView:
    """A job as it stands now."""

    job: Job
    status: JobStatus
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker: str | None = None
    result: CheckResult | None = None


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


def send_job(app: Celery, cipher: Cipher, job: Job, configuration: dict[str, Any], ttl: int) -> None:
    """Record ``job`` and enqueue its probe. ``configuration`` (secrets in clear) travels
    only encrypted; Flower and the logs see the job's ids, never the configuration.
    Blocking; raises a kombu/redis error when the broker is unreachable."""
    app.backend.client.set(JOB_KEY.format(job.id), job.to_json(), ex=ttl)
    payload = {
        "job_id": job.id,
        "definition": job.source_definition_id,
        "config": cipher.encrypt_json(configuration),
        "timeout": job.timeout,
    }
    summary = f"job={job.id} org={job.organization_id} definition={job.source_definition_id}"
    if job.source_id:
        summary += f" source={job.source_id}"
    app.send_task(
        TASK_NAME,
        args=[payload],
        task_id=job.id,
        argsrepr=summary,
        kwargsrepr="{}",
        soft_time_limit=job.timeout + SOFT_GRACE_SECONDS,
        time_limit=job.timeout + HARD_GRACE_SECONDS,
        expires=ttl,
    )


# Celery's exception names for a task that did not return (see worker.tasks).
_LOST = {"WorkerLostError"}
_TIMED_OUT = {"TimeLimitExceeded", "SoftTimeLimitExceeded"}


def view_from_meta(job: Job, meta: dict[str, Any] | None) -> JobView:
    """Turn Celery's result meta (or None: not started) into a JobView."""
    if not meta:
        return JobView(job=job, status=JobStatus.PENDING)
    state = meta.get("status")
    value = meta.get("result")
    done = _parse_time(meta.get("date_done"))
    if state in ("STARTED", "RETRY"):
        info = value if isinstance(value, dict) else {}
        return JobView(job=job, status=JobStatus.RUNNING, started_at=_parse_time(info.get("started_at")), worker=info.get("worker"))
    if state == "SUCCESS" and isinstance(value, dict) and "check" in value:
        result = CheckResult.from_dict(value["check"])
        status = JobStatus.SUCCEEDED if result.status == CheckStatus.SUCCEEDED else JobStatus.FAILED
        return JobView(
            job=job,
            status=status,
            started_at=_parse_time(value.get("started_at")),
            ended_at=_parse_time(value.get("ended_at")) or done,
            worker=value.get("worker"),
            result=result,
        )
    # FAILURE, REVOKED or a malformed result: the task itself did not finish its work.
    exc_type = value.get("exc_type") if isinstance(value, dict) else None
    if exc_type in _LOST:
        kind, message = FailureType.WORKER_LOST, "The worker running this test stopped before it finished"
    elif exc_type in _TIMED_OUT:
        kind, message = FailureType.TIMEOUT, f"The probe did not end by its deadline of {job.timeout:g} s and was stopped"
    elif state == "REVOKED":
        kind, message = FailureType.INTERNAL_ERROR, "The test was cancelled before it ran"
    else:
        kind, message = FailureType.INTERNAL_ERROR, "The test could not be run"
    failure = Failure(type=kind, message=message, hint=DEFAULT_HINTS[kind], retryable=RETRYABLE[kind])
    return JobView(
        job=job,
        status=JobStatus.FAILED,
        ended_at=done,
        result=CheckResult(status=CheckStatus.FAILED, steps=[], failure=failure),
    )


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class JobStore:
    """Reads and awaits jobs without blocking the event loop (one per API process).

    ``start()`` opens one pattern subscription to Celery's result channels; a waiter is
    woken by a message on its job's channel and then reads the result key. A missed
    message (for example while the subscription reconnects) costs at most
    ``POLL_SECONDS``, after which the key is read again anyway.
    """

    POLL_SECONDS = 1.0

    def __init__(self, app: Celery, redis_url: str) -> None:
        self._app = app
        self._redis = aioredis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=2, health_check_interval=10)
        self._prefix: str = app.backend.task_keyprefix.decode() if isinstance(app.backend.task_keyprefix, bytes) else str(app.backend.task_keyprefix)
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="sourcecheck-result-listener")

    async def close(self) -> None:
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(f"{self._prefix}*")
                async for message in pubsub.listen():
                    if message["type"] != "pmessage":
                        continue
                    channel = message["channel"]
                    job_id = (channel.decode() if isinstance(channel, bytes) else channel)[len(self._prefix):]
                    for event in self._waiters.get(job_id, ()):
                        event.set()
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except (RedisError, OSError) as exc:
                log.warning("result subscription lost (%s); reconnecting", type(exc).__name__)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(0.5)

    async def load(self, job_id: str) -> JobView | None:
        """The job as it stands, or None when the id is unknown or has expired."""
        raw_job, raw_meta = await self._redis.mget(JOB_KEY.format(job_id), f"{self._prefix}{job_id}")
        if raw_job is None:
            return None
        job = Job.from_json(raw_job)
        meta = self._app.backend.decode_result(raw_meta) if raw_meta else None
        return view_from_meta(job, meta)

    async def wait(self, job_id: str, seconds: float) -> JobView | None:
        """The job once it is final, or as it stands after ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        event = asyncio.Event()
        self._waiters[job_id].add(event)  # before the first read: no result slips between
        try:
            while True:
                view = await self.load(job_id)
                remaining = deadline - loop.time()
                if view is None or view.status.final or remaining <= 0:
                    return view
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, self.POLL_SECONDS))
                event.clear()
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    def waiting(self) -> int:
        """How many jobs have somebody awaiting them in this process."""
        return len(self._waiters)


def step_dicts(steps: list[Step]) -> list[dict[str, Any]]:
    return [{"name": s.name, "status": StepStatus(s.status).value, "duration_ms": s.duration_ms, "message": s.message} for s in steps]
