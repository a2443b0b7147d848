"""Server-Sent Events, read from lines: what the sync and async ``stream_test`` share.

:class:`EventParser` is fed a stream's lines and returns each complete event as the
client's typed model (:data:`~sourcecheck_client.models.TestEvent`); comments (heartbeats)
and events of names this client does not know (a newer server's) are skipped.
"""

from __future__ import annotations

import json

import pydantic

from sourcecheck_client.errors import APIError
from sourcecheck_client.models import PlanEvent, ResultEvent, StepEvent, TestEvent, TestResult, WarningEvent

MAX_EVENT_BYTES = 1 << 20
"""The most one event's data may hold: more is a broken or hostile server, not a test."""

_MODELS: dict[str, type[PlanEvent] | type[StepEvent] | type[WarningEvent]] = {
    "plan": PlanEvent,
    "step": StepEvent,
    "warning": WarningEvent,
}


class EventParser:
    """Turns lines (without their line ending) into events; remembers the last event id."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._id: str | None = None

    def feed(self, line: str) -> TestEvent | None:
        """The event that ``line`` completes, if any."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the server's heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._size += len(value)
            if self._size > MAX_EVENT_BYTES:
                raise APIError(f"The API sent an event larger than {MAX_EVENT_BYTES} bytes")
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> TestEvent | None:
        event, data, event_id = self._event or "message", "\n".join(self._data), self._id
        self._event, self._data, self._size, self._id = "", [], 0, None
        if event_id is not None:
            self.last_id = event_id
        if not data:
            return None
        try:
            if event == "result":
                return ResultEvent(id=event_id, result=TestResult.model_validate_json(data))
            model = _MODELS.get(event)
            if model is None:
                return None  # an event this client does not know
            return model.model_validate({**json.loads(data), "id": event_id, "event": event})
        except (ValueError, pydantic.ValidationError):
            raise APIError(f"The API sent a {event} event that is not valid") from None


STREAM_READ_TIMEOUT = 60.0
"""Seconds without a byte (the server sends a heartbeat every 15 s) before a stream is taken for dead."""


class Reconnects:
    """When a stream breaks before its result: the headers of the next attempt (from the
    last event id) and how long to wait first, until ``limit`` attempts in a row failed."""

    def __init__(self, parser: EventParser, limit: int) -> None:
        self._parser = parser
        self._limit = limit
        self._failures = 0

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self._parser.last_id:
            headers["Last-Event-ID"] = self._parser.last_id
        return headers

    def progressed(self) -> None:
        self._failures = 0

    def pause(self, why: APIError) -> float:
        """Seconds to wait before the next attempt; raises ``why`` once there are no attempts left."""
        self._failures += 1
        if self._failures > self._limit:
            raise why
        return min(0.5 * self._failures, 5.0)
