"""A job's live events: a Redis Stream per job (``sourcecheck:events:<id>``, worker.keys).

Only a watched job has one (worker.control): its probe's events come over its child's pipe
(worker.runner) and the :class:`EventWriter`'s thread appends them, batched, capped
(``MAXLEN ~``) and expiring with the result; a job nobody watches writes nothing. The task
flushes its job's events before it stores the result, and storing the result appends the
stream's last entry, ``end`` (worker/lua/finish.lua): a reader that meets ``end`` has seen
every event. The API reads them with :class:`EventReader` (XREAD BLOCK on connections of
its own), so any API process serves any job's stream.

An entry's fields: ``e``, the event's name (``plan``, ``step``, ``warning``, ``end``) and
``d``, its data as one line of JSON (:func:`connectors.base.event_json`; none for ``end``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from worker.app import API_TIMEOUTS
from worker.keys import EVENTS_KEY, EVENTS_MAXLEN

log = logging.getLogger(__name__)

END = "end"


class EventWriter:
    """Appends the events of running probes to their jobs' streams from one thread of its
    own; thread-safe. A batch that Redis refuses is dropped (logged): events are a view of
    the test, its result is what counts, and it never waits for them longer than a flush."""

    def __init__(self, client: redis.Redis, ttl: int, maxlen: int = EVENTS_MAXLEN) -> None:
        self._client = client
        self._ttl = ttl
        self._maxlen = maxlen
        self._pending: list[tuple[str, list[tuple[str, str]]]] = []
        self._unwritten: dict[str, int] = {}  # job id -> its batches queued or being written
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    def put(self, job_id: str, events: list[tuple[str, str]]) -> None:
        """Queue ``(name, data JSON)`` events of ``job_id`` (returns at once)."""
        with self._changed:
            self._pending.append((job_id, events))
            self._unwritten[job_id] = self._unwritten.get(job_id, 0) + 1
            self._changed.notify_all()

    def flush(self, job_id: str, timeout: float = 1.0) -> bool:
        """Wait until every event queued for ``job_id`` is written (at most ``timeout`` s)."""
        with self._changed:
            return self._changed.wait_for(lambda: job_id not in self._unwritten, timeout)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            try:
                self._write(batch)
            except (RedisError, OSError) as exc:
                log.warning("could not write %d event batches (%s); they are dropped", len(batch), type(exc).__name__)
            except Exception:
                log.exception("could not write %d event batches; they are dropped", len(batch))
            with self._changed:
                for job_id, _ in batch:
                    left = self._unwritten.get(job_id, 1) - 1
                    if left > 0:
                        self._unwritten[job_id] = left
                    else:
                        self._unwritten.pop(job_id, None)
                self._changed.notify_all()

    def _write(self, batch: list[tuple[str, list[tuple[str, str]]]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        keys = set()
        for job_id, events in batch:
            key = EVENTS_KEY.format(job_id)
            keys.add(key)
            for name, data in events:
                pipe.xadd(key, {"e": name, "d": data}, maxlen=self._maxlen, approximate=True)
        for key in keys:
            pipe.expire(key, self._ttl)
        pipe.execute()


@dataclass(frozen=True)
class Entry:
    """One entry of a job's stream: its id (the SSE ``id:``), the event's name and its data."""

    id: str
    event: str
    data: str


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class EventReader:
    """Reads jobs' streams for the API (asyncio), on a pool of its own: a reader blocks its
    connection for up to ``block_max`` s, which must not starve the job store's requests.
    ``connections`` bounds the streams read at once in this process: a read that gets no
    turn within its ``block`` returns nothing, as one that found nothing (its stream then
    sends a heartbeat and tries again)."""

    BATCH = 100

    def __init__(self, redis_url: str, connections: int, block_max: float) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=connections,
            timeout=API_TIMEOUTS["connect"],  # never waited for: the turns below hand out no more
            socket_connect_timeout=API_TIMEOUTS["connect"],
            socket_timeout=block_max + API_TIMEOUTS["read"],
            health_check_interval=10,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._turns = asyncio.Semaphore(connections)

    async def read(self, job_id: str, after: str, block: float | None) -> list[Entry]:
        """The entries of ``job_id``'s stream after the id ``after`` ('0-0': from the first),
        waiting up to ``block`` s for one (None: not waiting, but for a turn)."""
        try:
            async with asyncio.timeout(block if block is not None else API_TIMEOUTS["read"]):
                await self._turns.acquire()
        except TimeoutError:
            if block is None:
                raise
            return []
        try:
            answer: Any = await self._redis.xread(
                {EVENTS_KEY.format(job_id): after},
                count=self.BATCH,
                block=None if block is None else max(1, int(block * 1000)),
            )
        finally:
            self._turns.release()
        entries: list[Entry] = []
        for _key, items in answer or []:
            for entry_id, fields in items:
                values = {_text(k): _text(v) for k, v in fields.items()}
                entries.append(Entry(_text(entry_id), values.get("e", ""), values.get("d", "")))
        return entries

    async def close(self) -> None:
        await self._redis.aclose()
