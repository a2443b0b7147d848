"""What the sync and async clients share: every API call written once, as a generator.

A *flow* yields what it needs done — a :class:`Call` (one HTTP request, answered with
the ``httpx.Response``) or a :class:`Sleep` — and returns the call's result. The sync
client drives flows with ``httpx.Client`` and ``time.sleep``, the async one with
``httpx.AsyncClient`` and ``asyncio.sleep``; an error answer is thrown back into the flow
as the :mod:`~sourcecheck_client.errors` exception, so polling logic lives here only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from sourcecheck_client.errors import APIConnectionError, APIError, PollTimeoutError, ValidationError, parse_retry_after
from sourcecheck_client.models import Source, SourceDefinition, TestRecordPage, TestResult

__version__ = "0.1.0"

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_POLL_TIMEOUT = 120.0
"""Default of ``poll_timeout``: how long ``test_source`` waits, in all, for a final result."""
SERVER_DEFAULT_WAIT = 25.0
"""How long the API waits by default before answering 202 (its ``DEFAULT_WAIT_SECONDS``)."""
SERVER_MAX_WAIT = 60.0
"""The longest the API holds a request (its ``MAX_WAIT_SECONDS``): the read timeout when ``wait`` is not given."""
POLL_WAIT = 10.0
"""``wait`` asked for on each poll: the API holds the poll until the result or this many seconds."""
CANCEL_WAIT = 2.0
"""How long the API holds a cancel for the test to end (then 202)."""
HTTP_TIMEOUT = 30.0
"""Seconds to connect, or to get an answer beyond the ``wait`` the API was asked to hold it."""

T = TypeVar("T")
M = TypeVar("M", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class Call:
    method: str
    url: str  # relative to the base URL, or absolute (a Location on the base URL's origin)
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    holds: float = 0.0  # seconds the API may hold the answer on purpose (wait): added to the read timeout

    def timeout(self, http_timeout: float) -> httpx.Timeout:
        return httpx.Timeout(http_timeout, read=http_timeout + self.holds)


@dataclass(frozen=True)
class Sleep:
    seconds: float


Flow = Generator[Call | Sleep, httpx.Response | None, T]


def segment(value: str, what: str) -> str:
    """``value`` as one URL path segment (never a way to another path)."""
    if not isinstance(value, str) or not value or value in (".", ".."):
        raise ValueError(f"{what} must be a non-empty id, got {value!r}")
    return quote(value, safe="")


def drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except pydantic.ValidationError:
        raise APIError(
            f"The API answered {response.status_code} with a body that is not a {model.__name__}",
            status_code=response.status_code,
        ) from None


def parse_list(model: type[M], response: httpx.Response) -> list[M]:
    try:
        body = response.json()
        return [model.model_validate(item) for item in body["data"]]
    except (ValueError, KeyError, TypeError, pydantic.ValidationError):
        raise APIError(
            f"The API answered {response.status_code} with a body that is not a list of {model.__name__}",
            status_code=response.status_code,
        ) from None


def resolve_settings(api_key: str | None, base_url: str | None) -> tuple[str, httpx.URL]:
    key = api_key if api_key is not None else os.environ.get("SOURCECHECK_TOKEN")
    if not key:
        raise ValueError("an API key is required: pass api_key=... or set SOURCECHECK_TOKEN")
    url = httpx.URL(base_url or os.environ.get("SOURCECHECK_API_URL") or DEFAULT_BASE_URL)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an http(s) URL, got {str(url)!r}")
    return key, url


def default_headers(api_key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {api_key}",
        "Accept": "application/json",
        "User-Agent": f"sourcecheck-client/{__version__}",
    }


class Core:
    """The flows of every API call, for one base URL (and optional default organization)."""

    def __init__(self, base_url: httpx.URL, organization_id: str | None) -> None:
        self.base_url = base_url
        self.organization_id = organization_id

    # --- paths ---------------------------------------------------------------------

    def connectors(self, organization_id: str | None, path: str = "") -> str:
        org = organization_id or self.organization_id
        if not org:
            raise ValueError("organization_id is required (or give organization_id= to the client)")
        return f"/v1/organizations/{segment(org, 'organization_id')}/knowledge/connectors{path}"

    def poll_url(self, location: str | None, organization_id: str | None, job_id: str) -> str:
        """Where to poll a test: its ``Location`` when that is on the base URL (so the
        API key is never sent elsewhere), else the job's path under the base URL."""
        if location:
            target = self.base_url.join(location)
            prefix = self.base_url.path.rstrip("/") + "/"
            same_origin = (target.scheme, target.host, target.port) == (
                self.base_url.scheme,
                self.base_url.host,
                self.base_url.port,
            )
            if same_origin and target.path.startswith(prefix):
                return str(target.copy_with(query=None))
        return self.connectors(organization_id, f"/sources/test/{segment(job_id, 'job_id')}")

    # --- tests ---------------------------------------------------------------------

    def test_source(
        self,
        *,
        organization_id: str | None,
        source_id: str | None,
        source_definition_id: str | None,
        configuration: dict[str, Any] | None,
        workspace_id: str | None,
        name: str | None,
        wait: float | None,
        timeout: float | None,
        max_age: float | None,
        poll: bool,
        poll_timeout: float | None,
    ) -> Flow[TestResult]:
        started = time.monotonic()
        deadline = None if poll_timeout is None else started + poll_timeout
        if poll and wait is None and poll_timeout is not None and poll_timeout < SERVER_DEFAULT_WAIT:
            wait = poll_timeout  # the first answer must come before our own deadline
        body = drop_none(
            {
                "source_id": source_id,
                "source_definition_id": source_definition_id,
                "workspace_id": workspace_id,
                "configuration": configuration,
                "name": name,
            }
        )
        path = self.connectors(organization_id, "/sources/test")
        response = yield Call(
            "POST",
            path,
            drop_none({"wait": wait, "timeout": timeout, "max_age": max_age}),
            body,
            holds=SERVER_MAX_WAIT if wait is None else wait,
        )
        assert response is not None
        result = parse(TestResult, response)
        if result.final or not poll:
            return result
        url = self.poll_url(response.headers.get("location"), organization_id, self._job_id(result))
        return (yield from self._poll(url, result, deadline, parse_retry_after(response.headers.get("retry-after"))))

    def get_test_result(self, *, organization_id: str | None, job_id: str, wait: float | None) -> Flow[TestResult]:
        path = self.connectors(organization_id, f"/sources/test/{segment(job_id, 'job_id')}")
        response = yield Call("GET", path, drop_none({"wait": wait}), holds=SERVER_MAX_WAIT if wait is None else wait)
        assert response is not None
        return parse(TestResult, response)

    def wait_for_result(
        self, *, organization_id: str | None, job_id: str, poll_timeout: float | None
    ) -> Flow[TestResult]:
        deadline = None if poll_timeout is None else time.monotonic() + poll_timeout
        url = self.connectors(organization_id, f"/sources/test/{segment(job_id, 'job_id')}")
        first = yield from self.get_test_result(organization_id=organization_id, job_id=job_id, wait=0)
        if first.final:
            return first
        return (yield from self._poll(url, first, deadline, None))

    def _poll(
        self, url: str, result: TestResult, deadline: float | None, retry_after: float | None
    ) -> Flow[TestResult]:
        """GET ``url`` until the result is final or ``deadline`` passes. Each poll asks the
        API to hold it up to POLL_WAIT seconds, so a result is seen as soon as it exists."""
        poll_wait = POLL_WAIT
        while not result.final:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise PollTimeoutError(
                    f"Test {result.job_id} was still {result.status} after the poll timeout; "
                    "poll it again with its job_id",
                    result=result,
                )
            wait = poll_wait if remaining is None else round(min(poll_wait, remaining), 3)
            sent = time.monotonic()
            try:
                response = yield Call("GET", url, {"wait": wait}, holds=wait)
            except ValidationError as exc:
                if "wait" in exc.fields and poll_wait > 0:  # a server whose longest wait is shorter
                    poll_wait = 0.0
                    continue
                raise
            assert response is not None
            result = parse(TestResult, response)
            retry_after = parse_retry_after(response.headers.get("retry-after")) or retry_after
            if not result.final and (wait <= 0 or time.monotonic() - sent < min(wait, 1.0)):
                # The API did not hold the poll (wait 0, or a server that ignores it): pace ourselves.
                pause = min(retry_after or 1.0, 5.0)
                if deadline is not None:
                    pause = min(pause, max(0.0, deadline - time.monotonic()))
                yield Sleep(pause)
        return result

    @staticmethod
    def _job_id(result: TestResult) -> str:
        if result.job_id is None:
            raise APIError(f"The API answered a {result.status} test without job_info: cannot poll it")
        return result.job_id

    def cancel_test(self, *, organization_id: str | None, job_id: str) -> Flow[TestResult]:
        path = self.connectors(organization_id, f"/sources/test/{segment(job_id, 'job_id')}")
        response = yield Call("DELETE", path, holds=CANCEL_WAIT)
        assert response is not None
        return parse(TestResult, response)

    def events_path(self, organization_id: str | None, job_id: str) -> str:
        return self.connectors(organization_id, f"/sources/test/{segment(job_id, 'job_id')}/events")

    # --- sources and definitions ---------------------------------------------------

    def create_source(
        self,
        *,
        organization_id: str | None,
        source_definition_id: str,
        name: str,
        configuration: dict[str, Any],
        workspace_id: str | None,
    ) -> Flow[Source]:
        body = drop_none(
            {
                "source_definition_id": source_definition_id,
                "name": name,
                "configuration": configuration,
                "workspace_id": workspace_id,
            }
        )
        response = yield Call("POST", self.connectors(organization_id, "/sources"), json=body)
        assert response is not None
        return parse(Source, response)

    def list_sources(self, *, organization_id: str | None, workspace_id: str | None) -> Flow[list[Source]]:
        response = yield Call(
            "GET", self.connectors(organization_id, "/sources"), drop_none({"workspace_id": workspace_id})
        )
        assert response is not None
        return parse_list(Source, response)

    def get_source(self, *, organization_id: str | None, source_id: str) -> Flow[Source]:
        response = yield Call("GET", self.connectors(organization_id, f"/sources/{segment(source_id, 'source_id')}"))
        assert response is not None
        return parse(Source, response)

    def update_source(
        self, *, organization_id: str | None, source_id: str, name: str | None, configuration: dict[str, Any] | None
    ) -> Flow[Source]:
        path = self.connectors(organization_id, f"/sources/{segment(source_id, 'source_id')}")
        response = yield Call("PATCH", path, json=drop_none({"name": name, "configuration": configuration}))
        assert response is not None
        return parse(Source, response)

    def list_source_tests(
        self, *, organization_id: str | None, source_id: str, limit: int | None, offset: int | None
    ) -> Flow[TestRecordPage]:
        path = self.connectors(organization_id, f"/sources/{segment(source_id, 'source_id')}/tests")
        response = yield Call("GET", path, drop_none({"limit": limit, "offset": offset}))
        assert response is not None
        return parse(TestRecordPage, response)

    def delete_source(self, *, organization_id: str | None, source_id: str) -> Flow[None]:
        yield Call("DELETE", self.connectors(organization_id, f"/sources/{segment(source_id, 'source_id')}"))

    def list_definitions(self, *, organization_id: str | None) -> Flow[list[SourceDefinition]]:
        response = yield Call("GET", self.connectors(organization_id, "/source-definitions"))
        assert response is not None
        return parse_list(SourceDefinition, response)

    def get_definition(self, *, organization_id: str | None, definition_id: str) -> Flow[SourceDefinition]:
        path = self.connectors(organization_id, f"/source-definitions/{segment(definition_id, 'definition_id')}")
        response = yield Call("GET", path)
        assert response is not None
        return parse(SourceDefinition, response)


STREAM_CLOSED = "The event stream closed before the test's result"


def transport_error(base_url: httpx.URL, exc: httpx.HTTPError) -> APIError:
    what = type(exc).__name__
    detail = str(exc) or what
    return APIConnectionError(f"Could not get an answer from the API at {base_url}: {detail} ({what})")
