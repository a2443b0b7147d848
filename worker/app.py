"""The Celery application shared by the API (which sends jobs) and the workers.

Redis is broker and result backend. The result backend is Celery's own with two changes:

- sending a task does not subscribe the sender to the task's result channel: the API
  awaits results itself with ``redis.asyncio`` (see ``worker.jobs``), so the
  subscriptions Celery would make in the API process are never made;
- a final state is written once: the first final result of a job wins, and nothing
  (a redelivered message, a late worker) can replace it with another outcome.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import Any

from celery import Celery
from celery.backends.redis import RedisBackend
from celery.signals import celeryd_init, setup_logging
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.transport import redis as kombu_redis

from worker import logs
from worker.settings import get_settings

log = logging.getLogger(__name__)

QUEUE = "sourcecheck.probes"

# Lua: ends the script with 0 when KEYS[1] (a result key) already holds a final state.
RETURN_IF_FINAL = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' then
    local s = meta['status']
    if s == 'SUCCESS' or s == 'FAILURE' or s == 'REVOKED' then return 0 end
  end
end
"""

# KEYS[1]: the result key; ARGV: value, seconds to live (0: none). Writes and publishes
# unless the key already holds a final state. Returns 1 when written.
WRITE_UNLESS_FINAL = (
    RETURN_IF_FINAL
    + """
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""
)


class ResultBackend(RedisBackend):
    """Celery's Redis result backend: no subscription on sending, final states written once."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None

    def _set(self, key: Any, value: Any, expires: Any = None) -> None:
        if expires is None:
            expires = self.expires
        self.client.eval(WRITE_UNLESS_FINAL, 1, key, value, int(expires or 0))


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, with two changes for workers.

    - Closing it gives nothing back to the queue. (With ack emulation, which the app turns
      off, kombu restored unacknowledged messages when a channel closed, at shutdown or
      when the connection to Redis was lost: a probe still running went to a second
      worker, and with Redis gone the restore failed with an AttributeError that stopped
      the worker instead of letting it reconnect.) A message this worker takes while it
      stops is given back explicitly (worker.tasks: Reject with requeue), and a warm
      shutdown finishes the rest.
    - One Redis client for the channel's publishing (task events, acks) instead of a new
      one per call (see ``conn_or_acquire``).
    """

    do_restore = False

    @functools.cached_property
    def _shared_client(self) -> Any:
        return self._create_client()

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        # kombu makes a new redis.Redis (over the same connection pool) for every event
        # it publishes and every message it acknowledges: a fifth of a worker's CPU per
        # job. A client is thread-safe (each command takes a connection from the pool).
        yield client or self._shared_client

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        # A task that ends after its connection was lost (and replaced) acknowledges on a
        # closed channel; kombu would fail with an AttributeError that stops the worker.
        # There is nothing left to acknowledge: the message left Redis when it was taken.
        if self.closed:
            log.warning("message %s not acknowledged: its connection to Redis was lost meanwhile", delivery_tag)
            return
        super().basic_ack(delivery_tag, multiple=multiple)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if self.closed:
            log.warning("message %s not rejected: its connection to Redis was lost meanwhile", delivery_tag)
            return
        super().basic_reject(delivery_tag, requeue=requeue)


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


# How often a worker tries to reach the broker again while it is down. Celery's own
# schedule backs off to one attempt every 30 s; this one keeps the outage's end within
# a second of the worker's return to work.
RECONNECT_INTERVAL = 1.0


class Consumer(CeleryConsumer):
    """Celery's consumer, reconnecting to the broker every ``RECONNECT_INTERVAL`` s, forever."""

    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=0, interval_step=RECONNECT_INTERVAL, interval_max=RECONNECT_INTERVAL
        )
        return super().ensure_connected(conn)


# Redis timeouts in seconds. Every call to Redis is bounded, so that nothing waits forever
# on a Redis that hangs; a stopped Redis refuses at once, whatever these are. The API
# (see configure_for_api) gives up connecting sooner: a Redis host that is down answers
# 503 within about a second. Reads wait as long as the workers': shorter ones gave false
# 503s on a busy API (an asyncio read also waits for its event loop), so a Redis that
# accepts connections but hangs gets its 503 within ``read`` s.
WORKER_TIMEOUTS = {"connect": 2.0, "read": 5.0}
API_TIMEOUTS = {"connect": 1.0, "read": 5.0}


