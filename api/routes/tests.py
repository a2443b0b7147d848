"""Testing a source over HTTP: ``POST .../sources/test`` and polling ``GET .../sources/test/{job_id}``
(what a test is: api.services.tests).

The router is made at startup (:func:`create_router`): the bounds of ``wait``, ``timeout`` and
``max_age`` in its OpenAPI document are settings. Its annotations are evaluated where the
routes are defined, so that FastAPI sees those bounds (hence no ``from __future__ import annotations``).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from api.admission import AdmissionSlot
from api.deps import CurrentOrg, JobId, get_cipher, job_store
from api.models import ORGANIZATION_ERRORS, TestResult, TestSourceRequest, error_responses
from api.services import tests
from api.settings import ApiSettings
from worker.jobs import JobView

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

    return router
