"""Testing a source: a request resolved into a job, sent (or joined, or answered from a recent
result), and awaited; and a test sent earlier, looked up.

Identical requests that arrive together in this process join the first one's job before
any of them touches the database or the queue (the job store also joins jobs across API
processes). A request takes a place of the process's admission (api.admission) until a
worker takes its job. Failures of the stores become the API's errors (api.errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

from redis.exceptions import RedisError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.accounts import find_workspace
from api.admission import Admission, AdmissionSlot
from api.db import get_engine, run_db
from api.errors import (
    ApiError,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    TestEnded,
    TestShared,
    TooManyRequests,
)
from api.models import JobInfo, StepInfo, TestResult, TestSourceRequest, WarningInfo
from api.settings import get_api_settings
from api.sources import find_source, merged_configuration, stored_configuration, validate_configuration
from worker import logs
from worker.crypto import Cipher
from worker.jobs import (
    CancelOutcome,
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


async def test_source(
    *,
    organization_id: str,
    body: TestSourceRequest,
    cipher: Cipher,
    store: JobStore,
    admission: AdmissionSlot,
    wait: float | None = None,
    timeout: float | None = None,
    max_age: float | None = None,
) -> JobView:
    """Run the test ``body`` asks for and wait for its result up to ``wait`` seconds (the
    default wait when None); the view returned may not be final yet. ``max_age``: reuse the
    result of an identical test that ended at most this many seconds ago."""
    settings = get_api_settings()
    await admission.acquire()  # after authentication: only an authenticated request takes a place
    deadline = timeout if timeout is not None else settings.default_timeout_seconds
    seconds = settings.default_wait_seconds if wait is None else wait
    key = hashlib.sha256(f"{organization_id}|{deadline}|{max_age}|{body.model_dump_json()}".encode()).hexdigest()
    leader = _leaders.get(key)
    if leader is not None:
        admission.release()  # a joiner sends nothing
        try:
            started = await asyncio.shield(leader)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not leader.cancelled() or (task is not None and task.cancelling()):
                raise
            job, configuration = await _prepare(cipher, organization_id, body, deadline)  # its caller went away
            started = await _start(job, configuration, cipher, store, max_age)
        else:
            if isinstance(started, Job):  # shared with its leader: neither may cancel it for the other
                await _joined(store, started.id)
        return await _when_done(started, store, seconds)
    leader = _leaders[key] = asyncio.get_running_loop().create_future()
    try:
        job, configuration = await _prepare(cipher, organization_id, body, deadline)
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
            return await _when_done(started, store, seconds, sent=job)
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


async def find_test(*, organization_id: str, job_id: str, store: JobStore, wait: float | None = None) -> JobView:
    """The test ``job_id`` of the organization, waiting up to ``wait`` seconds for it to end;
    NotFound when it is unknown, another organization's, or its result has expired."""
    view = await _wait(store, job_id, 0)
    if view is None or view.job.organization_id != organization_id:
        raise NotFound(f"Test job {job_id} not found: the id is unknown or its result has expired")
    if wait and not view.status.final:
        view = await _wait(store, job_id, wait) or view
    return _observed(view)


CANCEL_WAIT_SECONDS = 2.0
"""How long a cancel waits for the test to end before it answers 202 with the test as it stands."""


async def cancel_test(*, organization_id: str, job_id: str, store: JobStore) -> JobView:
    """Stop the organization's test ``job_id``: one not started never will, a running one is
    stopped in its probe process. Returns the test once it has ended (``failed``, type
    ``cancelled``), or as it stands after CANCEL_WAIT_SECONDS. NotFound as for a poll;
    TestEnded when it had ended, TestShared when identical requests joined it: both change nothing."""
    view = await find_test(organization_id=organization_id, job_id=job_id, store=store)
    try:
        outcome = CancelOutcome.FINAL if view.status.final else await store.cancel(view)
    except (RedisError, OSError) as exc:
        log.warning("result store unavailable: %r", exc)
        raise ServiceUnavailable("The result store (Redis) is unavailable; retry shortly") from None
    if outcome == CancelOutcome.FINAL:
        ended = await _wait(store, job_id, 0) or view
        raise TestEnded(f"Test job {job_id} has already ended ({ended.status.value}): nothing to cancel")
    if outcome == CancelOutcome.SHARED:
        raise TestShared(
            f"Test job {job_id} is shared by identical test requests that joined it (coalesced): one caller "
            "cannot cancel it for the others; it ends by its deadline"
        )
    log.info("job %s cancelled (%s)", job_id, outcome.value)
    return await find_test(organization_id=organization_id, job_id=job_id, store=store, wait=CANCEL_WAIT_SECONDS)


