"""A job is one test of one source: how it is sent, read back, awaited and described.

The API process sends and awaits jobs with a :class:`JobStore` (asyncio). Sending is one
Redis script that checks the organization's limits, joins an identical job in flight or
records the job and pushes its Celery message (``worker.seams.kombu``) onto the queue: all
of it happens, or nothing does. A worker marks the job started, then writes its final
result, once (``begin``, ``finish``); each is published on the job's channel, where the
store wakes its waiters through one pattern subscription per process. The job record
tells an unknown or expired id from a job that waits, and carries the job's final
deadline: a job nobody finished by then (its worker was killed, no worker took it) is
written off as failed, once, by whoever looks at it first.

Redis keys (all expire):

- ``sourcecheck:job:<id>``: the job record (no secrets)
- ``sourcecheck:started:<id>``: when and where a worker started the job
- ``sourcecheck:result:<id>``: the job's final result, written once
- ``sourcecheck:inflight:<org>``: sorted set of the organization's unfinished jobs,
  scored by their final deadline (the per-organization cap)
- ``sourcecheck:coalesce:<fingerprint>``: the unfinished job that identical tests join
- ``sourcecheck:recent:<fingerprint>``: the last finished job of that test (``max_age``)
- ``sourcecheck:rate:<org>``: sorted set of the jobs the organization started in the
  last minute, scored by when (the per-organization rate limit)

Channel ``sourcecheck:updates:<id>``: each started and final record of the job, as written.

A fingerprint is an HMAC of (organization, definition, deadline, configuration) under a
key derived from the encryption key: it identifies a configuration without revealing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio as aioredis
from celery import Celery
from redis.backoff import ConstantBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from connectors.base import CheckResult, CheckStatus, Failure
from connectors.errors import DEFAULT_HINTS, RETRYABLE, FailureType
from worker.app import API_TIMEOUTS, WORKER_TIMEOUTS
from worker.crypto import Cipher
from worker.seams.kombu import queue_key, task_message
from worker.settings import get_settings

log = logging.getLogger(__name__)

TASK_NAME = "sourcecheck.run_probe"
JOB_KEY = "sourcecheck:job:{}"
STARTED_KEY = "sourcecheck:started:{}"
RESULT_KEY = "sourcecheck:result:{}"
UPDATES_CHANNEL = "sourcecheck:updates:{}"
INFLIGHT_KEY = "sourcecheck:inflight:{}"
COALESCE_KEY = "sourcecheck:coalesce:{}"
RECENT_KEY = "sourcecheck:recent:{}"
RATE_KEY = "sourcecheck:rate:{}"
RATE_WINDOW_SECONDS = 60
# After its own deadline a probe has this long to be reported before it is written off.
FINISH_GRACE_SECONDS = 5.0

# Admits a job and queues its message, atomically: all of it happens, or nothing does.
# KEYS: the job's record, the organization's in-flight set, its rate window, the queue,
# the coalescing key ('' without a fingerprint). ARGV: job id, record, record ttl, now,
# cap, deadline score, tests per minute (0: no limit), window, coalescing ttl, message,
# the job record key prefix. Returns {'sent'}, {'joined', <record of the job in flight>},
# {'rate', <start time of the oldest job in the window>} or {'busy'}.
SUBMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'sent'} end
local fp = KEYS[5]
if fp ~= '' then
  local other = redis.call('GET', fp)
  if other then
    local record = redis.call('GET', ARGV[11] .. other)
    if record then return {'joined', record} end
  end
end
local now = tonumber(ARGV[4])
local per_minute = tonumber(ARGV[7])
local window = tonumber(ARGV[8])
if per_minute > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  if redis.call('ZCARD', KEYS[3]) >= per_minute then
    return {'rate', redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2]}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return {'busy'} end
if per_minute > 0 then
  redis.call('ZADD', KEYS[3], now, ARGV[1])
  redis.call('EXPIRE', KEYS[3], window + 1)
end
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
redis.call('EXPIRE', KEYS[2], 3600)
if fp ~= '' then redis.call('SET', fp, ARGV[1], 'EX', ARGV[9]) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('LPUSH', KEYS[4], ARGV[10])
return {'sent'}
"""

