"""Sending, reading and awaiting jobs from the API process (asyncio): the :class:`JobStore`.

Sending is one Redis script (``worker/lua/submit.lua``) that checks the organization's
limits, joins an identical job in flight or records the job and pushes its Celery message
(``worker.seams.kombu``) onto the queue: all of it happens, or nothing does. A worker
marks the job started, then writes its final record, once (``worker.reporting``); each
is published on the job's channel, where the store wakes its waiters through one pattern
subscription per process. The job record tells an unknown or expired id from a job that
waits, and carries the job's final deadline: a job nobody finished by then (its worker was
killed, no worker took it) is written off as failed, once, by whoever looks at it first.
Keys and channels: ``worker.keys``; the records: ``worker.records``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from redis.exceptions import RedisError

from worker.app import API_TIMEOUTS, TASK_NAME
from worker.crypto import Cipher
from worker.errors import OrganizationBusy, OrganizationRateLimited
from worker.events import EventReader
from worker.keys import (
    CANCEL_CHANNEL,
    CANCEL_KEY,
    COALESCE_KEY,
    INFLIGHT_KEY,
    JOB_KEY,
    JOINED_KEY,
    RATE_KEY,
    RATE_WINDOW_SECONDS,
    RECENT_KEY,
    RESULT_KEY,
    STARTED_KEY,
    UPDATES_CHANNEL,
    WATCH_CHANNEL,
    WATCH_KEY,
    finish_args,
    finish_keys,
)
from worker.lua import CANCEL, FINISH, SUBMIT
from worker.model import FINISH_GRACE_SECONDS, Job, JobStatus, JobView, fingerprint, new_job
from worker.records import cancelled_before_start, view_from_record, written_off
from worker.seams.kombu import queue_key, task_message

__all__ = [  # what the API and the tests import from here
    "FINISH_GRACE_SECONDS",
    "RATE_KEY",
    "RATE_WINDOW_SECONDS",
    "TASK_NAME",
    "Job",
    "JobStatus",
    "JobStore",
    "JobView",
    "CancelOutcome",
    "OrganizationBusy",
    "OrganizationRateLimited",
    "fingerprint",
    "new_job",
]

log = logging.getLogger(__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CancelOutcome(StrEnum):
    """What asking a job to stop did (worker/lua/cancel.lua)."""

    FINAL = "final"  # it had ended: nothing changed
    SHARED = "shared"  # identical requests joined it: refused, nothing changed
    RUNNING = "running"  # its worker was told; it ends cancelled within a moment
    PENDING = "pending"  # not started: it ended cancelled now, and will never run


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

    def __init__(
        self,
        app: Celery,
        redis_url: str,
        result_ttl: int,
        *,
        stream_connections: int = 256,
        stream_block_max: float = 15.0,
    ) -> None:
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
        self._cancel = self._redis.register_script(CANCEL)
        self.events = EventReader(redis_url, stream_connections, stream_block_max)

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
        # Started after the pool is open: begun before, the subscription would hold one of the
        # connections the loop above waits for.
        self._listener = asyncio.create_task(self._listen(), name="sourcecheck-result-listener")

    async def close(self) -> None:
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.events.close()
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
            JOINED_KEY.format(""),
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
            # A job written off is not the latest result of its test.
            keys = finish_keys(job.id, job.organization_id, job.fingerprint, remember=False)
            record = written_off(view, now)
            await self._finish(keys=keys, args=finish_args(job.id, record, self._ttl))
            view = view_from_record(job, await self._redis.get(result_key))  # whichever final result won
        return view

    async def watch(self, job_id: str) -> None:
        """Have the worker of ``job_id`` write its events (worker.control): mark it watched,
        so that a worker that starts it later does, and tell the workers, for the one running it."""
        key = WATCH_KEY.format(job_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(key, 1, ex=self._ttl)
            pipe.publish(WATCH_CHANNEL, job_id)
            await pipe.execute()

    async def joined(self, job_id: str) -> None:
        """Count one more request that joined ``job_id`` in this process (see :meth:`cancel`)."""
        key = JOINED_KEY.format(job_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def cancel(self, view: JobView) -> CancelOutcome:
        """Ask ``view``'s job to stop (see :class:`CancelOutcome`). A job that identical
        requests joined is not cancelled: one caller must not end the others' test."""
        job = view.job
        keys = [
            RESULT_KEY.format(job.id),
            STARTED_KEY.format(job.id),
            CANCEL_KEY.format(job.id),
            JOINED_KEY.format(job.id),
        ]
        outcome = CancelOutcome(_text(await self._cancel(keys=keys, args=[self._ttl, job.id, CANCEL_CHANNEL])))
        if outcome == CancelOutcome.PENDING:
            # Ended here, now: the worker that takes its message finds the result and does not run it.
            keys = finish_keys(job.id, job.organization_id, job.fingerprint, remember=False)
            record = cancelled_before_start(datetime.now(UTC))
            await self._finish(keys=keys, args=finish_args(job.id, record, self._ttl))
        return outcome

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
