"""A test's live events as Server-Sent Events (``GET .../sources/test/{job_id}/events``).

Opening a stream of a test that has not ended marks it watched (worker.control): from then
its worker writes its events to the job's Redis Stream (worker.events), what happened before
first. They are read from ``Last-Event-ID`` on and each is sent as it is (``id:`` the
entry's id, ``event:``, ``data:`` one line of JSON). The stream's ``end`` entry, or a read
that finds the job final, closes it with a ``result`` event: the poll endpoint's answer. A
test nobody watched while it ran has no stream: its history is told from its result, with
ids ``0-1``, ``0-2``... (below any real entry's), so that ``Last-Event-ID`` works alike. An
idle stream sends a ``: keepalive`` comment every heartbeat, and reads the job then: a job
past its final deadline is written off by that read (worker.jobs), so the stream ends by the
job's deadline whatever happens to its worker.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from redis.exceptions import RedisError

from api.errors import InvalidRequest, ServiceUnavailable
from api.services.tests import find_test, to_result
from connectors.base import RUNNING, PlanEvent, ProbeEvent, StepEvent, StepStatus, WarningEvent, event_json
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
    if not view.status.final:
        try:
            await store.watch(job_id)
            # Read again: a job that ended before it was marked watched has no stream end to wake us.
            view = await store.load(job_id) or view
        except (RedisError, OSError):
            raise ServiceUnavailable("The result store (Redis) is unavailable; retry shortly") from None
    return _events(view, store, after, heartbeat)


def told_from_result(view: JobView) -> list[str]:
    """The events of an ended test nobody watched, from its result: the plan, each step's
    start and end, its warnings (their messages masked already, as the result's)."""
    result = view.result
    if result is None or not result.steps:  # it never ran (written off, cancelled before it started)
        return []
    events: list[ProbeEvent] = [PlanEvent(tuple(step.name for step in result.steps))]
    for step in result.steps:
        if step.status != StepStatus.SKIPPED:
            events.append(StepEvent(step.name, RUNNING))
        events.append(StepEvent.ended(step))
    events.extend(WarningEvent(w.code, w.message, w.hint) for w in result.warnings)
    return [frame(e.event, event_json(e), f"0-{i}") for i, e in enumerate(events, start=1)]


def _synthetic(after: str) -> int | None:
    """The place of ``after`` among the ids :func:`told_from_result` gives (0: the start)."""
    first, _, second = after.partition("-")
    return int(second) if first == "0" else None


async def _events(view: JobView, store: JobStore, after: str, heartbeat: float) -> AsyncIterator[str]:
    job_id = view.job.id
    last_id = None if after == FIRST else after
    told = False  # a real event was read: the history is the stream's
    try:
        while True:
            final = view.status.final
            to_deadline = (view.job.deadline_at - datetime.now(UTC)).total_seconds()
            entries = await store.events.read(job_id, after, None if final else max(0.05, min(heartbeat, to_deadline)))
            for entry in entries:
                if entry.event == END:
                    ended = await store.load(job_id)
                    if ended is not None:
                        async for text in _close(ended, after, told, entry.id):
                            yield text
                    return
                told = True
                after = last_id = entry.id
                yield frame(entry.event, entry.data, entry.id)
            if entries:
                continue
            if final:  # every entry read and no end among them: nobody watched it, or its stream expired
                async for text in _close(view, after, told, last_id):
                    yield text
                return
            latest = await store.load(job_id)  # past the deadline, this read writes the job off
            if latest is None:  # its result expired meanwhile: nothing more to tell
                return
            view = latest
            if not view.status.final:  # else: read again without waiting, its last events and end are there
                yield KEEPALIVE
    except (RedisError, OSError, TimeoutError):
        return  # the client reconnects with Last-Event-ID and gets what it missed


async def _close(view: JobView, after: str, told: bool, result_id: str | None) -> AsyncIterator[str]:
    """The end of a stream: the history told from the result when the stream had none, then the result."""
    place = None if told else _synthetic(after)
    if place is not None:
        history = told_from_result(view)
        for text in history[place:]:
            yield text
        result_id = result_id if result_id and _synthetic(result_id) is None else f"0-{len(history) + 1}"
    yield result_frame(view, result_id)
