"""A job is one test of one source: how it is sent, read back, awaited and described.

The API process calls :func:`send_job` (blocking: run it in a thread) and awaits with a
:class:`JobStore` (asyncio). Results are Celery's ``celery-task-meta-<id>`` keys; the
store reads them with ``redis.asyncio`` and wakes on the channel Celery publishes them
on, through one pattern subscription per process. Our own job record
(``sourcecheck:job:<id>``) tells an unknown or expired id from a job that waits, and
carries the job's final deadline: a job nobody finished by then (its worker was killed,
no worker took it) is written off as failed, once, by whoever looks at it first.

Redis keys (all expire):

- ``sourcecheck:job:<id>``: the job record (no secrets)
- ``sourcecheck:inflight:<org>``: sorted set of the organization's unfinished jobs,
  scored by their final deadline (the per-organization cap)
- ``sourcecheck:coalesce:<fingerprint>``: the unfinished job that identical tests join
- ``sourcecheck:recent:<fingerprint>``: the last finished job of that test (``max_age``)
- ``sourcecheck:rate:<org>``: sorted set of the jobs the organization started in the
  last minute, scored by when (the per-organization rate limit)

A fingerprint is an HMAC of (organization, definition, deadline, configuration) under a
key derived from the encryption key: it identifies a configuration without revealing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio as aioredis
from celery import Celery
from redis.exceptions import RedisError

from connectors.base import CheckResult, CheckStatus, Failure
from connectors.errors import DEFAULT_HINTS, RETRYABLE, FailureType
from worker.app import API_TIMEOUTS, WRITE_UNLESS_FINAL
from worker.crypto import Cipher

log = logging.getLogger(__name__)

TASK_NAME = "sourcecheck.run_probe"
JOB_KEY = "sourcecheck:job:{}"
INFLIGHT_KEY = "sourcecheck:inflight:{}"
COALESCE_KEY = "sourcecheck:coalesce:{}"
RECENT_KEY = "sourcecheck:recent:{}"
RATE_KEY = "sourcecheck:rate:{}"
RATE_WINDOW_SECONDS = 60
# After its own deadline a probe has this long to be reported before it is written off.
FINISH_GRACE_SECONDS = 5.0

# KEYS[1]: the organization's in-flight set. ARGV: now, cap, job id, deadline score.
# Forgets jobs past their deadline, then adds this one unless the cap is reached.
ACQUIRE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""

# KEYS[1]: the organization's recently started jobs. ARGV: now, window, limit, job id.
# A sliding window: forgets jobs older than the window, then adds this one unless the limit
# is reached. Returns -1 when added, else the score (start time) of the oldest job, as a string.
ACQUIRE_RATE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) + 1)
return -1
"""

# KEYS[1]: a key; ARGV[1]: a value. Deletes the key only if it still holds that value.
DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


class OrganizationBusy(Exception):
    """The organization has as many tests in flight as it may; retry later."""


class OrganizationRateLimited(Exception):
    """The organization started as many tests in the last minute as it may; retry after ``retry_after`` s."""

    def __init__(self, organization_id: str, limit: int, retry_after: int) -> None:
        super().__init__(organization_id)
        self.organization_id = organization_id
        self.limit = limit
        self.retry_after = retry_after


@dataclass(frozen=True)
class Job:
    """What is known of a job when it is sent. Holds no secret."""

    id: str
    organization_id: str
    source_definition_id: str
    timeout: float
    created_at: datetime
    deadline_at: datetime  # when an unfinished job is written off
    source_id: str | None = None
    workspace_id: str | None = None
    name: str | None = None
    fingerprint: str | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["deadline_at"] = self.deadline_at.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Job:
        data = json.loads(raw)
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["deadline_at"] = datetime.fromisoformat(data["deadline_at"])
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


def new_job(
    *, organization_id: str, source_definition_id: str, timeout: float, queue_timeout: float,
    source_id: str | None = None, workspace_id: str | None = None, name: str | None = None, fingerprint: str | None = None,
) -> Job:
    created = datetime.now(UTC)
    return Job(
        id=f"job_{uuid.uuid4().hex}",
        organization_id=organization_id,
        source_definition_id=source_definition_id,
        timeout=timeout,
        created_at=created,
        deadline_at=created + timedelta(seconds=queue_timeout + timeout + FINISH_GRACE_SECONDS),
        source_id=source_id,
        workspace_id=workspace_id,
        name=name,
        fingerprint=fingerprint,
    )


