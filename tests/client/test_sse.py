"""The client's reading of Server-Sent Events, from lines (no server: the parser alone)."""

from __future__ import annotations

import pytest
from sourcecheck_client import APIError, PlanEvent, ResultEvent, StepEvent
from sourcecheck_client._sse import MAX_EVENT_BYTES, EventParser

RESULT = '{"status":"succeeded","job_info":null}'


def feed(parser: EventParser, text: str) -> list[object]:
    return [event for line in text.split("\n") if (event := parser.feed(line)) is not None]


def test_events_are_typed_heartbeats_and_unknown_events_skipped_and_the_last_id_kept() -> None:
    parser = EventParser()
    found = feed(
        parser,
        'id: 1-0\nevent: plan\ndata: {"steps":["tcp"]}\n\n'
        ": keepalive\n\n"
        'id: 2-0\nevent: step\ndata: {"name":"tcp","status":"running"}\n\n'
        'id: 3-0\nevent: from_the_future\ndata: {"x":1}\n\n'
        f"id: 4-0\nevent: result\ndata: {RESULT}\n\n",
    )
    assert found[0] == PlanEvent(id="1-0", steps=["tcp"])
    assert found[1] == StepEvent(id="2-0", name="tcp", status="running")
    assert isinstance(found[1], StepEvent) and found[1].running
    assert isinstance(found[2], ResultEvent) and found[2].result.succeeded and found[2].id == "4-0"
    assert len(found) == 3
    assert parser.last_id == "4-0"


def test_a_malformed_or_oversized_event_is_an_api_error() -> None:
    with pytest.raises(APIError, match="step event"):
        feed(EventParser(), 'event: step\ndata: {"name": 3}\n\n')
    parser = EventParser()
    with pytest.raises(APIError, match="larger than"):
        for _ in range(MAX_EVENT_BYTES // 1000 + 2):
            parser.feed("data: " + "x" * 1000)
