"""Testing a source: ``POST .../sources/test`` and polling ``GET .../sources/test/{job_id}``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from redis.exceptions import RedisError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.accounts import find_workspace
from api.admission import Admission, AdmissionSlot
from api.db import get_engine, run_db
from api.deps import CurrentOrg, JobId, get_cipher, job_store
from api.errors import ApiError, InvalidRequest, NotFound, ServiceUnavailable, TooManyRequests
from api.models import ORGANIZATION_ERRORS, JobInfo, StepInfo, TestResult, TestSourceRequest, error_responses
from api.settings import get_api_settings
from api.sources import find_source, merged_configuration, stored_configuration, validate_configuration
from worker import logs
from worker.crypto import Cipher
from worker.jobs import (
    Job,
    JobStore,
    JobView,
    OrganizationBusy,
    OrganizationRateLimited,
    fingerprint,
    new_job,
)

log = logging.getLogger("sourcecheck.api")
# Requests being started in this process, by what they ask: identical ones join.
_leaders: dict[str, asyncio.Future[Job | JobView]] = {}
router = APIRouter(tags=["Source tests"])
settings = get_api_settings()

WaitParam = Annotated[
    float | None,
    Query(
        ge=0,
        le=settings.max_wait_seconds,
        description=f"Seconds to wait for the result before answering 202 (default {settings.default_wait_seconds:g}, "
        f"at most {settings.max_wait_seconds:g}; 0 answers at once).",
    ),
]
TimeoutParam = Annotated[
    float | None,
    Query(
        ge=0.5,
        le=settings.max_timeout_seconds,
        description=f"The probe's deadline in seconds (default {settings.default_timeout_seconds:g}, at most {settings.max_timeout_seconds:g}).",
    ),
]

MaxAgeParam = Annotated[
    float | None,
    Query(
        ge=0,
        le=settings.result_ttl_seconds,
        description="Reuse the result of an identical test (same definition, configuration and timeout) that ended "
        "at most this many seconds ago, instead of running it again. Default: always run.",
    ),
]

ERRORS: dict[int | str, dict[str, Any]] = error_responses(*ORGANIZATION_ERRORS)


def cipher_key() -> str:
    return settings.fernet_keys()[0]


def _resolve_in_session(
    cipher: Cipher, organization_id: str, body: TestSourceRequest, timeout: float
) -> tuple[Job, dict[str, Any]]:
    """:func:`_resolve` with a database session of its own, closed before the result is awaited."""
    with Session(get_engine()) as session:
        return _resolve(session, cipher, organization_id, body, timeout)


def _resolve(
    session: Session | None, cipher: Cipher, organization_id: str, body: TestSourceRequest, timeout: float
) -> tuple[Job, dict[str, Any]]:
    workspace_id: str | None
    name: str | None
    if body.source_id is not None:
        assert session is not None
        source = find_source(session, organization_id, body.source_id)
        if body.source_definition_id is not None and body.source_definition_id != source.source_definition_id:
            raise InvalidRequest(
                f"source_definition_id {body.source_definition_id!r} does not match source {source.id} ({source.source_definition_id})"
            )
        configuration = stored_configuration(cipher, source)
        if body.configuration is not None:
            config = merged_configuration(source.source_definition_id, configuration, body.configuration)
        else:
            config = validate_configuration(source.source_definition_id, configuration)
        definition_id, workspace_id, name = source.source_definition_id, source.workspace_id, body.name or source.name
    elif body.source_definition_id is not None:
        if body.configuration is None:
            raise InvalidRequest("configuration is required when testing inline with source_definition_id")
        if body.workspace_id is not None and (
            session is None or find_workspace(session, organization_id, body.workspace_id) is None
        ):
            raise NotFound(f"Workspace {body.workspace_id} not found")
        config = validate_configuration(body.source_definition_id, body.configuration)
        definition_id, workspace_id, name = body.source_definition_id, body.workspace_id, body.name
    else:
        raise InvalidRequest(
            "Give source_id to test a stored source, or source_definition_id and configuration to test inline"
        )
    revealed = config.revealed()
    job = new_job(
        organization_id=organization_id,
        source_definition_id=definition_id,
        timeout=timeout,
        queue_timeout=settings.queue_timeout_seconds,
        source_id=body.source_id,
        workspace_id=workspace_id,
        name=name,
        fingerprint=fingerprint(cipher_key(), organization_id, definition_id, timeout, revealed),
    )
    return job, revealed


def job_info(view: JobView) -> JobInfo:
    job, result = view.job, view.result
    failure = result.failure if result else None
    duration = (view.ended_at - view.started_at).total_seconds() * 1000 if view.ended_at and view.started_at else None
    return JobInfo(
        job_id=job.id,
        source_id=job.source_id,
        source_definition_id=job.source_definition_id,
        workspace_id=job.workspace_id,
        name=job.name,
        timeout_seconds=job.timeout,
        created_at=job.created_at,
        started_at=view.started_at,
        ended_at=view.ended_at,
        duration_ms=round(duration, 2) if duration is not None else None,
        worker=view.worker,
        steps=[
            StepInfo(name=s.name, status=s.status.value, duration_ms=s.duration_ms, message=s.message)
            for s in (result.steps if result else [])
        ],
        message=failure.message if failure else None,
        type=failure.type.value if failure else None,
        retryable=failure.retryable if failure else None,
        hint=failure.hint if failure else None,
    )


def _answer(view: JobView, request: Request, response: Response) -> TestResult:
    job = view.job
    logs.bind(
        job_id=job.id, organization_id=job.organization_id, source_id=job.source_id, definition=job.source_definition_id
    )
    if metrics.count_test(view):  # the first time this process answers the job final
        failure = view.result.failure if view.result else None
        log.info("job %s %s%s", job.id, view.status.value, f" ({failure.type.value})" if failure else "")
    if not view.status.final:
        response.status_code = 202
        response.headers["Location"] = str(
            request.url_for("get_test_result", organization_id=view.job.organization_id, job_id=view.job.id)
        )
        response.headers["Retry-After"] = "1"
    return TestResult(status=view.status.value, job_info=job_info(view))


async def _wait(store: JobStore, job_id: str, seconds: float, sent: Job | None = None) -> JobView | None:
    try:
        return await (store.wait(job_id, seconds, sent) if seconds > 0 else store.load(job_id))
    except (RedisError, OSError) as exc:
        log.warning("result store unavailable: %r", exc)
        raise ServiceUnavailable("The result store (Redis) is unavailable; retry shortly") from None


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
    wait: WaitParam = None,
    timeout: TimeoutParam = None,
    max_age: MaxAgeParam = None,
) -> TestResult:
    # Plain calls, not dependencies: FastAPI's resolution of a dependency costs more than these.
    cipher, store = get_cipher(), job_store(request)
    admission: AdmissionSlot = request.state.admission  # given by api.admission.AdmissionGate
    await admission.acquire()  # after the dependencies: only an authenticated request takes a place
    deadline = timeout if timeout is not None else settings.default_timeout_seconds
    seconds = settings.default_wait_seconds if wait is None else wait
    # Identical requests that arrive together join the first one's job before any of them
    # touches the database or the queue (the store also joins jobs across API processes).
    key = hashlib.sha256(f"{org.id}|{deadline}|{max_age}|{body.model_dump_json()}".encode()).hexdigest()
    leader = _leaders.get(key)
    if leader is not None:
        admission.release()  # a joiner sends nothing
        try:
            started = await asyncio.shield(leader)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not leader.cancelled() or (task is not None and task.cancelling()):
                raise
            job, configuration = await _prepare(cipher, org.id, body, deadline)  # its caller went away
            started = await _start(job, configuration, cipher, store, max_age)
        return await _answer_when_done(started, store, seconds, request, response)
    leader = _leaders[key] = asyncio.get_running_loop().create_future()
    try:
        job, configuration = await _prepare(cipher, org.id, body, deadline)
        # Awaited before it is sent: its result cannot be published unseen.
        with store.awaiting(job.id) as published:
            started = await _start(job, configuration, cipher, store, max_age)
            leader.set_result(started)
            hold = min(Admission.HOLD_SECONDS, seconds) if started is job else 0
            if hold > 0:  # sent: keep the place until a worker takes it (see Admission), within `wait`
                held_since = asyncio.get_running_loop().time()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(hold):
                        await published.wait()
                seconds = max(0.0, seconds - (asyncio.get_running_loop().time() - held_since))
            admission.release()
            return await _answer_when_done(started, store, seconds, request, response, sent=job)
    except asyncio.CancelledError:
        if not leader.done():
            leader.cancel()
        raise
    except Exception as exc:
        if not leader.done():
            leader.set_exception(exc)
            leader.exception()  # retrieved: joiners re-raise it, nobody logs it as lost
        raise
    finally:
        if _leaders.get(key) is leader:
            del _leaders[key]


async def _answer_when_done(
    started: Job | JobView,
    store: JobStore,
    seconds: float,
    request: Request,
    response: Response,
    sent: Job | None = None,
) -> TestResult:
    if isinstance(started, JobView):  # a recent result, reused on request (max_age)
        return _answer(started, request, response)
    logs.bind(job_id=started.id, source_id=started.source_id, definition=started.source_definition_id)
    view = await _wait(store, started.id, seconds, sent=started if started is sent else None)
    if view is None:  # the record vanished: Redis lost its data between send and read
        raise ApiError("The job was lost by the result store")
    return _answer(view, request, response)


async def _prepare(
    cipher: Cipher, organization_id: str, body: TestSourceRequest, timeout: float
) -> tuple[Job, dict[str, Any]]:
    """Resolve the request into a job and the configuration (secrets in clear) to send; a
    request that names nothing stored is resolved without the database. Validating a
    configuration that holds a PEM block (a private key, certificates) runs in the threadpool,
    off the event loop; one without is plain data, validated in place (a hop costs every test)."""
    if body.source_id is None and body.workspace_id is None:
        if _holds_pem(body.configuration):
            return await run_in_threadpool(_resolve, None, cipher, organization_id, body, timeout)
        return _resolve(None, cipher, organization_id, body, timeout)
    return await run_db(_resolve_in_session, cipher, organization_id, body, timeout)


def _holds_pem(value: Any) -> bool:
    """Whether a (size-bounded) configuration has a PEM block anywhere in it."""
    if isinstance(value, str):
        return "-----BEGIN" in value
    if isinstance(value, dict):
        return any(_holds_pem(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_pem(item) for item in value)
    return False


async def _start(
    job: Job, configuration: dict[str, Any], cipher: Cipher, store: JobStore, max_age: float | None
) -> Job | JobView:
    """Reuse a recent result (if asked) or send the job (or join one)."""
    if max_age is not None and job.fingerprint:
        try:
            recent = await store.recent(job.fingerprint, max_age)
        except (RedisError, OSError):
            raise ServiceUnavailable("The result store (Redis) is unavailable; retry shortly") from None
        if recent is not None:
            return recent
    organization_id = job.organization_id
    try:
        sent = await store.submit(
            cipher,
            job,
            configuration,
            settings.result_ttl_seconds,
            settings.org_concurrency_limit,
            settings.org_tests_per_minute,
        )
    except OrganizationRateLimited as exc:
        raise TooManyRequests(
            f"Organization {organization_id} started {exc.limit} tests in the last minute, its limit; "
            f"retry in {exc.retry_after} s",
            retry_after=exc.retry_after,
        ) from None
    except OrganizationBusy:
        raise TooManyRequests(
            f"Organization {organization_id} has {settings.org_concurrency_limit} tests in flight, its limit; retry shortly"
        ) from None
    except (RedisError, OSError) as exc:
        log.warning("test queue unavailable: %r", exc)
        raise ServiceUnavailable("The test queue (Redis) is unavailable; nothing was enqueued, retry shortly") from None
    if sent.id != job.id:
        with logs.bound(
            job_id=sent.id,
            organization_id=organization_id,
            source_id=sent.source_id,
            definition=sent.source_definition_id,
        ):
            log.info("job %s joined an identical job in flight", sent.id)
    return sent


@router.get(
    "/sources/test/{job_id}",
    response_model=TestResult,
    name="get_test_result",
    summary="Get a test's result",
    description="The state of a test sent earlier, in the same shape as the test itself. Answers 202 while it is "
    "pending or running (optionally waiting up to `wait` seconds) and 404 once its result has expired.",
    responses={202: {"model": TestResult, "description": "Still pending or running."}, **ERRORS},
)
async def get_test_result(
    org: CurrentOrg, job_id: JobId, request: Request, response: Response, wait: WaitParam = None
) -> TestResult:
    store = job_store(request)
    view = await _wait(store, job_id, 0)
    if view is None or view.job.organization_id != org.id:
        raise NotFound(f"Test job {job_id} not found: the id is unknown or its result has expired")
    if wait and not view.status.final:
        view = await _wait(store, job_id, wait) or view
    return _answer(view, request, response)