# A worker starts a job. KEYS: its result key, its started key. ARGV: the started record,
# seconds to live, the job's channel. Returns 0 (and writes nothing) when the job already
# has its final result: a message delivered again must not run again. Published: the API
# that sent the job learns that a worker took it (see api.admission.Admission).
BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
"""

# A job ends, once. KEYS: its result key, the organization's in-flight set, the coalescing
# key ('' without a fingerprint), the recent-result key ('': not remembered). ARGV: the
# final record, seconds to live, job id, the job's channel. Unless the job already has a
# final result: writes and publishes it, forgets the job as in flight and remembers it as
# the latest result of its test (max_age). Returns 1 when written.
FINISH = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('PUBLISH', ARGV[4], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[3])
if KEYS[3] ~= '' and redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[2]) end
return 1
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
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # flat: no need for asdict's deep copy
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
    *,
    organization_id: str,
    source_definition_id: str,
    timeout: float,
    queue_timeout: float,
    source_id: str | None = None,
    workspace_id: str | None = None,
    name: str | None = None,
    fingerprint: str | None = None,
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


def fingerprint(
    cipher_key: str, organization_id: str, definition: str, timeout: float, configuration: dict[str, Any]
) -> str:
    """Identifies an identical test without revealing its configuration."""
    key = hashlib.sha256(b"sourcecheck-coalesce:" + cipher_key.encode()).digest()
    message = json.dumps([organization_id, definition, timeout, configuration], sort_keys=True, separators=(",", ":"))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def failed_check(kind: FailureType, message: str) -> dict[str, Any]:
    """A failed CheckResult as a dict, for failures found outside the connector."""
    failure = Failure(type=kind, message=message, hint=DEFAULT_HINTS[kind], retryable=RETRYABLE[kind])
    return CheckResult(status=CheckStatus.FAILED, failure=failure).to_dict()


def started_record(started_at: datetime, worker: str | None) -> str:
    """What a worker writes when it starts a job."""
    return json.dumps({"status": JobStatus.RUNNING, "started_at": started_at.isoformat(), "worker": worker})


def final_record(check: dict[str, Any], *, started_at: datetime | None, ended_at: datetime, worker: str | None) -> str:
    """A job's final result: the probe's check (a CheckResult dict), when and where it ran."""
    status = JobStatus.SUCCEEDED if check.get("status") == CheckStatus.SUCCEEDED else JobStatus.FAILED
    return json.dumps(
        {
            "status": status,
            "started_at": started_at.isoformat() if started_at else None,
            "ended_at": ended_at.isoformat(),
            "worker": worker,
            "check": check,
        }
    )


def view_from_record(job: Job, raw: str | bytes | None) -> JobView:
    """Turn a started or final record (or None: not started) into a JobView."""
    if not raw:
        return JobView(job=job, status=JobStatus.PENDING)
    record = json.loads(raw)
    check = record.get("check")
    return JobView(
        job=job,
        status=JobStatus(record["status"]),
        started_at=_parse_time(record.get("started_at")),
        ended_at=_parse_time(record.get("ended_at")),
        worker=record.get("worker"),
        result=CheckResult.from_dict(check) if check else None,
    )


def written_off(view: JobView, now: datetime) -> str:
    """The final record of a job nobody finished by its deadline."""
    if view.status == JobStatus.RUNNING:
        check = failed_check(FailureType.WORKER_LOST, "The worker running this test stopped before it finished")
    else:
        check = failed_check(
            FailureType.TIMEOUT, "No worker took this test before its deadline: the workers are saturated or down"
        )
    return final_record(check, started_at=view.started_at, ended_at=now, worker=view.worker)


@functools.cache
def worker_redis() -> redis.Redis:
    """The worker process's Redis client for job state. A command is retried while Redis is
    unreachable, for about 20 s, then raises."""
    return redis.Redis.from_url(
        get_settings().redis_url,
        socket_connect_timeout=WORKER_TIMEOUTS["connect"],
        socket_timeout=WORKER_TIMEOUTS["read"],
        retry=Retry(ConstantBackoff(1.0), 20),
        health_check_interval=10,
    )


def begin(client: redis.Redis, job_id: str, *, started_at: datetime, worker: str | None, ttl: int) -> bool:
    """Mark a job started; False when it already has its final result."""
    keys = [RESULT_KEY.format(job_id), STARTED_KEY.format(job_id)]
    return bool(
        client.eval(BEGIN, len(keys), *keys, started_record(started_at, worker), ttl, UPDATES_CHANNEL.format(job_id))
    )


def finish(client: redis.Redis, job: dict[str, Any], record: str, ttl: int) -> bool:
    """Store a job's final record (unless it has one) and forget it as in flight, at once.
    ``job`` is the task's payload. True when this record is the one stored."""
    fingerprint = job.get("fingerprint")
    keys = [
        RESULT_KEY.format(job["job_id"]),
        INFLIGHT_KEY.format(job["organization_id"]),
        COALESCE_KEY.format(fingerprint) if fingerprint else "",
        RECENT_KEY.format(fingerprint) if fingerprint else "",
    ]
    return bool(
        client.eval(FINISH, len(keys), *keys, record, ttl, job["job_id"], UPDATES_CHANNEL.format(job["job_id"]))
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class JobStore:
    """Reads and awaits jobs without blocking the event loop (one per API process).

    ``start()`` opens one pattern subscription to the jobs' channels; a waiter is woken by
    a message on its job's channel (every record is published: the worker's, and a
    write-off's). Messages published while the subscription was down are lost, so every
    waiter reads its job again when the subscription is lost and once it is back. A waiter
    also reads its job at the job's deadline (an unfinished job is written off by whoever
    reads it then) and, as a last guard, every ``POLL_SECONDS``.
    """

    POLL_SECONDS = 2.0
    POOL_SIZE = 64

    def __init__(self, app: Celery, redis_url: str, result_ttl: int) -> None:
        self._app = app
        self._ttl = result_ttl
        self._queue = str(app.conf.task_default_queue)
        # Requests beyond the pool's size wait for a connection (up to 5 s) instead of failing.
        # The pool is opened whole at start: a connection opened during a burst of requests
        # waits for the busy event loop and would miss its connect timeout (a false 503).
        # Bounded reads: with Redis down a read fails at once, with Redis hung within
        # API_TIMEOUTS["read"] s (the API answers 503); the subscription's blocking read waits.
        self._pool = pool = aioredis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=self.POOL_SIZE,
            timeout=5,
            socket_connect_timeout=API_TIMEOUTS["connect"],
            socket_timeout=API_TIMEOUTS["read"],
            health_check_interval=10,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._prefix = UPDATES_CHANNEL.format("")
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._published: dict[str, bytes] = {}  # the last result published for a job awaited here
        self._listener: asyncio.Task[None] | None = None
        self._submit = self._redis.register_script(SUBMIT)
        self._finish = self._redis.register_script(FINISH)

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    async def start(self) -> None:
        opened: list[Any] = []
        try:  # best effort: with Redis down now, connections open when it is back
            async with asyncio.timeout(5):
                for _ in range(self.POOL_SIZE):
                    connection = await self._pool.get_connection()
                    opened.append(connection)
                    await connection.connect()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "could not open the Redis connection pool at start (%s); it opens as requests come", type(exc).__name__
            )
        finally:
            for connection in opened:
                await self._pool.release(connection)
        # Started after the pool is open: the subscription takes one of its connections (begun
        # before, it held one while the loop above waited 5 s for the last of POOL_SIZE).
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
                self._wake_all()  # what was published before (re)subscribing is lost: read again
                async for message in pubsub.listen():
                    if message["type"] != "pmessage":
                        continue
                    channel = message["channel"]
                    job_id = (channel.decode() if isinstance(channel, bytes) else channel)[len(self._prefix) :]
                    waiters = self._waiters.get(job_id)
                    if waiters:
                        self._published[job_id] = message["data"]
                        for event in waiters:
                            event.set()
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except Exception as exc:
                if isinstance(exc, (RedisError, OSError)):
                    log.warning("result subscription lost (%s); reconnecting", type(exc).__name__)
                else:  # a bug (ours or redis-py's) must not end the subscription for good
                    log.exception("result subscription failed; reconnecting")
                self._wake_all()  # each waiter reads its job now: with Redis gone, its request answers 503
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(0.5)

    def _wake_all(self) -> None:
        """Have every waiter read its job again (none uses a published result it may have missed)."""
        self._published.clear()
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def submit(
        self, cipher: Cipher, job: Job, configuration: dict[str, Any], ttl: int, org_limit: int, per_minute: int = 0
    ) -> Job:
        """Enqueue ``job``'s probe, or join an identical job in flight; returns the job that
        will answer. ``configuration`` (secrets in clear) travels only encrypted; Flower and
        the logs see the job's ids, never the configuration.

        Raises OrganizationRateLimited past ``per_minute`` tests started by the organization
        in the last 60 s (0: no limit; joining a job in flight costs nothing),
        OrganizationBusy past the organization's cap, and a Redis error when Redis is
        unreachable; in every one of these cases nothing was recorded or queued.
        """
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
        message = task_message(
            self._app, self._queue, TASK_NAME, job.id, [payload], expires=job.deadline_at, argsrepr=summary
        )
        now = datetime.now(UTC)
        to_deadline = math.ceil((job.deadline_at - now).total_seconds())
        # The record lives ``ttl`` s, and never less than until the job's deadline: a job
        # still queued or running is never taken for an expired one.
        keys = [
            JOB_KEY.format(job.id),
            INFLIGHT_KEY.format(job.organization_id),
            RATE_KEY.format(job.organization_id),
            queue_key(self._queue),
            COALESCE_KEY.format(job.fingerprint) if job.fingerprint else "",
        ]
        args: list[str | int | float] = [
            job.id,
            job.to_json(),
            max(ttl, to_deadline + 1),
            now.timestamp(),
            org_limit,
            job.deadline_at.timestamp(),
            per_minute,
            RATE_WINDOW_SECONDS,
            max(1, to_deadline),
            message,
            JOB_KEY.format(""),
        ]
        answer = await self._submit(keys=keys, args=args)
        outcome = _text(answer[0])
        if outcome == "joined":
            return Job.from_json(answer[1])
        if outcome == "rate":
            retry_after = max(1, math.ceil(float(answer[1]) + RATE_WINDOW_SECONDS - now.timestamp()))
            raise OrganizationRateLimited(job.organization_id, per_minute, retry_after)
        if outcome == "busy":
            raise OrganizationBusy(job.organization_id)
        return job

    async def load(self, job_id: str) -> JobView | None:
        """The job as it stands, or None when the id is unknown or has expired. A job
        past its deadline and still unfinished is written off here (once, for all)."""
        result_key = RESULT_KEY.format(job_id)
        raw_job, raw_final, raw_started = await self._redis.mget(
            JOB_KEY.format(job_id), result_key, STARTED_KEY.format(job_id)
        )
        if raw_job is None:
            return None
        job = Job.from_json(raw_job)
        view = view_from_record(job, raw_final or raw_started)
        now = datetime.now(UTC)
        if not view.status.final and now > job.deadline_at:
            keys = [
                result_key,
                INFLIGHT_KEY.format(job.organization_id),
                COALESCE_KEY.format(job.fingerprint) if job.fingerprint else "",
                "",  # a job written off is not the latest result of its test
            ]
            record = written_off(view, now)
            await self._finish(keys=keys, args=[record, self._ttl, job.id, UPDATES_CHANNEL.format(job.id)])
            view = view_from_record(job, await self._redis.get(result_key))  # whichever final result won
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

    async def wait(self, job_id: str, seconds: float, sent: Job | None = None) -> JobView | None:
        """The job once it is final, or as it stands after ``seconds``. With ``sent`` (the
        job, just sent by this process, awaited since before it was sent) the first read
        is skipped and a published result is used as it comes, without reading it back."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        with self.awaiting(job_id) as event:
            view = self._published_view(sent) if sent is not None else None
            while True:
                if view is None:
                    view = await self.load(job_id)
                remaining = deadline - loop.time()
                if view is None or view.status.final or remaining <= 0:
                    return view
                # Until the job's deadline (when it may be written off) or the next guard read.
                to_deadline = (view.job.deadline_at - datetime.now(UTC)).total_seconds()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, self.POLL_SECONDS, max(to_deadline, 0.05))):
                        await event.wait()
                published = event.is_set() and job_id in self._published
                event.clear()
                view = self._published_view(sent) if sent is not None and published else None

    def _published_view(self, sent: Job) -> JobView:
        """The job as its last published result shows it (pending when none was)."""
        published = self._published.get(sent.id)
        if published is None:
            return JobView(job=sent, status=JobStatus.PENDING)
        return view_from_record(sent, published)

    @contextlib.contextmanager
    def awaiting(self, job_id: str) -> Iterator[asyncio.Event]:
        """Wake the event when a result of ``job_id`` is published (enter before it can be)."""
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]
                    self._published.pop(job_id, None)

    def waiting(self) -> int:
        """How many jobs have somebody awaiting them in this process."""
        return len(self._waiters)
