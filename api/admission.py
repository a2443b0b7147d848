"""Admission of test requests: how many of an API process's requests go from arrival to a
worker at once, and in which order (see :class:`Admission`)."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ServiceUnavailable


class Admission:
    """How many requests of this process are between their arrival and a worker at once.

    A request takes its place once it is authenticated (one without a valid API key never
    takes one, so a flood of them keeps nobody waiting) and holds it until a worker has
    started its job (at most ``HOLD_SECONDS``, and within the request's ``wait``: ``wait=0``
    still answers at once), so this process queues at most ``slots`` jobs ahead of the workers
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
        self.admitted = 0  # places taken since start (api.metrics shows it)

    def waiting(self) -> int:
        return len(self._waiting)

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            self.admitted += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            async with asyncio.timeout(self.WAIT_SECONDS):
                await turn
            self.admitted += 1
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
    """A request's place in :class:`Admission`: taken by the route once the request is
    authenticated (:meth:`acquire`), given back once its job is queued (or it failed), at
    the latest when its answer has been sent."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._held = False

    async def acquire(self) -> None:
        """Wait for a place; 503 after ``Admission.WAIT_SECONDS``."""
        try:
            await self._admission.acquire()
        except TimeoutError:
            raise ServiceUnavailable("Too many tests are being started; retry shortly", retry_after=1) from None
        self._held = True

    def release(self) -> None:
        if self._held:
            self._admission.release()
            self._held = False


TEST_PATH_SUFFIX = "/knowledge/connectors/sources/test"


class AdmissionGate:
    """ASGI middleware: gives a test request (``POST .../sources/test``) its
    :class:`AdmissionSlot` in ``request.state.admission``, not yet taken. The route takes
    it after its dependencies (authentication first) and gives it back as soon as its job
    has been started; the gate gives it back otherwise, when the answer is sent."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(TEST_PATH_SUFFIX):
            await self.app(scope, receive, send)
            return
        slot = AdmissionSlot(self.admission)
        scope.setdefault("state", {})["admission"] = slot
        try:
            await self.app(scope, receive, send)
        finally:
            slot.release()
