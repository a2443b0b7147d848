"""``GET /readyz``: can this API process serve tests right now?

Three checks, run together, each bounded by ``CHECK_TIMEOUT_SECONDS`` (so the whole answer
takes at most about that long and can be asked every second):

- ``database``: a trivial query on the metadata database (in a thread; while one is still
  stuck, the next ones fail at once instead of piling up threads);
- ``redis``: ``PING`` on the API's Redis connection pool;
- ``workers``: at least one worker heartbeat key is alive. Workers refresh
  ``sourcecheck:worker:<hostname>`` every few seconds with a short TTL and list their
  names in the sorted set ``sourcecheck:workers`` (see ``worker.metrics.Heartbeat``): two
  reads, whatever the number of keys in Redis.

200 ``{"status": "ready", "checks": {...}}``, or 503 ``{"status": "not_ready", "failed":
[names], "checks": {...}}``. Errors name only the exception type: the answer is public.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import Engine

from api.errors import NotReady
from worker.metrics import HEARTBEAT_KEY, HEARTBEAT_TTL, HEARTBEATS_KEY

log = logging.getLogger("sourcecheck.api")

CHECK_TIMEOUT_SECONDS = 0.5
_MAX_WORKERS_LOOKED_AT = 64  # the most recently seen; one alive is enough

_database_busy = threading.Lock()
_last_failed: tuple[str, ...] = ()


def _select_one(engine: Engine) -> None:
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    finally:
        _database_busy.release()


async def check_database(engine: Engine) -> dict[str, Any]:
    if not _database_busy.acquire(blocking=False):
        raise NotReady("the previous database check has not returned yet")
    try:
        future = asyncio.get_running_loop().run_in_executor(None, _select_one, engine)
    except BaseException:
        _database_busy.release()
        raise
    await future
    return {}


async def check_redis(redis: aioredis.Redis) -> dict[str, Any]:
    await redis.ping()
    return {}


async def check_workers(redis: aioredis.Redis) -> dict[str, Any]:
    names = await redis.zrevrange(HEARTBEATS_KEY, 0, _MAX_WORKERS_LOOKED_AT - 1)
    alive = (
        await redis.exists(*[HEARTBEAT_KEY.format(n.decode() if isinstance(n, bytes) else n) for n in names])
        if names
        else 0
    )
    if not alive:
        raise NotReady(f"no worker heartbeat in the last {HEARTBEAT_TTL} s")
    return {"alive": int(alive)}


async def _run(check: Callable[[], Awaitable[dict[str, Any]]], timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            detail = await check()
    except TimeoutError:
        return {"status": "failed", "error": f"no answer within {timeout:g} s"}
    except NotReady as exc:
        return {"status": "failed", "error": str(exc)}
    except Exception as exc:
        return {"status": "failed", "error": type(exc).__name__}
    return {"status": "ok", "duration_ms": round((time.perf_counter() - started) * 1000, 2), **detail}


async def readiness(
    redis: aioredis.Redis, engine: Engine, timeout: float = CHECK_TIMEOUT_SECONDS
) -> tuple[bool, dict[str, Any]]:
    """Run the checks; returns (ready, the body of the answer)."""
    global _last_failed
    database, redis_check, workers = await asyncio.gather(
        _run(lambda: check_database(engine), timeout),
        _run(lambda: check_redis(redis), timeout),
        _run(lambda: check_workers(redis), timeout),
    )
    checks = {"database": database, "redis": redis_check, "workers": workers}
    failed = tuple(name for name, check in checks.items() if check["status"] != "ok")
    if failed != _last_failed:  # log changes only: this is asked every second
        if failed:
            log.warning("not ready: %s", "; ".join(f"{n}: {checks[n]['error']}" for n in failed))
        else:
            log.info("ready again")
        _last_failed = failed
    if failed:
        return False, {"status": "not_ready", "failed": list(failed), "checks": checks}
    return True, {"status": "ready", "checks": checks}
