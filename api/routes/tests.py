"""Testing a source over HTTP: ``POST .../sources/test``, polling ``GET .../sources/test/{job_id}``,
its live events ``GET .../sources/test/{job_id}/events`` and ``DELETE .../sources/test/{job_id}``
to cancel it (what a test is: api.services.tests; its events: api.services.test_events).

The router is made at startup (:func:`create_router`): the bounds of ``wait``, ``timeout`` and
``max_age`` in its OpenAPI document are settings. Its annotations are evaluated where the
routes are defined, so that FastAPI sees those bounds (hence no ``from __future__ import annotations``).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.admission import AdmissionSlot
from api.deps import CurrentOrg, JobId, get_cipher, job_store
from api.models import ERROR_RESPONSES, ORGANIZATION_ERRORS, TestResult, TestSourceRequest, error_responses
from api.services import test_events, tests
from api.settings import ApiSettings
from worker.jobs import JobView

EVENT_ID_PATTERN = r"^\d{1,20}-\d{1,20}$"


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


def _json_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``error_responses`` for a route whose success is not JSON: FastAPI would document a
    model's errors in the route's media type, so the errors' JSON content is given as such."""
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    return {code: {**ERROR_RESPONSES[code], "content": content} for code in codes}


ERRORS: dict[int | str, dict[str, Any]] = error_responses(*ORGANIZATION_ERRORS)


def _answer(view: JobView, request: Request, response: Response) -> TestResult:
    """200 with the result once it is final; until then 202, with where to poll."""
    if not view.status.final:
        response.status_code = 202
        response.headers["Location"] = str(
            request.url_for("get_test_result", organization_id=view.job.organization_id, job_id=view.job.id)
        )
        response.headers["Retry-After"] = "1"
    return tests.to_result(view)


def create_router(settings: ApiSettings) -> APIRouter:
    router = APIRouter(tags=["Source tests"])
    wait_param = Annotated[
        float | None,
        Query(
            ge=0,
            le=settings.max_wait_seconds,
            description=f"Seconds to wait for the result before answering 202 (default "
            f"{settings.default_wait_seconds:g}, at most {settings.max_wait_seconds:g}; 0 answers at once).",
        ),
    ]
    timeout_param = Annotated[
        float | None,
        Query(
            ge=0.5,
            le=settings.max_timeout_seconds,
            description=f"The probe's deadline in seconds (default {settings.default_timeout_seconds:g}, "
            f"at most {settings.max_timeout_seconds:g}).",
        ),
    ]
    max_age_param = Annotated[
        float | None,
        Query(
            ge=0,
            le=settings.result_ttl_seconds,
            description="Reuse the result of an identical test (same definition, configuration and timeout) that "
            "ended at most this many seconds ago, instead of running it again. Default: always run.",
        ),
    ]

    @router.post(
        "/sources/test",
        response_model=TestResult,
        summary="Test source connectivity",
        description="Verify that a source's credentials and configuration are valid. Tests an existing source by ID "
        "or a new configuration inline. A failed test is a result (200, `status: failed`), not an error. "
        "When the result is not ready within `wait` seconds the answer is 202 with a `Location` to poll.",
        responses={
            200: {
                "description": "The test ran",
                "content": {
                    "application/json": {
                        "examples": {
                            "succeeded": {"value": {"status": "succeeded", "job_info": None}},
                            "failed": {"value": {"status": "failed", "job_info": {"message": "Connection refused"}}},
                        }
                    }
                },
            },
            202: {"model": TestResult, "description": "Still pending or running; poll the `Location` header."},
            **ERRORS,
            **error_responses(429),
        },
    )
    async def test_source(
        org: CurrentOrg,
        body: TestSourceRequest,
        request: Request,
        response: Response,
        wait: wait_param = None,
        timeout: timeout_param = None,
        max_age: max_age_param = None,
    ) -> TestResult:
        admission: AdmissionSlot = request.state.admission  # given by api.admission.AdmissionGate
        view = await tests.test_source(
            organization_id=org.id,
            body=body,
            # Plain calls, not dependencies: FastAPI's resolution of a dependency costs more than these.
            cipher=get_cipher(),
            store=job_store(request),
            admission=admission,
            wait=wait,
            timeout=timeout,
            max_age=max_age,
        )
        return _answer(view, request, response)

    @router.get(
        "/sources/test/{job_id}",
        response_model=TestResult,
        name="get_test_result",
        summary="Get a test's result",
        description="The state of a test sent earlier, in the same shape as the test itself. Answers 202 while it "
        "is pending or running (optionally waiting up to `wait` seconds) and 404 once its result has expired.",
        responses={202: {"model": TestResult, "description": "Still pending or running."}, **ERRORS},
    )
    async def get_test_result(
        org: CurrentOrg, job_id: JobId, request: Request, response: Response, wait: wait_param = None
    ) -> TestResult:
        view = await tests.find_test(organization_id=org.id, job_id=job_id, store=job_store(request), wait=wait)
        return _answer(view, request, response)

    @router.delete(
        "/sources/test/{job_id}",
        response_model=TestResult,
        summary="Cancel a test",
        description="Stop a test: one still queued never starts, a running one is stopped in its probe process. "
        "Answers 200 with the test once it has ended (`failed`, type `cancelled`), or 202 with it as it stands "
        "when it has not ended within 2 s. 409 when it had already ended (`code` `test_ended`) or identical "
        "requests joined it (`test_shared`, see the README); either way the test is unchanged.",
        responses={
            202: {"model": TestResult, "description": "Asked to stop, not ended yet; poll the `Location` header."},
            **ERRORS,
            **error_responses(409),
        },
    )
    async def cancel_test(org: CurrentOrg, job_id: JobId, request: Request, response: Response) -> TestResult:
        view = await tests.cancel_test(organization_id=org.id, job_id=job_id, store=job_store(request))
        return _answer(view, request, response)

    @router.get(
        "/sources/test/{job_id}/events",
        response_class=EventStreamResponse,
        summary="Watch a test's steps as they happen",
        description="Server-Sent Events: `plan` (`{steps}`), `step` when each step starts (`{name, status: "
        "running}`) and ends (`{name, status, duration_ms, message}`), `warning` (`{code, message, hint}`) as "
        "found, then `result`, the poll endpoint's answer, and the stream closes. Each event's `id` is its place "
        "in the stream: reconnect with `Last-Event-ID` (or `last_event_id`) to get only what came after. A test "
        "that has ended replays its events, then its result, while the result lives. An idle stream sends a "
        "`: keepalive` comment regularly; it ends by the test's final deadline.",
        responses={
            200: {
                "description": "The test's events (`text/event-stream`).",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_json_errors(*ORGANIZATION_ERRORS),
        },
    )
    async def get_test_events(
        org: CurrentOrg,
        job_id: JobId,
        request: Request,
        last_event_id: Annotated[
            str | None,
            Query(pattern=EVENT_ID_PATTERN, description="The id of the last event received (as `Last-Event-ID`)."),
        ] = None,
        last_event_id_header: Annotated[
            str | None,
            Header(alias="Last-Event-ID", pattern=EVENT_ID_PATTERN, description="The id of the last event received."),
        ] = None,
    ) -> EventStreamResponse:
        events = await test_events.open_stream(
            organization_id=org.id,
            job_id=job_id,
            store=job_store(request),
            last_event_id=last_event_id_header or last_event_id,
            heartbeat=settings.events_heartbeat_seconds,
        )
        # No caching or buffering on the way (nginx reads X-Accel-Buffering): each event as it comes.
        return EventStreamResponse(events, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
