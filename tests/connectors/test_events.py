"""What a check tells a watcher as it runs (connectors.base.Watch), and how it is cancelled
(cancel_check), on the real http connector against real sockets."""

from __future__ import annotations

import asyncio
import json

import pytest

from connectors import get_connector, run_check
from connectors.base import CheckResult, ProbeEvent, Watch, cancel_check, event_json
from tests.servers.tcp import HostPort


def told(events: list[ProbeEvent]) -> list[tuple[str, dict[str, object]]]:
    return [(e.event, json.loads(event_json(e))) for e in events]


async def test_a_watcher_is_told_the_plan_each_step_and_the_skipped_ones(closed_port: int) -> None:
    connector = get_connector("http")
    events: list[ProbeEvent] = []
    config = connector.parse_config({"url": f"http://127.0.0.1:{closed_port}/"})
    result = await run_check(connector, config, timeout=5, watch=Watch(events.append))
    assert result.failure is not None and result.failure.type == "connection_refused"
    names = [(kind, data.get("name"), data.get("status")) for kind, data in told(events)]
    assert names == [
        ("plan", None, None),
        ("step", "resolve", "running"),
        ("step", "resolve", "succeeded"),
        ("step", "tcp", "running"),
        ("step", "tcp", "failed"),
        ("step", "tls", "skipped"),
        ("step", "request", "skipped"),
    ]


async def _hung(hung_server: HostPort, watch: Watch) -> asyncio.Task[CheckResult]:
    connector = get_connector("http")
    config = connector.parse_config({"url": f"http://{hung_server.host}:{hung_server.port}/"})
    task = asyncio.create_task(run_check(connector, config, timeout=10, watch=watch))
    await asyncio.sleep(0.5)  # in its request step, which the server never answers
    return task


async def test_a_cancelled_check_ends_cancelled_and_a_late_watcher_is_told_what_it_missed(
    hung_server: HostPort,
) -> None:
    events: list[ProbeEvent] = []
    watch = Watch()
    task = await _hung(hung_server, watch)
    watch.attach(events.append)  # late: told the plan and the steps so far first
    assert [kind for kind, _ in told(events)][:1] == ["plan"]
    assert told(events)[-1] == ("step", {"name": "request", "status": "running"})
    cancel_check(task)
    result = await asyncio.wait_for(task, 1)
    assert result.failure is not None and result.failure.type == "cancelled"
    assert [(s.name, s.status) for s in result.steps][-1] == ("request", "failed")
    assert told(events)[-1][1]["status"] == "failed" and told(events)[-1][1]["message"] == "cancelled"


async def test_a_cancellation_that_is_not_cancel_check_still_raises(hung_server: HostPort) -> None:
    task = await _hung(hung_server, Watch())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
