"""The message the API queues by script is the one Celery's send_task would have queued."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery

from worker.app import QUEUE
from worker.jobs import TASK_NAME
from worker.seams.kombu import task_message

EXPIRES = datetime.now(UTC) + timedelta(seconds=30)
ARGS = [{"job_id": "job_1", "config": "gAAAA-token", "timeout": 2.0, "fingerprint": None}]


def _celery() -> Celery:
    app = Celery("messages-test", broker="memory://")  # kombu's virtual transport: the Redis envelope, in memory
    app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue=QUEUE)
    return app


def _sent_by_celery(app: Celery) -> dict[str, Any]:
    with app.connection_for_write() as connection:
        app.send_task(
            TASK_NAME,
            args=ARGS,
            task_id="job_1",
            argsrepr="job=job_1",
            kwargsrepr="{}",
            expires=EXPIRES,
            connection=connection,
        )
        message: dict[str, Any] = connection.default_channel._get(QUEUE)
    return message


def test_the_message_is_what_send_task_queues() -> None:
    app = _celery()
    ours = json.loads(task_message(app, QUEUE, TASK_NAME, "job_1", ARGS, expires=EXPIRES, argsrepr="job=job_1"))
    theirs = _sent_by_celery(app)
    assert ours["headers"] == theirs["headers"]
    assert base64.b64decode(ours["body"]) == base64.b64decode(theirs["body"])
    for field in ("content-type", "content-encoding"):
        assert ours[field] == theirs[field]
    for field in ("correlation_id", "delivery_mode", "delivery_info", "priority", "body_encoding"):
        assert ours["properties"][field] == theirs["properties"][field], field


def test_each_message_has_its_own_delivery_tag() -> None:
    app = _celery()
    tags = {
        json.loads(task_message(app, QUEUE, TASK_NAME, "job_1", ARGS, expires=EXPIRES, argsrepr="x"))["properties"][
            "delivery_tag"
        ]
        for _ in range(3)
    }
    assert len(tags) == 3  # the worker acknowledges a message by its tag
