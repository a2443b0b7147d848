"""The one place the worker relies on kombu's internals (its Redis transport).

- ``Channel.do_restore``: a closing channel (at shutdown, or when Redis is lost) would put
  the messages of probes still running back on the queue for a second worker, and with
  Redis gone the restore fails with an error that stops the worker; turned off.
- ``Channel.conn_or_acquire`` / ``Channel._create_client``: kombu makes a new Redis client
  for every event it publishes and every message it acknowledges; one shared client
  (thread-safe: each command takes a connection from the pool) saves that per job.
- ``Channel.basic_ack`` / ``Channel.basic_reject``: a task that ends after its connection
  was replaced acknowledges on a closed channel, which fails with an error that stops the
  worker; there is nothing left to acknowledge (the message left Redis when it was taken).
- ``task_message`` and ``queue_key``: the API queues a job inside the Redis script that
  admits it, so it builds the bytes ``send_task`` would push. The headers, properties and
  body are Celery's documented message protocol v2 (``app.amqp.as_task_v2``); the JSON
  envelope around them, its base64 body and the list it goes on are kombu's Redis
  transport's (``tests/worker/test_messages.py`` compares the two).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from celery import Celery
from kombu.serialization import dumps as serialize
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual.base import Base64
from kombu.utils.json import dumps as envelope

PRIVATE_NAMES = [
    "kombu.transport.redis:Channel.do_restore",
    "kombu.transport.redis:Channel.conn_or_acquire",
    "kombu.transport.redis:Channel._create_client",
    "kombu.transport.redis:Channel.basic_ack",
    "kombu.transport.redis:Channel.basic_reject",
    "kombu.transport.redis:Channel._q_for_pri",
    "kombu.transport.virtual.base:Base64",
]

log = logging.getLogger(__name__)


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel: restores nothing on close, shares one client, and tolerates
    an acknowledgement on a channel whose connection was lost."""

    do_restore = False

    @functools.cached_property
    def _shared_client(self) -> Any:
        return self._create_client()

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield client or self._shared_client

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
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


def queue_key(queue: str) -> str:
    """The Redis list that holds ``queue``'s messages of priority 0 (kombu pops its right end)."""
    return queue


_BASE64 = Base64()


def task_message(
    app: Celery, queue: str, task: str, task_id: str, args: list[Any], *, expires: datetime, argsrepr: str
) -> str:
    """The payload a Redis-transport ``send_task(task, args, task_id=...)`` would push onto ``queue``."""
    headers, properties, body, _ = app.amqp.as_task_v2(
        task_id,
        task,
        args=args,
        kwargs={},
        expires=expires,
        argsrepr=argsrepr,
        kwargsrepr="{}",
        ignore_result=None,  # as send_task leaves it: the task's own setting applies
    )
    content_type, content_encoding, data = serialize(body, serializer=app.conf.task_serializer)
    properties.update(
        delivery_mode=2,  # persistent, as Celery's default exchange sends them
        priority=0,
        delivery_info={"exchange": "", "routing_key": queue},
        body_encoding="base64",
        delivery_tag=str(uuid.uuid4()),  # what the worker acknowledges the message by
    )
    return str(
        envelope(
            {
                "body": _BASE64.encode(data if isinstance(data, bytes) else data.encode(content_encoding)),
                "content-encoding": content_encoding,
                "content-type": content_type,
                "headers": headers,
                "properties": properties,
            }
        )
    )
