"""How a worker hears what callers ask of the tests it runs: the :class:`ControlWatcher`.

- a cancel: the API marks the job (``sourcecheck:cancel:<id>``) and publishes its id on
  ``sourcecheck:cancel`` (worker/lua/cancel.lua); the runner cancels the job's probe;
- a watcher: the API marks the job (``sourcecheck:watch:<id>``) and publishes its id on
  ``sourcecheck:watch`` when an event stream opens; the runner has the probe send its
  events from then on (what happened so far first). A job that starts already watched is
  told so by ``BEGIN`` (worker/lua/begin.lua).

One thread per worker process subscribes to both channels. Messages sent while the
subscription was down are lost, so on every (re)subscription it also reads the marks of
the jobs running here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Protocol

import redis
from redis.exceptions import RedisError

from worker.keys import CANCEL_CHANNEL, CANCEL_KEY, WATCH_CHANNEL, WATCH_KEY

log = logging.getLogger(__name__)


class Probes(Protocol):
    """What the watcher asks of the runner (worker.runner.ProbeRunner)."""

    def cancel(self, job_id: str) -> bool: ...
    def watch(self, job_id: str) -> bool: ...
    def running_jobs(self) -> list[str]: ...


class ControlWatcher:
    """Cancels and watches the probes of ``probes`` as callers ask, from a thread of its own."""

    def __init__(self, client: redis.Redis, probes: Probes) -> None:
        self._client = client
        self._probes = probes
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="control-watcher", daemon=True)

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
                pubsub.subscribe(CANCEL_CHANNEL, WATCH_CHANNEL)
                self._catch_up()
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._on(_text(message["channel"]), _text(message["data"]))
            except (RedisError, OSError) as exc:
                log.warning("control subscription lost (%s); reconnecting", type(exc).__name__)
                self._stopped.wait(1.0)
            except Exception:  # a bug must not end the watcher for good
                log.exception("control watcher failed; restarting")
                self._stopped.wait(1.0)
            finally:
                with contextlib.suppress(Exception):  # closing a broken connection: nothing left to do
                    pubsub.close()

    def _on(self, channel: str, job_id: str) -> None:
        if channel == CANCEL_CHANNEL:
            self._probes.cancel(job_id)
        elif channel == WATCH_CHANNEL:
            self._probes.watch(job_id)

    def _catch_up(self) -> None:
        jobs = self._probes.running_jobs()
        if not jobs:
            return
        marks = self._client.mget([key.format(job_id) for key in (CANCEL_KEY, WATCH_KEY) for job_id in jobs])
        cancels, watches = marks[: len(jobs)], marks[len(jobs) :]
        for job_id, cancel, watch in zip(jobs, cancels, watches, strict=True):
            if watch is not None:
                self._probes.watch(job_id)
            if cancel is not None:
                self._probes.cancel(job_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
