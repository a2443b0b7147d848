"""How a worker reports the jobs it runs: started, then the final record, written once."""

from __future__ import annotations

import functools
from datetime import datetime
from enum import IntEnum
from typing import Any

import redis
from redis.backoff import ConstantBackoff
from redis.retry import Retry

from worker.app import WORKER_TIMEOUTS
from worker.keys import RESULT_KEY, STARTED_KEY, UPDATES_CHANNEL, WATCH_KEY, finish_args, finish_keys
from worker.lua import BEGIN, FINISH
from worker.records import started_record
from worker.settings import get_settings


class Begun(IntEnum):
    """What marking a job started found (worker/lua/begin.lua)."""

    ALREADY_FINAL = 0  # a message delivered again: the stored result stands, the probe does not run
    UNWATCHED = 1
    WATCHED = 2  # somebody watches its events already

    def __bool__(self) -> bool:
        return self is not Begun.ALREADY_FINAL


class Reporter:
    """A worker process's writes of job state (thread-safe: the client pools connections)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._begin = client.register_script(BEGIN)
        self._finish = client.register_script(FINISH)

    def begin(self, job_id: str, *, started_at: datetime, worker: str | None, ttl: int) -> Begun:
        """Mark a job started, unless it already has its final result (then writes nothing)."""
        keys = [RESULT_KEY.format(job_id), STARTED_KEY.format(job_id), WATCH_KEY.format(job_id)]
        args: list[str | int] = [started_record(started_at, worker), ttl, UPDATES_CHANNEL.format(job_id)]
        return Begun(int(self._begin(keys=keys, args=args)))

    def finish(self, job: dict[str, Any], record: str, ttl: int) -> bool:
        """Store a job's final record (unless it has one) and forget it as in flight, at once.
        ``job`` is the task's payload. True when this record is the one stored."""
        keys = finish_keys(job["job_id"], job["organization_id"], job.get("fingerprint"), remember=True)
        return bool(self._finish(keys=keys, args=finish_args(job["job_id"], record, ttl)))


@functools.cache
def reporter() -> Reporter:
    """This process's reporter. Each command is retried while Redis is unreachable, for
    about 20 s (a result outlives a short outage), then raises."""
    client = redis.Redis.from_url(
        get_settings().redis_url,
        socket_connect_timeout=WORKER_TIMEOUTS["connect"],
        socket_timeout=WORKER_TIMEOUTS["read"],
        retry=Retry(ConstantBackoff(1.0), 20),
        health_check_interval=10,
    )
    return Reporter(client)