def fingerprint(cipher_key: str, organization_id: str, definition: str, timeout: float, configuration: dict[str, Any]) -> str:
    """Identifies an identical test without revealing its configuration."""
    key = hashlib.sha256(b"sourcecheck-coalesce:" + cipher_key.encode()).digest()
    message = json.dumps([organization_id, definition, timeout, configuration], sort_keys=True, separators=(",", ":"))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def send_job(
    app: Celery, cipher: Cipher, job: Job, configuration: dict[str, Any], ttl: int, org_limit: int, per_minute: int = 0
) -> Job:
    """Enqueue ``job``'s probe, or join an identical job in flight; returns the job that
    will answer. ``configuration`` (secrets in clear) travels only encrypted; Flower and
    the logs see the job's ids, never the configuration.

    Blocking. Raises OrganizationRateLimited past ``per_minute`` tests started by the
    organization in the last 60 s (0: no limit; joining a job in flight costs nothing),
    OrganizationBusy past the organization's cap, and a kombu/redis error when the broker
    is unreachable (then nothing is left behind, and nothing counts against the limits).
    """
    client: redis.Redis = app.backend.client
    coalesce_key = COALESCE_KEY.format(job.fingerprint) if job.fingerprint else None
    if coalesce_key:
        ttl_left = max(1, int((job.deadline_at - datetime.now(UTC)).total_seconds()))
        if not client.set(coalesce_key, job.id, nx=True, ex=ttl_left):
            existing_id = client.get(coalesce_key)
            raw = client.get(JOB_KEY.format(_text(existing_id))) if existing_id else None
            if raw is not None:
                return Job.from_json(raw)
            client.set(coalesce_key, job.id, ex=ttl_left)  # the other job is gone: take its place
    inflight_key = INFLIGHT_KEY.format(job.organization_id)
    rate_key = RATE_KEY.format(job.organization_id)
    now = datetime.now(UTC).timestamp()
    if per_minute > 0:
        oldest = client.eval(ACQUIRE_RATE, 1, rate_key, now, RATE_WINDOW_SECONDS, per_minute, job.id)
        if oldest != -1:  # the oldest start in the window (bytes): this one may start when it leaves
            if coalesce_key:
                client.eval(DELETE_IF, 1, coalesce_key, job.id)
            retry_after = max(1, math.ceil(float(oldest) + RATE_WINDOW_SECONDS - now))
            raise OrganizationRateLimited(job.organization_id, per_minute, retry_after)
    if not client.eval(ACQUIRE_SLOT, 1, inflight_key, now, org_limit, job.id, job.deadline_at.timestamp()):
        if coalesce_key:
            client.eval(DELETE_IF, 1, coalesce_key, job.id)
        client.zrem(rate_key, job.id)  # not started: it does not count against the rate either
        raise OrganizationBusy(job.organization_id)
    payload = {
        "job_id": job.id,
        "organization_id": job.organization_id,
        "source_id": job.source_id,
        "definition": job.source_definition_id,
        "config": cipher.encrypt_json(configuration),
        "timeout": job.timeout,
        "fingerprint": job.fingerprint,
    }
    summary = f"job={job.id} org={job.organization_id} definition={job.source_definition_id}"
    if job.source_id:
        summary += f" source={job.source_id}"
    try:
        # The record lives ``ttl`` s, and never less than until the job's deadline: a job
        # still queued or running is never taken for an expired one.
        record_ttl = max(ttl, math.ceil((job.deadline_at - datetime.now(UTC)).total_seconds()) + 1)
        client.set(JOB_KEY.format(job.id), job.to_json(), ex=record_ttl)
        app.send_task(
            TASK_NAME,
            args=[payload],
            task_id=job.id,
            argsrepr=summary,
            kwargsrepr="{}",
            expires=job.deadline_at,  # a message still queued then is dropped, not run late
        )
    except Exception:
        with contextlib.suppress(RedisError, OSError):
            release(client, job.organization_id, job.id, job.fingerprint)
            client.delete(JOB_KEY.format(job.id))
            client.zrem(rate_key, job.id)
        raise
    return job


