"""The FastAPI application: routes under ``/v1/organizations/{organization_id}/knowledge/connectors``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError as DatabaseError
from sqlalchemy.exc import TimeoutError as DatabasePoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import console, health, metrics
from api.admission import Admission, AdmissionGate
from api.db import get_engine, init_db
from api.deliveries import Dispatcher
from api.deps import get_cipher
from api.errors import ApiError, InvalidRequest, PayloadTooLarge, ServiceUnavailable, error_response, send_error
from api.recorder import Recorder
from api.routes import definitions, sources, tests, webhooks, workspaces
from api.settings import get_api_settings
from connectors.errors import FieldError
from connectors.registry import all_connectors
from worker import logs
from worker.app import app as celery_app
from worker.app import configure_for_api
from worker.jobs import JobStore

log = logging.getLogger("sourcecheck.api")

ORG = "/v1/organizations/{organization_id}"
CONNECTORS = f"{ORG}/knowledge/connectors"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_api_settings()
    all_connectors()  # import every connector now, not in the first requests (imports serialize threads)
    init_db()
    store = JobStore(
        celery_app,
        settings.redis_url,
        settings.result_ttl_seconds,
        stream_connections=settings.events_streams,
        stream_block_max=settings.events_heartbeat_seconds,
    )
    await store.start()
    app.state.job_store = store
    recorder = Recorder(settings.redis_url, get_engine(), settings)  # the sources' test history (api/recorder.py)
    recorder.start()
    listener = (
        await metrics.serve(settings.metrics_address, settings.metrics_port, store)
        if not _metrics_on_api_port()
        else None
    )
    # What start-up made lives as long as the process: the collector's full collections need
    # not scan it again, which under load stalled requests (docs/benchmarks.md).
    dispatcher = asyncio.create_task(Dispatcher(get_engine(), get_cipher(), settings).run(), name="webhooks")
    gc.freeze()
    try:
        yield
    finally:
        dispatcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dispatcher
        if listener is not None:
            listener.close()
        await recorder.close()
        await store.close()


def _metrics_on_api_port() -> bool:
    """Development serves /metrics on the API's port; production on its own (metrics_port)."""
    return get_api_settings().profile == "development"


class BodySizeLimit:
    """Answers 413 to a request body over ``limit`` bytes, declared or streamed.

    The body is read whole (at most ``limit`` bytes are held) before the app sees it, so a
    body streamed without a Content-Length is refused with 413 too: raised from inside
    the app's read, FastAPI would turn it into a 400.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await send_error(PayloadTooLarge(f"The request body is larger than {self.limit} bytes"), send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: the client left
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.limit:
                await send_error(PayloadTooLarge(f"The request body is larger than {self.limit} bytes"), send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: http.disconnect when the client goes

        await self.app(scope, replay, send)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "(request)"


def create_app() -> FastAPI:
    settings = get_api_settings()
    # JSON or text lines, the request's job ids, credentials masked (worker.logs). Here, not
    # in the lifespan: uvicorn imports the app before its first lines ("Started server process").
    logs.configure_from_settings()
    configure_for_api(celery_app)  # Redis down or hung: a request fails in about a second (503), never hangs
    app = FastAPI(
        title="sourcecheck",
        version="0.1.0",
        summary="Tells you in seconds whether a data source will work, and if not, what to fix.",
        lifespan=lifespan,
    )
    admission = Admission(settings.admission_slots)
    metrics.watch_admission(admission)
    app.add_middleware(AdmissionGate, admission=admission)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    metrics.install(app, on_api_port=_metrics_on_api_port())  # request latency (outermost: sees the 413s too)
    for router in (tests.create_router(settings), definitions.router, sources.router):
        app.include_router(router, prefix=CONNECTORS)
    app.include_router(workspaces.router, prefix=ORG)
    app.include_router(webhooks.router, prefix=ORG)
    app.include_router(console.router)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The input values are never echoed: a configuration may hold secrets.
        errors = [
            FieldError(field=_field(tuple(e.get("loc", ()))), message=str(e.get("msg", "invalid")))
            for e in exc.errors()
        ]
        fields = ", ".join(e.field for e in errors)
        return error_response(InvalidRequest(f"The request is not valid: {fields}", errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not parse the body (e.g. JSON nested past Python's recursion limit)
            return error_response(
                InvalidRequest("The request body could not be parsed: it is not JSON, or nested too deeply")
            )
        error = ApiError(str(exc.detail))
        error.status_code = exc.status_code
        error.code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(error)

    @app.exception_handler(DatabaseError)
    @app.exception_handler(DatabasePoolTimeout)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        log.error("metadata database unavailable: %s", type(getattr(exc, "orig", None) or exc).__name__)
        return error_response(ServiceUnavailable("The metadata database is unavailable; retry shortly"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(ApiError("Something went wrong on our side; it has been logged"))

    @app.get("/healthz", tags=["Health"], summary="The API process is alive")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["Health"],
        summary="The API can serve tests: database, Redis and a worker answer",
        responses={503: {"description": "Not ready: `failed` names the checks that failed"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        ready, body = await health.readiness(request.app.state.job_store.redis, get_engine())
        return JSONResponse(body, status_code=200 if ready else 503)

    return app


app = create_app()
