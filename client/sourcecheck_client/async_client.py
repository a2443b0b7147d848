"""The asynchronous client: the same surface as :class:`~sourcecheck_client.Client`, awaited::

from sourcecheck_client import AsyncClient

async with AsyncClient(api_key="sck_...", base_url="http://127.0.0.1:8000") as client:
    result = await client.knowledge_connectors.test_source(organization_id="org_xyz789", source_id="src_abc123")
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx

from sourcecheck_client._core import (
    DEFAULT_POLL_TIMEOUT,
    HTTP_TIMEOUT,
    STREAM_CLOSED,
    Call,
    Core,
    Flow,
    default_headers,
    resolve_settings,
    transport_error,
)
from sourcecheck_client._sse import STREAM_READ_TIMEOUT, EventParser, Reconnects
from sourcecheck_client.errors import APIError, error_from_response
from sourcecheck_client.models import ResultEvent, Source, SourceDefinition, TestEvent, TestRecordPage, TestResult

T = TypeVar("T")


class AsyncClient:
    """An asyncio client of the sourcecheck API (see :class:`~sourcecheck_client.Client`).

    ``api_key`` defaults to ``$SOURCECHECK_TOKEN``, ``base_url`` to ``$SOURCECHECK_API_URL``
    or ``http://127.0.0.1:8000``. ``organization_id``, when given, is used by every call
    that is not given one. ``http_timeout``: seconds to connect or to get an answer (on
    top of any ``wait`` the API was asked to hold it). Close it (``await client.aclose()``, or
    ``async with``) when done.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        organization_id: str | None = None,
        http_timeout: float = HTTP_TIMEOUT,
    ) -> None:
        key, url = resolve_settings(api_key, base_url)
        self._core = Core(url, organization_id)
        self._http_timeout = http_timeout
        self._http = httpx.AsyncClient(base_url=url, headers=default_headers(key), timeout=http_timeout)
        self.knowledge_connectors = AsyncKnowledgeConnectors(self)

    @property
    def base_url(self) -> str:
        return str(self._core.base_url)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, flow: Flow[T]) -> T:
        """Drive a flow of :mod:`sourcecheck_client._core`: send its calls, sleep its sleeps."""
        try:
            step = next(flow)
            while True:
                if isinstance(step, Call):
                    try:
                        response: httpx.Response | None = await self._send(step)
                    except APIError as exc:
                        step = flow.throw(exc)
                        continue
                else:
                    await asyncio.sleep(step.seconds)
                    response = None
                step = flow.send(response)
        except StopIteration as done:
            value: T = done.value
            return value
        finally:
            flow.close()

    async def _send(self, call: Call) -> httpx.Response:
        try:
            response = await self._http.request(
                call.method,
                call.url,
                params=call.params or None,
                json=call.json,
                timeout=call.timeout(self._http_timeout),
            )
        except httpx.HTTPError as exc:
            raise transport_error(self._core.base_url, exc) from exc
        if not response.is_success:
            raise error_from_response(response)
        return response


