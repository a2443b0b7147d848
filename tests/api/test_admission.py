"""Admission (api.admission.Admission): a few requests at a time, the newest first."""

from __future__ import annotations

import asyncio

import pytest

from api.admission import Admission


async def _queue_up(admission: Admission, names: list[str], admitted: list[str]) -> list[asyncio.Task[None]]:
    async def one(name: str) -> None:
        await admission.acquire()
        admitted.append(name)

    tasks = []
    for name in names:
        tasks.append(asyncio.create_task(one(name)))
        await asyncio.sleep(0)  # each reaches its wait in the order given
    return tasks


async def test_free_places_are_taken_at_once_and_waiting_requests_go_newest_first() -> None:
    admission = Admission(2)
    admitted: list[str] = []
    tasks = await _queue_up(admission, ["a", "b", "c", "d", "e"], admitted)
    assert admitted == ["a", "b"]
    for _ in range(3):
        admission.release()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert admitted == ["a", "b", "e", "d", "c"]


async def test_a_request_that_gives_up_waiting_leaves_no_hole() -> None:
    admission = Admission(1)
    admitted: list[str] = []
    tasks = await _queue_up(admission, ["a", "b", "c"], admitted)
    tasks[2].cancel()  # the newest waiter's caller went away
    await asyncio.sleep(0)
    admission.release()  # the place goes to the next waiter, not to the cancelled one
    await asyncio.sleep(0)
    assert admitted == ["a", "b"]
    admission.release()
    await admission.acquire()  # the place came back: free again
    assert admitted == ["a", "b"]


async def test_a_request_waits_at_most_wait_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Admission, "WAIT_SECONDS", 0.05)
    admission = Admission(1)
    await admission.acquire()
    with pytest.raises(TimeoutError):
        await admission.acquire()
    admission.release()
    await admission.acquire()  # the one that timed out took nothing with it
