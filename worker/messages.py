"""The Celery message that runs a job, built without sending it.

The API admits a job and enqueues its message in one Redis script (``worker.jobs``:
checks, records and queues at once, or does nothing), so it needs the message as the
bytes Celery would push onto the queue. They are made by Celery's and kombu's own
functions: Celery's task protocol 2 (``app.amqp.as_task_v2``) and kombu's JSON
serializer and Redis envelope, exactly as ``send_task`` makes them for our queue
(``tests/worker/test_messages.py`` compares the two).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from celery import Celery
from kombu.serialization import dumps as serialize
from kombu.transport.virtual.base import Base64
from kombu.utils.json import dumps as envelope

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