class AsyncKnowledgeConnectors:
    """``client.knowledge_connectors`` of an AsyncClient: testing sources, stored sources, source definitions."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self.sources = AsyncSources(client)
        self.source_definitions = AsyncSourceDefinitions(client)

    async def test_source(
        self,
        *,
        organization_id: str | None = None,
        source_id: str | None = None,
        source_definition_id: str | None = None,
        configuration: dict[str, Any] | None = None,
        workspace_id: str | None = None,
        name: str | None = None,
        wait: float | None = None,
        timeout: float | None = None,
        max_age: float | None = None,
        poll: bool = True,
        poll_timeout: float | None = DEFAULT_POLL_TIMEOUT,
    ) -> TestResult:
        """Test a stored source (``source_id``, optionally with ``configuration`` overrides,
        not saved) or a configuration inline (``source_definition_id`` + ``configuration``,
        optionally ``workspace_id`` and ``name``).

        ``wait``: seconds the API holds the request for the result before answering 202
        (server default 25). ``timeout``: the probe's deadline (server default 10). ``max_age``:
        reuse the result of an identical test that ended at most this long ago.

        With ``poll`` (the default) a 202 is followed: the result is polled until it is
        final, for at most ``poll_timeout`` seconds in all (None: no limit), after which
        :class:`~sourcecheck_client.errors.PollTimeoutError` is raised. With ``poll=False``
        the first answer is returned, final or not (``result.final``).

        A failed test is returned (``result.succeeded`` is False), never raised.
        """
        return await self._client._run(
            self._client._core.test_source(
                organization_id=organization_id,
                source_id=source_id,
                source_definition_id=source_definition_id,
                configuration=configuration,
                workspace_id=workspace_id,
                name=name,
                wait=wait,
                timeout=timeout,
                max_age=max_age,
                poll=poll,
                poll_timeout=poll_timeout,
            )
        )

    async def get_test_result(
        self, job_id: str, *, organization_id: str | None = None, wait: float | None = None
    ) -> TestResult:
        """The state of a test, as it stands (or once final, if within ``wait`` seconds).
        NotFoundError once its result has expired."""
        return await self._client._run(
            self._client._core.get_test_result(organization_id=organization_id, job_id=job_id, wait=wait)
        )

    async def list_source_tests(
        self, source_id: str, *, limit: int | None = None, offset: int | None = None, organization_id: str | None = None
    ) -> TestRecordPage:
        """The stored source's recorded tests, newest first: ``limit`` (at most 200, 50 by
        default) from ``offset``; ``count`` is how many it has in all."""
        return await self._client._run(
            self._client._core.list_source_tests(
                organization_id=organization_id, source_id=source_id, limit=limit, offset=offset
            )
        )

    async def wait_for_result(
        self, job_id: str, *, organization_id: str | None = None, poll_timeout: float | None = DEFAULT_POLL_TIMEOUT
    ) -> TestResult:
        """Poll a test until it is final (PollTimeoutError after ``poll_timeout`` seconds)."""
        return await self._client._run(
            self._client._core.wait_for_result(
                organization_id=organization_id, job_id=job_id, poll_timeout=poll_timeout
            )
        )

    async def stream_test(
        self,
        job_id: str,
        *,
        organization_id: str | None = None,
        last_event_id: str | None = None,
        reconnects: int = 3,
    ) -> AsyncIterator[TestEvent]:
        """The test's events as they happen (``async for``); see ``Client``'s ``stream_test``."""
        path = self._client._core.events_path(organization_id, job_id)
        parser = EventParser()
        parser.last_id = last_event_id
        attempts = Reconnects(parser, reconnects)
        http = self._client._http
        timeout = httpx.Timeout(self._client._http_timeout, read=STREAM_READ_TIMEOUT)
        while True:
            try:
                async with http.stream("GET", path, headers=attempts.headers(), timeout=timeout) as response:
                    if not response.is_success:
                        await response.aread()
                        raise error_from_response(response)
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            attempts.progressed()
                            yield event
                            if isinstance(event, ResultEvent):
                                return
                why = APIError(STREAM_CLOSED)
            except httpx.HTTPError as exc:
                why = transport_error(self._client._core.base_url, exc)
            await asyncio.sleep(attempts.pause(why))

    async def cancel_test(self, job_id: str, *, organization_id: str | None = None) -> TestResult:
        """Cancel a test (see ``Client``'s ``cancel_test``)."""
        return await self._client._run(self._client._core.cancel_test(organization_id=organization_id, job_id=job_id))


class AsyncSources:
    """``client.knowledge_connectors.sources``: stored sources (secrets masked in every answer)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        source_definition_id: str,
        name: str,
        configuration: dict[str, Any],
        workspace_id: str | None = None,
        organization_id: str | None = None,
    ) -> Source:
        return await self._client._run(
            self._client._core.create_source(
                organization_id=organization_id,
                source_definition_id=source_definition_id,
                name=name,
                configuration=configuration,
                workspace_id=workspace_id,
            )
        )

    async def list(
        self, *, workspace_id: str | None = None, organization_id: str | None = None
    ) -> builtins.list[Source]:
        return await self._client._run(
            self._client._core.list_sources(organization_id=organization_id, workspace_id=workspace_id)
        )

    async def get(self, source_id: str, *, organization_id: str | None = None) -> Source:
        return await self._client._run(
            self._client._core.get_source(organization_id=organization_id, source_id=source_id)
        )

    async def update(
        self,
        source_id: str,
        *,
        name: str | None = None,
        configuration: dict[str, Any] | None = None,
        organization_id: str | None = None,
    ) -> Source:
        """Change the name and/or configuration fields given; a secret sent back masked keeps its value."""
        return await self._client._run(
            self._client._core.update_source(
                organization_id=organization_id, source_id=source_id, name=name, configuration=configuration
            )
        )

    async def delete(self, source_id: str, *, organization_id: str | None = None) -> None:
        await self._client._run(self._client._core.delete_source(organization_id=organization_id, source_id=source_id))


class AsyncSourceDefinitions:
    """``client.knowledge_connectors.source_definitions``: what can be tested, with each schema."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self, *, organization_id: str | None = None) -> builtins.list[SourceDefinition]:
        return await self._client._run(self._client._core.list_definitions(organization_id=organization_id))

    async def get(self, definition_id: str, *, organization_id: str | None = None) -> SourceDefinition:
        return await self._client._run(
            self._client._core.get_definition(organization_id=organization_id, definition_id=definition_id)
        )
