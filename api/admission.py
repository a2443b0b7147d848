"""Admission of test requests: how many of an API process's requests go from arrival to a
worker at once, and in which order (see :class:`Admission`)."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ServiceUnavailable, send_error


class Admission:
    """How many requests of this process are between their arrival and a worker at once.

    A request holds its place from before it is authenticated until a worker has started
    its job (at most ``HOLD_SECONDS``, and within the request's ``wait``: ``wait=0`` still
    answers at once), so this process queues at most ``slots`` jobs ahead of the workers
    (``wait=0`` requests aside): a burst waits here, not in the queue. Without
    it, a burst would be read whole before any of it was sent (each request runs until
    its first wait for Redis), then queued whole, and a test sent behind it would wait
    for the workers to start the entire burst first.

    Waiting requests are admitted newest first: with no backlog that changes nothing; in
    a burst, a request that just arrived goes next, so a quick test stays quick while a
    thousand slow ones are being started. One that waits ``WAIT_SECONDS`` gets 503.
    """

    HOLD_SECONDS = 1.0
    WAIT_SECONDS = 30.0

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: list[asyncio.Future[None]] = []  # a stack: the newest at the end

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            async with asyncio.timeout(self.WAIT_SECONDS):
                await turn
        except (asyncio.CancelledError, TimeoutError):
            if turn.done() and not turn.cancelled():
                self.release()  # admitted as it gave up: pass the place on
            else:
                self._waiting.remove(turn)
            raise

    def release(self) -> None:
        while self._waiting:
            turn = self._waiting.pop()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


class AdmissionSlot:
    """A request's place in :class:`Admission`, given back once its job is queued (or it
    failed), at the latest when its answer has been sent."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        if self._admission is not None:
            self._admission.release()
            self._admission = None


TEST_PATH_SUFFIX = "/knowledge/connectors/sources/test"


class AdmissionGate:
    """ASGI middleware: a test request (``POST .../sources/test``) takes its place in
    :class:`Admission` before anything else is done for it (routing, parsing,
    authentication), so a burst that waits here costs almost nothing until its turn. The
    route finds the place in ``request.state.admission`` and gives it back as soon as its
    job has been started; the gate gives it back otherwise, when the answer is sent."""

    def __init__(self, app: ASGIApp, slots: int) -> None:
        self.app = app
        self.admission = Admission(slots)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(TEST_PATH_SUFFIX):
            await self.app(scope, receive, send)
            return
        try:
            await self.admission.acquire()
        except TimeoutError:
            await send_error(ServiceUnavailable("Too many tests are being started; retry shortly", retry_after=1), send)
            return
        slot = AdmissionSlot(self.admission)
        scope.setdefault("state", {})["admission"] = slot
        try:
            await self.app(scope, receive, send)
        finally:
            slot.release()
