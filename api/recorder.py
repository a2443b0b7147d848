"""The history recorder: an asyncio task of each API process that moves the final results
of stored sources from Redis into the metadata database.

``worker/lua/finish.lua`` appends each such result to the stream ``sourcecheck:history`` in
the same step that stores it, so recording never delays the answer, and a result is
never lost while the database is down: it waits in the stream (capped at about 100,000).
The API processes share the stream as one consumer group (``recorders``): each entry goes
to one of them, which acknowledges (and deletes) it only after the rows are committed. An
entry left unacknowledged (the database failed, the process died) is read again: by its
consumer when it retries, or by any other, which claims entries idle for ``CLAIM_IDLE_MS``
(XAUTOCLAIM). Rows are keyed by job id, so an entry recorded twice is one row. While the
database is down, the recorder backs off (0.5 s doubling to 30 s) and tries again.

Once per ``history_prune_interval_seconds`` per deployment (a Redis lock), one recorder
prunes the history (``history_retention_days``, ``history_max_per_source``) and forgets
consumers long gone. Status changes found while recording go to api.services.changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from api import history, metrics
from api.services import changes
from api.settings import ApiSettings
from worker.app import API_TIMEOUTS
from worker.keys import HISTORY_GROUP, HISTORY_STREAM

log = logging.getLogger("sourcecheck.recorder")

PRUNE_LOCK = "sourcecheck:history:prune"


class Recorder:
    """Records the stream's entries; ``run()`` forever, ``step()`` once (for tests)."""

    BATCH = 100
    BLOCK_MS = 2000
    CLAIM_IDLE_MS = 30_000  # an entry pending this long belongs to a consumer that is gone or stuck
    BACKOFF = (0.5, 30.0)
    CONSUMER_IDLE_MS = 7 * 24 * 3600 * 1000  # a consumer with nothing pending, unseen this long, is forgotten

    def __init__(self, redis_url: str, engine: Engine, settings: ApiSettings, consumer: str | None = None) -> None:
        self._redis = aioredis.Redis.from_url(
            redis_url,
            socket_connect_timeout=API_TIMEOUTS["connect"],
            socket_timeout=self.BLOCK_MS / 1000 + 5,
            health_check_interval=10,
        )
        self._engine = engine
        self._settings = settings
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._group_ready = False
        self._claim_from = "0-0"
        self._task: asyncio.Task[None] | None = None

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="sourcecheck-history-recorder")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

    async def run(self) -> None:
        delay = self.BACKOFF[0]
        next_prune = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() >= next_prune:
                    next_prune = loop.time() + self._settings.history_prune_interval_seconds
                    await self.prune()
                await self.step()
                delay = self.BACKOFF[0]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, (RedisError, OSError, SQLAlchemyError)):
                    what = "database" if isinstance(exc, SQLAlchemyError) else "Redis"
                    log.warning("history recorder: %s unavailable (%s); retrying in %.1f s", what, _name(exc), delay)
                else:  # a bug must not stop the recording for good
                    log.exception("history recorder failed; retrying in %.1f s", delay)
                self._group_ready = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.BACKOFF[1])

    async def step(self, block_ms: int | None = None) -> int:
        """Record one batch: this consumer's unacknowledged entries first, then entries left
        idle by another, then new ones (waiting up to ``block_ms``). Entries are acknowledged
        only once their rows are committed. Returns how many entries were taken."""
        await self._ensure_group()
        entries = await self._read("0", block_ms=None)  # ours, read before and not acknowledged
        if not entries:
            entries = await self._claim()
        if not entries:
            entries = await self._read(">", block_ms=self.BLOCK_MS if block_ms is None else block_ms)
        if not entries:
            return 0
        batch: list[history.Finished] = []
        for entry_id, fields in entries:
            try:
                batch.append(history.Finished.parse(fields[b"job"], fields[b"record"]))
            except (KeyError, ValueError, TypeError) as exc:
                log.error("history entry %s is unreadable (%s); dropped", entry_id.decode(), _name(exc))
                metrics.HISTORY_RECORDS.labels("dropped").inc()
        written = await asyncio.to_thread(self._write, batch)
        for outcome in ("recorded", "duplicate", "dropped"):
            if count := getattr(written, outcome):
                metrics.HISTORY_RECORDS.labels(outcome).inc(count)
        for change in written.changes:
            try:
                await changes.on_change(change, lambda: Session(self._engine))
            except Exception:  # a consumer's failure must not undo the record
                log.exception("status change of source %s: dispatch failed", change.source_id)
        ids = [entry_id for entry_id, _ in entries]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(HISTORY_STREAM, HISTORY_GROUP, *ids)
            pipe.xdel(HISTORY_STREAM, *ids)
            await pipe.execute()
        return len(entries)

    def _write(self, batch: list[history.Finished]) -> history.Written:
        with Session(self._engine) as session:
            return history.write_records(session, batch)

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:  # from the stream's start: results appended before any recorder ran are recorded too
            await self._redis.xgroup_create(HISTORY_STREAM, HISTORY_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _read(self, start: str, *, block_ms: int | None) -> list[tuple[bytes, dict[bytes, bytes]]]:
        try:
            answer: Any = await self._redis.xreadgroup(
                HISTORY_GROUP, self.consumer, {HISTORY_STREAM: start}, count=self.BATCH, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # Redis lost the stream (restarted without persistence)
                self._group_ready = False
            raise
        if not answer:
            return []
        # An entry deleted while pending reads as (id, None): nothing to record, only to acknowledge.
        return [(entry_id, fields or {}) for entry_id, fields in answer[0][1]]

    async def _claim(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        answer: Any = await self._redis.xautoclaim(
            HISTORY_STREAM, HISTORY_GROUP, self.consumer, self.CLAIM_IDLE_MS, self._claim_from, count=self.BATCH
        )
        next_id, claimed = answer[0], answer[1]
        self._claim_from = next_id.decode() if isinstance(next_id, bytes) else str(next_id)
        if claimed:
            log.info("history recorder: claimed %d entries left pending by another consumer", len(claimed))
        return [(entry_id, fields or {}) for entry_id, fields in claimed]

    async def prune(self) -> int:
        """Prune the history, if no other API process did within the interval; rows deleted."""
        ttl = max(1, int(self._settings.history_prune_interval_seconds))
        if not await self._redis.set(PRUNE_LOCK, self.consumer, nx=True, ex=ttl):
            return 0
        deleted = await asyncio.to_thread(self._prune)
        if deleted:
            log.info("history: pruned %d records", deleted)
        await self._forget_gone_consumers()
        return deleted

    def _prune(self) -> int:
        with Session(self._engine) as session:
            return history.prune(
                session,
                retention_days=self._settings.history_retention_days,
                max_per_source=self._settings.history_max_per_source,
            )

    async def _forget_gone_consumers(self) -> None:
        """Every API process that ever ran is a consumer of the group: drop the ones gone for long."""
        await self._ensure_group()
        for consumer in await self._redis.xinfo_consumers(HISTORY_STREAM, HISTORY_GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > self.CONSUMER_IDLE_MS:
                await self._redis.xgroup_delconsumer(HISTORY_STREAM, HISTORY_GROUP, consumer["name"])


def _name(exc: BaseException) -> str:
    return type(getattr(exc, "orig", None) or exc).__name__
