"""The one place the worker relies on Celery's internals.

- ``Consumer.ensure_connected``: Celery offers no setting for the interval at which a
  worker retries its broker (kombu's default backs off to one attempt every 30 s); this
  override keeps the end of a Redis outage within ``RECONNECT_INTERVAL`` of the worker's
  return to work.
"""

from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

PRIVATE_NAMES = ["celery.worker.consumer.consumer:Consumer.ensure_connected"]

# Seconds between a worker's attempts to reach its broker while it is down.
RECONNECT_INTERVAL = 1.0


class Consumer(CeleryConsumer):
    """Celery's consumer, reconnecting to the broker every ``RECONNECT_INTERVAL`` s, forever."""

    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=0, interval_step=RECONNECT_INTERVAL, interval_max=RECONNECT_INTERVAL
        )
        return super().ensure_connected(conn)