def to_result(view: JobView) -> TestResult:
    """The API's answer for a test, final or not."""
    job, result = view.job, view.result
    failure = result.failure if result else None
    duration = (view.ended_at - view.started_at).total_seconds() * 1000 if view.ended_at and view.started_at else None
    info = JobInfo(
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
            StepInfo(name=s.name, status=s.status, duration_ms=s.duration_ms, message=s.message)
            for s in (result.steps if result else [])
        ],
        message=failure.message if failure else None,
        type=failure.type if failure else None,
        retryable=failure.retryable if failure else None,
        hint=failure.hint if failure else None,
        fields=failure.fields if failure else None,
        retry_after_s=failure.retry_after_s if failure else None,
        warnings=[
            WarningInfo(code=w.code, message=w.message, hint=w.hint) for w in (result.warnings if result else [])
        ],
    )
    return TestResult(status=view.status, job_info=info)


def _observed(view: JobView) -> JobView:
    """``view``, counted and logged the first time this process sees it final."""
    job = view.job
    logs.bind(
        job_id=job.id, organization_id=job.organization_id, source_id=job.source_id, definition=job.source_definition_id
    )
    if metrics.count_test(view):
        failure = view.result.failure if view.result else None
        log.info("job %s %s%s", job.id, view.status.value, f" ({failure.type.value})" if failure else "")
    return view


async def _when_done(started: Job | JobView, store: JobStore, seconds: float, sent: Job | None = None) -> JobView:
    if isinstance(started, JobView):  # a recent result, reused on request (max_age)
        return _observed(started)
    logs.bind(job_id=started.id, source_id=started.source_id, definition=started.source_definition_id)
    view = await _wait(store, started.id, seconds, sent=started if started is sent else None)
    if view is None:  # the record vanished: Redis lost its data between send and read
        raise ApiError("The job was lost by the result store")
    return _observed(view)


async def _joined(store: JobStore, job_id: str) -> None:
    try:
        await store.joined(job_id)
    except (RedisError, OSError) as exc:
        log.warning("result store unavailable: %r", exc)
        raise ServiceUnavailable("The result store (Redis) is unavailable; retry shortly") from None


async def _wait(store: JobStore, job_id: str, seconds: float, sent: Job | None = None) -> JobView | None:
    try:
        return await (store.wait(job_id, seconds, sent) if seconds > 0 else store.load(job_id))
    except (RedisError, OSError) as exc:
        log.warning("result store unavailable: %r", exc)
        raise ServiceUnavailable("The result store (Redis) is unavailable; retry shortly") from None


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


def _resolve_in_session(
    cipher: Cipher, organization_id: str, body: TestSourceRequest, timeout: float
) -> tuple[Job, dict[str, Any]]:
    """:func:`_resolve` with a database session of its own, closed before the result is awaited."""
    with Session(get_engine()) as session:
        return _resolve(session, cipher, organization_id, body, timeout)


def _resolve(
    session: Session | None, cipher: Cipher, organization_id: str, body: TestSourceRequest, timeout: float
) -> tuple[Job, dict[str, Any]]:
    settings = get_api_settings()
    workspace_id: str | None
    name: str | None
    if body.source_id is not None:
        assert session is not None
        source = find_source(session, organization_id=organization_id, source_id=body.source_id)
        if body.source_definition_id is not None and body.source_definition_id != source.source_definition_id:
            raise InvalidRequest(
                f"source_definition_id {body.source_definition_id!r} does not match source {source.id} "
                f"({source.source_definition_id})"
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
            session is None
            or find_workspace(session, organization_id=organization_id, workspace_id=body.workspace_id) is None
        ):
            raise NotFound(f"Workspace {body.workspace_id} not found")
        config = validate_configuration(body.source_definition_id, body.configuration)
        definition_id, workspace_id, name = body.source_definition_id, body.workspace_id, body.name
    else:
        raise InvalidRequest(
            "Give source_id to test a stored source, or source_definition_id and configuration to test inline"
        )
    revealed = config.revealed()
    recorded = body.source_id is not None and body.configuration is None  # goes into the source's history
    key = settings.fernet_keys()[0]
    job = new_job(
        organization_id=organization_id,
        source_definition_id=definition_id,
        timeout=timeout,
        queue_timeout=settings.queue_timeout_seconds,
        source_id=body.source_id,
        workspace_id=workspace_id,
        name=name,
        fingerprint=fingerprint(
            key, organization_id, definition_id, timeout, revealed, recorded_for=body.source_id if recorded else None
        ),
        recorded=recorded,
    )
    return job, revealed


async def _start(
    job: Job, configuration: dict[str, Any], cipher: Cipher, store: JobStore, max_age: float | None
) -> Job | JobView:
    """Reuse a recent result (if asked) or send the job (or join one)."""
    settings = get_api_settings()
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
            f"Organization {organization_id} has {settings.org_concurrency_limit} tests in flight, its limit; "
            "retry shortly"
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
