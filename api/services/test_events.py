"""A test's live events as Server-Sent Events (``GET .../sources/test/{job_id}/events``).

The events come from the job's Redis Stream (worker.events), read from ``Last-Event-ID`` on;
each is sent as it is (``id:`` the entry's id, ``event:``, ``data:`` one line of JSON). The
stream's ``end`` entry, or a read that finds the job final, closes it with a ``result``
event: the poll endpoint's answer. An idle stream sends a ``: keepalive`` comment every
heartbeat, and reads the job then: a job past its final deadline is written off by that read
(worker.jobs), so the stream ends by the job's deadline whatever happens to its worker.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from redis.exceptions import RedisError

from api.errors import InvalidRequest
from api.services.tests import find_test, to_result
from worker.events import END
from worker.jobs import JobStore, JobView

_ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")
FIRST = "0-0"
KEEPALIVE = ": keepalive\n\n"


def start_after(last_event_id: str | None) -> str:
    """The stream id to read after: ``Last-Event-ID`` (a Redis Stream entry id) or the start."""
    if last_event_id is None or last_event_id == "":
        return FIRST
    if not _ENTRY_ID.fullmatch(last_event_id):
        raise InvalidRequest("Last-Event-ID must be the id of an event of this stream (as sent: 1712345678901-0)")
    return last_event_id


def frame(event: str, data: str, event_id: str | None = None) -> str:
    """One SSE event; ``data`` is one line of JSON."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


def result_frame(view: JobView, event_id: str | None) -> str:
    return frame("result", to_result(view).model_dump_json(), event_id)


async def open_stream(
    *, organization_id: str, job_id: str, store: JobStore, last_event_id: str | None, heartbeat: float
) -> AsyncIterator[str]:
    """The events of the organization's test ``job_id``, after ``last_event_id``. NotFound
    (raised here, before the stream starts) as the poll endpoint would answer."""
    after = start_after(last_event_id)
    view = await find_test(organization_id=organization_id, job_id=job_id, store=store)
    return _events(view, store, after, heartbeat)


async def _events(view: JobView, store: JobStore, after: str, heartbeat: float) -> AsyncIterator[str]:
    job_id = view.job.id
    last_id = None if after == FIRST else after
    try:
        while True:
            final = view.status.final
            to_deadline = (view.job.deadline_at - datetime.now(UTC)).total_seconds()
            entries = await store.events.read(job_id, after, None if final else max(0.05, min(heartbeat, to_deadline)))
            for entry in entries:
                after = last_id = entry.id
                if entry.event == END:
                    ended = await store.load(job_id)
                    if ended is not None:
                        yield result_frame(ended, entry.id)
                    return
                yield frame(entry.event, entry.data, entry.id)
            if entries:
                continue
            if final:  # every entry read and no end among them: the stream expired or was trimmed
                yield result_frame(view, last_id)
                return
            latest = await store.load(job_id)  # past the deadline, this read writes the job off
            if latest is None:  # its result expired meanwhile: nothing more to tell
                return
            view = latest
            if not view.status.final:  # else: read again without waiting, its last events and end are there
                yield KEEPALIVE
    except (RedisError, OSError):
        return  # the client reconnects with Last-Event-ID and gets what it missed
