"""The API's JobStore against a real Redis (tests/servers/redis.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.servers.redis import RedisServer
from worker.app import app
from worker.jobs import JobStore


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
