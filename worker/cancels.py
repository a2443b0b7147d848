"""How a worker hears that a test was cancelled: the :class:`CancelWatcher`.

The API marks the job (``sourcecheck:cancel:<id>``) and publishes its id on
``sourcecheck:cancel`` (worker/lua/cancel.lua). One thread per worker process subscribes
to that channel and cancels the job's probe in the runner, if it runs here. Messages sent
while the subscription was down are lost, so on every (re)subscription it also looks up
the marks of the jobs running here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import redis
from redis.exceptions import RedisError

from worker.keys import CANCEL_CHANNEL, CANCEL_KEY

log = logging.getLogger(__name__)


class CancelWatcher:
    """Calls ``cancel(job_id)`` for each job cancelled while ``running()`` lists it or after."""

    def __init__(self, client: redis.Redis, cancel: Callable[[str], object], running: Callable[[], list[str]]) -> None:
        self._client = client
        self._cancel = cancel
        self._running = running
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cancel-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(CANCEL_CHANNEL)
                self._catch_up()
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        self._cancel(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisError, OSError) as exc:
                log.warning("cancel subscription lost (%s); reconnecting", type(exc).__name__)
                self._stopped.wait(1.0)
            except Exception:  # a bug must not end the watcher for good
                log.exception("cancel watcher failed; restarting")
                self._stopped.wait(1.0)
            finally:
                with contextlib.suppress(Exception):  # closing a broken connection: nothing left to do
                    pubsub.close()

    def _catch_up(self) -> None:
        jobs = self._running()
        if not jobs:
            return
        marks = self._client.mget([CANCEL_KEY.format(job_id) for job_id in jobs])
        for job_id, mark in zip(jobs, marks, strict=True):
            if mark is not None:
                self._cancel(job_id)
