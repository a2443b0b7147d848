"""The Celery application shared by the API (which sends jobs) and the workers.

Redis is broker and result backend. The result backend is Celery's own with two changes:

- sending a task does not subscribe the sender to the task's result channel: the API
  awaits results itself with ``redis.asyncio`` (see ``worker.jobs``), so the
  subscriptions Celery would make in the API process are never made;
- a final state is written once: the first final result of a job wins, and nothing
  (a redelivered message, a late worker) can replace it with another outcome.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.backends.redis import RedisBackend

from worker.settings import get_settings

QUEUE = "sourcecheck.probes"

# KEYS[1]: the result key; ARGV: value, seconds to live (0: none). Writes and publishes
# unless the key already holds a final state. Returns 1 when written.
WRITE_UNLESS_FINAL = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' then
    local s = meta['status']
    if s == 'SUCCESS' or s == 'FAILURE' or s == 'REVOKED' then return 0 end
  end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


class ResultBackend(RedisBackend):
    """Celery's Redis result backend: no subscription on sending, final states written once."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None

    def _set(self, key: Any, value: Any, expires: Any = None) -> None:
        if expires is None:
            expires = self.expires
        self.client.eval(WRITE_UNLESS_FINAL, 1, key, value, int(expires or 0))


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
        task_default_queue=QUEUE,
        # Celery threads only wait: the probes run in worker.runner's child processes,
        # which enforce every deadline. See docs/execution-model.md.
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        # A probe is acknowledged when it has run; each thread reserves one message.
        task_acks_late=True,
        task_reject_on_worker_lost=False,  # a probe that kills its process must not loop
        worker_prefetch_multiplier=1,
        # Every deadline stays far below the visibility timeout (no redelivery while running).
        broker_transport_options={"visibility_timeout": 3600},
        # Flower sees tasks as soon as they are sent and while they run.
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        redis_socket_connect_timeout=2,
        redis_socket_timeout=5,
        broker_connection_timeout=2,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    )
    return app


app = create_app()
