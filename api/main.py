"""The FastAPI application: routes under ``/v1/organizations/{organization_id}/knowledge/connectors``."""

from __future__ import annotations

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

from api.db import init_db
from api.errors import ApiError, InvalidRequest, PayloadTooLarge, ServiceUnavailable
from api.routes import definitions, sources, tests, workspaces
from api.settings import get_api_settings
from connectors.errors import FieldError
from connectors.registry import all_connectors
from worker.app import app as celery_app
from worker.jobs import JobStore

log = logging.getLogger("sourcecheck.api")

ORG = "/v1/organizations/{organization_id}"
CONNECTORS = f"{ORG}/knowledge/connectors"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_api_settings()
    all_connectors()  # import every connector now, not in the first requests (imports serialize threads)
    init_db()
    store = JobStore(celery_app, settings.redis_url, settings.result_ttl_seconds)
    await store.start()
    app.state.job_store = store
    try:
        yield
    finally:
        await store.close()


class BodySizeLimit:
    """Answers 413 to a request body over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _send_error(PayloadTooLarge(f"The request body is larger than {self.limit} bytes"), send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise PayloadTooLarge(f"The request body is larger than {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


async def _send_error(error: ApiError, send: Send) -> None:
    response = error_response(error)
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "(request)"


def create_app() -> FastAPI:
    settings = get_api_settings()
    app = FastAPI(
        title="sourcecheck",
        version="0.1.0",
        summary="Tells you in seconds whether a data source will work, and if not, what to fix.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    for router in (tests.router, definitions.router, sources.router):
        app.include_router(router, prefix=CONNECTORS)
    app.include_router(workspaces.router, prefix=ORG)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The input values are never echoed: a configuration may hold secrets.
        errors = [FieldError(field=_field(tuple(e.get("loc", ()))), message=str(e.get("msg", "invalid"))) for e in exc.errors()]
        fields = ", ".join(e.field for e in errors)
        return error_response(InvalidRequest(f"The request is not valid: {fields}", errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
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

    return app


app = create_app()
