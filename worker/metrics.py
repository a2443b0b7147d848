"""A worker's Prometheus metrics and its heartbeat.

Metrics (served by :func:`start_server` from the Celery worker's main process, on
``SOURCECHECK_WORKER_METRICS_PORT``, default 9808; each worker on a machine needs its own):

- ``sourcecheck_probe_step_duration_seconds{connector,step}``: histogram of each step's
  duration, from the steps of the result the probe child returns (skipped steps are not
  observed);
- ``sourcecheck_probe_duration_seconds{connector}``: histogram of whole probes;
- ``sourcecheck_probes_total{connector,status,type}``: probes run, by outcome (``type`` is
  the failure type, ``none`` when the probe succeeded);
- ``sourcecheck_probes_in_flight``: probes running in this worker's probe processes now;
- plus prometheus_client's ``process_*`` and ``python_*`` of the worker's main process.

Heartbeat: :class:`Heartbeat` keeps ``sourcecheck:worker:<hostname>`` alive (a few seconds
of TTL, refreshed more often than that) and the worker's name in the sorted set
``sourcecheck:workers``, so ``GET /readyz`` can tell in two cheap reads whether any worker
is alive.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from prometheus_client import Counter, Gauge, Histogram, start_http_server
from redis.exceptions import RedisError

from connectors.base import CheckResult, StepStatus

log = logging.getLogger(__name__)

# Probes take from a millisecond (a refused port) to a minute (the largest deadline).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

PROBE_STEP_SECONDS = Histogram(
    "sourcecheck_probe_step_duration_seconds",
    "Duration of one step of a probe.",
    ["connector", "step"],
    buckets=BUCKETS,
)
PROBE_SECONDS = Histogram(
    "sourcecheck_probe_duration_seconds", "Duration of a whole probe.", ["connector"], buckets=BUCKETS
)
PROBES = Counter("sourcecheck_probes", "Probes run by this worker, by outcome.", ["connector", "status", "type"])
IN_FLIGHT = Gauge("sourcecheck_probes_in_flight", "Probes running in this worker's probe processes.")


def observe_probe(connector: str, check: CheckResult) -> None:
    """Record one probe's result."""
    PROBES.labels(connector, check.status, check.failure.type if check.failure else "none").inc()
    PROBE_SECONDS.labels(connector).observe(check.duration_ms / 1000)
    for step in check.steps:
        if step.status != StepStatus.SKIPPED:
            PROBE_STEP_SECONDS.labels(connector, step.name).observe(step.duration_ms / 1000)


def track_in_flight(count: Callable[[], int]) -> None:
    """Report ``count()`` as the in-flight gauge at every scrape."""
    IN_FLIGHT.set_function(lambda: float(count()))


def start_server(port: int, address: str) -> Any | None:
    """Serve /metrics on ``address:port`` from a thread; None (and a warning) when the port
    is taken: the worker runs on without metrics rather than not at all."""
    if not port:
        return None
    try:
        server, _ = start_http_server(port, addr=address)
    except OSError as exc:
        log.warning(
            "worker metrics not served: %s:%s is unavailable (%s); give each worker on this machine "
            "its own SOURCECHECK_WORKER_METRICS_PORT",
            address,
            port,
            exc.strerror or exc,
        )
        return None
    log.info("worker metrics on http://%s:%s/metrics", address, port)
    return server


# --- heartbeat ----------------------------------------------------------------------------

HEARTBEAT_KEY = "sourcecheck:worker:{}"
HEARTBEATS_KEY = "sourcecheck:workers"
HEARTBEAT_SECONDS = 3.0
HEARTBEAT_TTL = 10  # seconds: about three missed beats
_FORGET_AFTER = 86400  # names of workers silent that long leave the sorted set


class Heartbeat:
    """A daemon thread that marks this worker alive in Redis every ``interval`` s."""

    def __init__(
        self,
        client: redis.Redis,
        hostname: str,
        in_flight: Callable[[], int] = lambda: 0,
        interval: float = HEARTBEAT_SECONDS,
        ttl: int = HEARTBEAT_TTL,
    ) -> None:
        self._client = client
        self._hostname = hostname
        self._in_flight = in_flight
        self._interval = interval
        self._ttl = ttl
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="sourcecheck-heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        now = time.time()
        value = json.dumps({"hostname": self._hostname, "pid": os.getpid(), "at": now, "in_flight": self._in_flight()})
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.set(HEARTBEAT_KEY.format(self._hostname), value, ex=self._ttl)
                pipe.zadd(HEARTBEATS_KEY, {self._hostname: now})
                pipe.zremrangebyscore(HEARTBEATS_KEY, "-inf", now - _FORGET_AFTER)
                pipe.expire(HEARTBEATS_KEY, _FORGET_AFTER)
                pipe.execute()
        except (RedisError, OSError) as exc:
            if not self._failing:
                log.warning("heartbeat not written (%s); retrying every %g s", type(exc).__name__, self._interval)
            self._failing = True
            return
        if self._failing:
            log.info("heartbeat written again")
        self._failing = False

    def stop(self, timeout: float = 2.0) -> None:
        """Stop beating; the thread then removes the key at once (readiness need not wait
        for the TTL). Safe from a signal handler with ``timeout=0``: no Redis call here."""
        self._stop.set()
        if timeout and self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.beat()
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.delete(HEARTBEAT_KEY.format(self._hostname))
                pipe.zrem(HEARTBEATS_KEY, self._hostname)
                pipe.execute()
        except (RedisError, OSError):
            pass