def _timeouts(connect: float, read: float) -> dict[str, Any]:
    return {
        "redis_socket_connect_timeout": connect,
        "redis_socket_timeout": read,
        "broker_connection_timeout": connect,
        # kombu's Redis connections; the worker's BRPOP waits 1 s, well within ``read``
        # for the worker. No ack emulation: a message leaves Redis when a worker takes it.
        # kombu would otherwise copy each message into an "unacked" hash and delete it
        # again on ack (two round trips per job on the worker's consuming thread: a fifth
        # of its intake rate), only to put it back on the queue after the visibility
        # timeout, when it has long expired. A job lost with its worker is written off at
        # its deadline either way (worker.jobs). The visibility timeout is kept far above
        # every deadline, should the emulation ever be turned back on.
        "broker_transport_options": {
            "ack_emulation": False,
            "visibility_timeout": 3600,
            "socket_connect_timeout": connect,
            "socket_timeout": read,
        },
    }


def configure_for_api(app: Celery) -> None:
    """Redis timeouts for a process that answers HTTP requests: with Redis stopped,
    sending a job fails at once, with its host down within ``API_TIMEOUTS["connect"]`` s,
    hung within ``API_TIMEOUTS["read"]`` s (the API answers 503). Call before the app's
    first use of Redis in that process."""
    app.conf.update(_timeouts(**API_TIMEOUTS))


def create_app() -> Celery:
    settings = get_settings()
    app = Celery(
        "sourcecheck",
        broker=settings.redis_url,
        backend=f"worker.app:ResultBackend+{settings.redis_url}",
        include=["worker.tasks"],
    )
    app.conf.update(
        # Only JSON travels; pickle is never accepted.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=settings.result_ttl_seconds,
        result_extended=False,  # would copy task arguments into the result
        # One result backend (one Redis connection pool) per process, not one per thread:
        # a worker starts up to worker_concurrency threads, and each new backend would
        # open its own pool and look up redis-py's version in the package metadata.
        result_backend_thread_safe=True,
        task_default_queue=QUEUE,
        # Celery threads only wait: the probes run in worker.runner's child processes,
        # which enforce every deadline. See docs/execution-model.md.
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        # A probe is acknowledged when it has run; each thread reserves one message.
        task_acks_late=True,
        task_reject_on_worker_lost=False,  # a probe that kills its process must not loop
        worker_prefetch_multiplier=1,
        # Flower sees tasks from when a worker receives them, and while they run. (Jobs are
        # queued by a Redis script, not send_task: there is no "sent" event; a job still
        # waiting in the queue is counted by the queue's length, not shown in Flower.)
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        # A worker whose broker goes away keeps trying, every RECONNECT_INTERVAL, forever
        # (Celery's default gives up after 100 attempts), and resumes by itself.
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        worker_consumer="worker.app:Consumer",
        broker_transport="worker.app:RedisTransport",
        # Storing a result retries for about 20 s while Redis is unreachable (Celery's
        # Redis backend retry policy, set explicitly here).
        result_backend_transport_options={
            "retry_policy": {"max_retries": 20, "interval_start": 0, "interval_step": 1, "interval_max": 1}
        },
        # A send whose connection broke (Redis restarted) is retried on a new one, briefly.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        **_timeouts(**WORKER_TIMEOUTS),
    )
    return app


@setup_logging.connect
def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    """Workers log through worker.logs (JSON or text, job context, credentials masked)."""
    logs.configure_from_settings(default_level=loglevel)


@celeryd_init.connect
def _early_logging(instance: Any = None, options: Any = None, **_: Any) -> None:
    # Before Celery's own startup warnings (privileges), which would otherwise go to stderr raw.
    fmt = logs.configure_from_settings(default_level=(options or {}).get("loglevel"))
    if instance is not None and fmt == "json":
        instance.quiet = True  # the startup banner is printed, not logged: it would break one object a line


app = create_app()
