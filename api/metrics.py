"""The API's Prometheus metrics, served at ``GET /metrics`` (no authentication, text format):
in development on the API's port, in production only on a listener of its own
(``SOURCECHECK_METRICS_PORT``, :func:`serve`), so the public port does not show them.

- ``sourcecheck_http_request_duration_seconds{method,route,status}``: histogram of request
  latency; ``route`` is the route's template (``/v1/organizations/{organization_id}/...``),
  ``(unmatched)`` for paths no route serves;
- ``sourcecheck_tests_total{definition,status,type}``: tests answered with a final result,
  each job counted once per API process, when the API first sees it final (``type``: the
  failure type, ``none`` when it succeeded);
- ``sourcecheck_queue_depth{queue}``: messages waiting in the Celery queue (``LLEN``, read
  at scrape time within 0.5 s; absent from a scrape when Redis did not answer in time,
  and ``sourcecheck_queue_depth_errors_total`` counts those);
- ``sourcecheck_jobs_awaiting_result``: jobs that requests of this process are waiting on;
- ``sourcecheck_admission_admitted_total`` and ``sourcecheck_admission_waiting``: test
  requests that took a place in the admission gate (only authenticated ones do), and those
  waiting for one now (api.admission);
- ``sourcecheck_history_records_total{outcome}``: final results the history recorder took
  from the stream (``recorded``, ``duplicate``: recorded before, ``dropped``: its source was
  deleted or the entry unreadable) (api/recorder.py);
- ``sourcecheck_status_changes_total{outcome}``: status changes of stored sources
  (``broke``, ``recovered``, ``failure_changed``, ``warnings_changed``; api/services/changes.py);
- ``sourcecheck_webhook_deliveries_total{outcome}``: webhook attempts this process sent, by
  outcome: ``succeeded`` (2xx), ``retrying`` (failed, another attempt is scheduled),
  ``failed`` (the last attempt failed) — no label per webhook or source;
- plus prometheus_client's ``process_*`` and ``python_*``.

Each API process has its own numbers: scrape every process (not one behind a load balancer);
in production each API process on a machine needs its own metrics port.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Iterator

import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.admission import Admission
from worker import logs
from worker.app import QUEUE
from worker.jobs import JobStore, JobView

SCRAPE_TIMEOUT_SECONDS = 0.5
# The metrics listener reads a request head of at most this many bytes, within this time.
SCRAPE_HEAD_BYTES = 8192
SCRAPE_HEAD_SECONDS = 5.0
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
_ORG_IN_PATH = re.compile(r"^/v1/organizations/(org_[A-Za-z0-9_-]{1,64})(?:/|$)")
# The Redis lists of the queue: kombu keeps one per priority step (the default one is the plain name).
_QUEUE_KEYS = [QUEUE] + [f"{QUEUE}{Channel.sep}{p}" for p in PRIORITY_STEPS if p]

REQUEST_SECONDS = Histogram(
    "sourcecheck_http_request_duration_seconds",
    "Latency of API requests, by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0),
)
TESTS = Counter(
    "sourcecheck_tests",
    "Tests answered with a final result (each job once per API process).",
    ["definition", "status", "type"],
)
WEBHOOK_DELIVERIES = Counter(
    "sourcecheck_webhook_deliveries",
    "Webhook delivery attempts sent by this process, by outcome (succeeded, retrying, failed).",
    ["outcome"],
)
QUEUE_DEPTH_ERRORS = Counter(
    "sourcecheck_queue_depth_errors", "Scrapes where the queue depth could not be read in time."
)
HISTORY_RECORDS = Counter(
    "sourcecheck_history_records", "Final results of stored sources taken by the history recorder.", ["outcome"]
)
STATUS_CHANGES = Counter("sourcecheck_status_changes", "Status changes of stored sources, by outcome.", ["outcome"])


class _ScrapeTime(Collector):
    """The gauges read when /metrics is served (the queue depth is read just before)."""

    def __init__(self) -> None:
        self.depth: int | None = None
        self.store: JobStore | None = None
        self.admission: Admission | None = None

    def collect(self) -> Iterator[Metric]:
        if self.depth is not None:
            depth = GaugeMetricFamily(
                "sourcecheck_queue_depth", "Messages waiting in the Celery queue.", labels=["queue"]
            )
            depth.add_metric([QUEUE], self.depth)
            yield depth
        if self.store is not None:
            yield GaugeMetricFamily(
                "sourcecheck_jobs_awaiting_result",
                "Jobs that requests of this API process are waiting on.",
                value=self.store.waiting(),
            )
        if self.admission is not None:
            yield CounterMetricFamily(
                "sourcecheck_admission_admitted",
                "Test requests that took a place in the admission gate.",
                value=self.admission.admitted,
            )
            yield GaugeMetricFamily(
                "sourcecheck_admission_waiting",
                "Test requests waiting for a place in the admission gate.",
                value=self.admission.waiting(),
            )


_scrape_time = _ScrapeTime()
REGISTRY.register(_scrape_time)

_counted: OrderedDict[str, None] = OrderedDict()
_COUNTED_MAX = 50_000  # job ids remembered so a job polled again is not counted again


def count_test(view: JobView) -> bool:
    """Count a final result the first time this process answers it; True if it was the first."""
    if not view.status.final or view.job.id in _counted:
        return False
    _counted[view.job.id] = None
    if len(_counted) > _COUNTED_MAX:
        _counted.popitem(last=False)
    failure = view.result.failure if view.result else None
    TESTS.labels(view.job.source_definition_id, view.status.value, failure.type.value if failure else "none").inc()
    return True


async def queue_depth(redis: aioredis.Redis) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for key in _QUEUE_KEYS:
            pipe.llen(key)
        return sum(int(n) for n in await pipe.execute())


async def render(store: JobStore | None) -> Response:
    """The metrics in Prometheus' text format, the queue depth read now."""
    depth: int | None = None
    if store is not None:
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
                depth = await queue_depth(store.redis)
        except (RedisError, OSError, TimeoutError):
            QUEUE_DEPTH_ERRORS.inc()
    _scrape_time.depth, _scrape_time.store = depth, store
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class RequestObserver:
    """Times every request (by route template) and binds its organization to the logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: str | None = None  # until a response starts
        org = _ORG_IN_PATH.match(scope.get("path", ""))
        token = logs.bind(organization_id=org.group(1) if org else None)

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except asyncio.CancelledError:
            status = status or "499"  # the client went away first
            raise
        finally:
            route = route_template(scope)
            method = scope.get("method", "GET") if scope.get("method") in _METHODS else "other"
            REQUEST_SECONDS.labels(method, route, status or "500").observe(time.perf_counter() - started)
            logs.reset(token)


def route_template(scope: Scope) -> str:
    """The template of the route that served the request, prefixes of included routers in."""
    # FastAPI >= 0.16x routes into included routers itself and keeps the full template in
    # its effective route context; scope["route"] is then the router-relative route.
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    template = getattr(context, "path_format", None) or getattr(scope.get("route"), "path_format", None)
    return template if isinstance(template, str) and template else "(unmatched)"


def install(app: FastAPI, on_api_port: bool) -> None:
    """Add the request observer (outermost, so it sees every answer) and, if ``on_api_port``,
    ``GET /metrics``."""
    app.add_middleware(RequestObserver)
    if not on_api_port:
        return

    async def metrics(request: Request) -> Response:
        return await render(getattr(request.app.state, "job_store", None))

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)


def watch_admission(admission: Admission) -> None:
    _scrape_time.admission = admission


async def serve(address: str, port: int, store: JobStore) -> asyncio.Server:
    """The metrics listener of production: ``GET /metrics`` on ``address:port``, 404 for
    anything else, one request per connection. It runs on the API's event loop, so it
    reads the queue depth like the route does."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(SCRAPE_HEAD_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            method, path = (head.split(b" ", 2) + [b"", b""])[:2]
            if method == b"GET" and path.split(b"?", 1)[0] == b"/metrics":
                response = await render(store)
                status, body, media = "200 OK", bytes(response.body), CONTENT_TYPE_LATEST
            else:
                status, body, media = "404 Not Found", b"Not Found\n", "text/plain"
            writer.write(
                f"HTTP/1.1 {status}\r\ncontent-type: {media}\r\ncontent-length: {len(body)}\r\n"
                "connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a scraper that does not send a head in time, or too large a one, gets nothing
        finally:
            writer.close()

    return await asyncio.start_server(answer, address, port, limit=SCRAPE_HEAD_BYTES, reuse_address=True)