def release(client: redis.Redis, organization_id: str, job_id: str, fingerprint: str | None, recent_ttl: int | None = None) -> None:
    """Forget a job as in flight; with ``recent_ttl``, remember it as the latest result."""
    with client.pipeline() as pipe:
        pipe.zrem(INFLIGHT_KEY.format(organization_id), job_id)
        if fingerprint:
            pipe.eval(DELETE_IF, 1, COALESCE_KEY.format(fingerprint), job_id)
            if recent_ttl:
                pipe.set(RECENT_KEY.format(fingerprint), job_id, ex=recent_ttl)
        pipe.execute()


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
        kind, message = FailureType.TIMEOUT, "The test waited for a worker past its deadline and was dropped"
    else:
        kind, message = FailureType.INTERNAL_ERROR, "The test could not be run"
    failure = Failure(type=kind, message=message, hint=DEFAULT_HINTS[kind], retryable=RETRYABLE[kind])
    return JobView(
        job=job,
        status=JobStatus.FAILED,
        ended_at=done,
        result=CheckResult(status=CheckStatus.FAILED, steps=[], failure=failure),
    )


def written_off(view: JobView, now: datetime) -> dict[str, Any]:
    """The final result of a job nobody finished by its deadline (as a task would return it)."""
    if view.status == JobStatus.RUNNING:
        kind, message = FailureType.WORKER_LOST, "The worker running this test stopped before it finished"
    else:
        kind, message = FailureType.TIMEOUT, "No worker took this test before its deadline: the workers are saturated or down"
    failure = Failure(type=kind, message=message, hint=DEFAULT_HINTS[kind], retryable=RETRYABLE[kind])
    check = CheckResult(status=CheckStatus.FAILED, failure=failure)
    return {
        "started_at": view.started_at.isoformat() if view.started_at else None,
        "ended_at": now.isoformat(),
        "worker": view.worker,
        "check": check.to_dict(),
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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

    def __init__(self, app: Celery, redis_url: str, result_ttl: int) -> None:
        self._app = app
        self._ttl = result_ttl
        # Requests beyond the pool's size wait for a connection (up to 5 s) instead of failing.
        # Bounded reads: with Redis down a read fails at once, with Redis hung within
        # API_TIMEOUTS["read"] s (the API answers 503); the subscription's blocking read waits.
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=256, timeout=5, socket_connect_timeout=API_TIMEOUTS["connect"],
            socket_timeout=API_TIMEOUTS["read"], health_check_interval=10,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        prefix = app.backend.task_keyprefix
        self._prefix: str = prefix.decode() if isinstance(prefix, bytes) else str(prefix)
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
        """The job as it stands, or None when the id is unknown or has expired. A job
        past its deadline and still unfinished is written off here (once, for all)."""
        result_key = f"{self._prefix}{job_id}"
        raw_job, raw_meta = await self._redis.mget(JOB_KEY.format(job_id), result_key)
        if raw_job is None:
            return None
        job = Job.from_json(raw_job)
        view = view_from_meta(job, self._app.backend.decode_result(raw_meta) if raw_meta else None)
        now = datetime.now(UTC)
        if not view.status.final and now > job.deadline_at:
            meta: dict[str, Any] = {"status": "SUCCESS", "result": written_off(view, now), "traceback": None, "children": [],
                    "date_done": now.isoformat(), "task_id": job_id}
            await self._redis.eval(WRITE_UNLESS_FINAL, 1, result_key, self._app.backend.encode(meta), self._ttl)
            await self._redis.zrem(INFLIGHT_KEY.format(job.organization_id), job.id)
            if job.fingerprint:
                await self._redis.eval(DELETE_IF, 1, COALESCE_KEY.format(job.fingerprint), job.id)
            raw_meta = await self._redis.get(result_key)  # whichever final result won
            view = view_from_meta(job, self._app.backend.decode_result(raw_meta) if raw_meta else None)
        return view

    async def recent(self, fingerprint: str, max_age: float) -> JobView | None:
        """The last finished job of an identical test, if it ended within ``max_age`` s."""
        job_id = await self._redis.get(RECENT_KEY.format(fingerprint))
        if job_id is None:
            return None
        view = await self.load(_text(job_id))
        if view is None or not view.status.final or view.ended_at is None:
            return None
        if (datetime.now(UTC) - view.ended_at).total_seconds() > max_age:
            return None
        return view

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
