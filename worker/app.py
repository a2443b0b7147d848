"""The Celery application shared by the API (which queues jobs) and the workers.

Redis is the broker. Job state (started, final result) lives in our own Redis keys
(``worker.jobs``), written by our own scripts; Celery's result backend only serves the
no-op task of ``make bench``: the probe task stores nothing there.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import celeryd_init, setup_logging

from worker import logs
from worker.settings import get_settings

log = logging.getLogger(__name__)

QUEUE = "sourcecheck.probes"
TASK_NAME = "sourcecheck.run_probe"  # the task that runs a job (worker.tasks.run_probe)

# Redis timeouts in seconds: every call to Redis is bounded, so nothing waits forever on a
# Redis that hangs (a stopped Redis refuses at once). The API gives up connecting sooner,
# so a Redis host that is down is a prompt 503; its reads wait as long as the workers'
# because a busy API's reads also wait for its event loop.
WORKER_TIMEOUTS = {"connect": 2.0, "read": 5.0}
API_TIMEOUTS = {"connect": 1.0, "read": 5.0}


def _timeouts(connect: float, read: float) -> dict[str, Any]:
    return {
        "redis_socket_connect_timeout": connect,
        "redis_socket_timeout": read,
        "broker_connection_timeout": connect,
        # No ack emulation: a message leaves Redis when a worker takes it. The emulation
        # would cost two round trips per job, only to restore a message after the
        # visibility timeout, long after its job was written off (worker.jobs). The
        # visibility timeout stays far above every deadline, should it be turned back on.
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
    app = Celery("sourcecheck", broker=settings.redis_url, backend=settings.redis_url, include=["worker.tasks"])
    app.conf.update(
        # Only JSON travels; pickle is never accepted.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=settings.result_ttl_seconds,
        result_extended=False,  # would copy task arguments into the result
        # One result backend (one Redis connection pool) per process, not one per thread.
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
        # A worker whose broker goes away keeps trying, forever (Celery's default gives up
        # after 100 attempts), and resumes by itself.
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        worker_consumer="worker.seams.celery:Consumer",
        broker_transport="worker.seams.kombu:RedisTransport",
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
