"""The history recorder (api/recorder.py) against a real Redis of its own and real databases.

Results go into the stream the real way: a job record in Redis and ``Reporter.finish``
(``worker/lua/finish.lua``), as a worker writes them. The database outage is real: the
recorder reaches PostgreSQL through a TCP proxy the test cuts and restores.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import URL, Engine, create_engine
from sqlmodel import Session, select

from api import history
from api import recorder as recorder_module
from api.db import upgrade_schema
from api.models import Organization, Source, TestRecord, Workspace
from api.recorder import Recorder
from api.services.changes import ChangeKind, StatusChange
from api.settings import ApiSettings
from api.sources import delete_source, find_source
from connectors.base import CheckResult, CheckStatus, CheckWarning, Failure, Step, StepStatus
from connectors.errors import FailureType, WarningCode
from tests.servers import free_port
from tests.servers.postgres import PostgresServer
from tests.servers.redis import RedisServer
from tests.servers.tcp import HostPort, TcpProxy
from worker.app import app as celery_app
from worker.jobs import JobStore
from worker.keys import HISTORY_GROUP, HISTORY_STREAM, JOB_KEY
from worker.model import Job, new_job
from worker.records import final_record
from worker.reporting import Reporter

ORG = "org_rec"


@pytest.fixture(scope="module")
def redis_own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this module's own: the session's stack has a recorder on the shared one."""
    server = RedisServer(port=free_port(), directory=tmp_path_factory.mktemp("recorder-redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis(redis_own: RedisServer) -> Iterator[RedisServer]:
    redis_own.client().flushall()
    yield redis_own


def _prepare(engine: Engine) -> None:
    upgrade_schema(engine)
    with Session(engine) as session:
        session.add(Organization(id=ORG, name="Recorder"))
        session.add(Workspace(id="ws_rec", organization_id=ORG, name="default", is_default=True))
        session.commit()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'history.db'}")
    _prepare(engine)
    yield engine
    engine.dispose()


def add_source(engine: Engine, source_id: str | None = None) -> str:
    source_id = source_id or f"src_{uuid.uuid4().hex[:12]}"
    with Session(engine) as session:
        session.add(
            Source(
                id=source_id,
                organization_id=ORG,
                workspace_id="ws_rec",
                source_definition_id="faulty",
                name="s",
                configuration_encrypted="x",
            )
        )
        session.commit()
    return source_id


def settings(**values: Any) -> ApiSettings:
    return ApiSettings(**values)


@pytest.fixture
async def make_recorder(redis: RedisServer) -> AsyncIterator[Any]:
    made: list[Recorder] = []

    def make(engine: Engine, consumer: str | None = None, **values: Any) -> Recorder:
        recorder = Recorder(redis.url, engine, settings(**values), consumer=consumer)
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        await recorder.close()


def check(
    status: str = "succeeded", failure: FailureType | None = None, warning: WarningCode | None = None
) -> CheckResult:
    return CheckResult(
        status=CheckStatus(status),
        steps=[Step(name="resolve", status=StepStatus.SUCCEEDED, duration_ms=1.5, message="ok")],
        failure=Failure.of(failure, "it failed", fields=["password"]) if failure else None,
        warnings=[CheckWarning(code=warning, message="soon", hint="renew")] if warning else [],
    )


def finish(
    redis: RedisServer,
    source_id: str | None,
    result: CheckResult,
    *,
    recorded: bool = True,
    ended_at: datetime | None = None,
) -> Job:
    """A job of ``source_id`` finished by a worker, as the worker does it."""
    job = new_job(organization_id=ORG, source_definition_id="faulty", timeout=1, queue_timeout=1, source_id=source_id)
    job = replace(job, recorded=recorded)
    client = redis.client()
    client.set(JOB_KEY.format(job.id), job.to_json(), ex=60)
    ended = ended_at or datetime.now(UTC)
    record = final_record(result, started_at=ended - timedelta(milliseconds=20), ended_at=ended, worker="w1@host")
    payload = {"job_id": job.id, "organization_id": ORG, "source_id": source_id, "fingerprint": None}
    assert Reporter(client).finish(payload, record, 60)
    return job


def rows(engine: Engine, source_id: str | None = None) -> list[TestRecord]:
    with Session(engine) as session:
        query = select(TestRecord)
        if source_id:
            query = query.where(TestRecord.source_id == source_id)
        return list(session.exec(query.order_by(TestRecord.id)).all())


@pytest.fixture
def changes_seen(monkeypatch: pytest.MonkeyPatch) -> list[StatusChange]:
    """The status changes dispatched (api.services.changes.on_change still runs)."""
    seen: list[StatusChange] = []
    real = recorder_module.changes.on_change

    async def capture(change: StatusChange, sessions: Callable[[], Session]) -> None:
        seen.append(change)
        await real(change, sessions)

    monkeypatch.setattr(recorder_module.changes, "on_change", capture)
    return seen


# --- the hand-off -----------------------------------------------------------------------


def test_only_a_stored_sources_result_goes_into_the_stream_and_only_once(redis: RedisServer) -> None:
    client = redis.client()
    job = finish(redis, "src_a", check())
    finish(redis, None, check(), recorded=False)  # inline
    finish(redis, "src_a", check(), recorded=False)  # with configuration overrides
    record = final_record(
        check("failed", FailureType.TIMEOUT), started_at=None, ended_at=datetime.now(UTC), worker=None
    )
    payload = {"job_id": job.id, "organization_id": ORG, "source_id": "src_a", "fingerprint": None}
    assert not Reporter(client).finish(payload, record, 60)  # a late second result is not stored, nor streamed
    entries = client.xrange(HISTORY_STREAM)
    assert [e[1][b"job_id"].decode() for e in entries] == [job.id]
    fields = entries[0][1]
    assert fields[b"source_id"] == b"src_a" and fields[b"organization_id"] == ORG.encode()


async def test_a_stored_sources_job_written_off_at_its_deadline_goes_into_the_stream(redis: RedisServer) -> None:
    job = replace(
        new_job(organization_id=ORG, source_definition_id="faulty", timeout=1, queue_timeout=1, source_id="src_w"),
        recorded=True,
        deadline_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    redis.client().set(JOB_KEY.format(job.id), job.to_json(), ex=60)
    store = JobStore(celery_app, redis.url, result_ttl=60)
    try:
        view = await store.load(job.id)  # nobody took it: written off by this read
    finally:
        await store.close()
    assert view is not None and view.result is not None and view.result.failure is not None
    assert view.result.failure.type == FailureType.TIMEOUT
    [(_, fields)] = redis.client().xrange(HISTORY_STREAM)
    assert fields[b"job_id"] == job.id.encode() and b'"timeout"' in fields[b"record"]


# --- recording --------------------------------------------------------------------------


async def test_results_are_recorded_with_their_check_and_acknowledged(
    redis: RedisServer, engine: Engine, make_recorder: Any
) -> None:
    source = add_source(engine)
    job = finish(redis, source, check("failed", FailureType.AUTHENTICATION_FAILED))
    recorder = make_recorder(engine)
    assert await recorder.step(block_ms=100) == 1
    [row] = rows(engine)
    assert (row.job_id, row.source_id, row.status, row.failure_type) == (
        job.id,
        source,
        "failed",
        "authentication_failed",
    )
    assert row.fields == ["password"] and row.message == "it failed" and row.worker == "w1@host"
    assert row.steps == [{"name": "resolve", "status": "succeeded", "duration_ms": 1.5, "message": "ok"}]
    assert row.started_at is not None and row.ended_at > row.started_at
    client = redis.client()
    assert client.xlen(HISTORY_STREAM) == 0  # acknowledged and deleted
    assert client.xpending(HISTORY_STREAM, HISTORY_GROUP)["pending"] == 0


async def test_a_result_delivered_twice_is_recorded_once(
    redis: RedisServer, engine: Engine, make_recorder: Any
) -> None:
    source = add_source(engine)
    finish(redis, source, check())
    client = redis.client()
    [(_, fields)] = client.xrange(HISTORY_STREAM)
    client.xadd(HISTORY_STREAM, fields)  # the same result again (a redelivery)
    recorder = make_recorder(engine)
    while await recorder.step(block_ms=100):
        pass
    assert len(rows(engine)) == 1
    assert client.xlen(HISTORY_STREAM) == 0


async def test_entries_left_pending_by_a_dead_consumer_are_claimed_by_another(
    redis: RedisServer, engine: Engine, make_recorder: Any
) -> None:
    source = add_source(engine)
    jobs = {finish(redis, source, check()).id for _ in range(3)}
    dead = make_recorder(engine, consumer="dead")
    await dead._ensure_group()
    assert len(await dead._read(">", block_ms=None)) == 3  # taken, then the process "dies": never acknowledged
    alive = make_recorder(engine, consumer="alive")
    alive.CLAIM_IDLE_MS = 200
    assert await alive.step(block_ms=50) == 0  # not idle long enough yet: nothing claimed
    await asyncio.sleep(0.3)
    assert await alive.step(block_ms=50) == 3
    assert {row.job_id for row in rows(engine)} == jobs
    assert redis.client().xpending(HISTORY_STREAM, HISTORY_GROUP)["pending"] == 0


async def test_an_unreadable_entry_is_dropped_not_retried_forever(
    redis: RedisServer, engine: Engine, make_recorder: Any
) -> None:
    source = add_source(engine)
    redis.client().xadd(HISTORY_STREAM, {"job": "{not json", "record": "{}"})
    finish(redis, source, check())
    recorder = make_recorder(engine)
    assert await recorder.step(block_ms=100) == 2
    assert len(rows(engine)) == 1
    assert redis.client().xlen(HISTORY_STREAM) == 0


async def test_a_result_of_a_deleted_source_is_dropped_and_deleting_a_source_deletes_its_history(
    redis: RedisServer, engine: Engine, make_recorder: Any
) -> None:
    kept, deleted = add_source(engine), add_source(engine)
    finish(redis, kept, check())
    finish(redis, deleted, check())
    recorder = make_recorder(engine)
    await recorder.step(block_ms=100)
    assert len(rows(engine, deleted)) == 1
    with Session(engine) as session:
        delete_source(session, source=find_source(session, organization_id=ORG, source_id=deleted))
    assert rows(engine, deleted) == [] and len(rows(engine, kept)) == 1
    finish(redis, deleted, check())  # a result that ends after its source was deleted
    assert await recorder.step(block_ms=100) == 1
    assert rows(engine, deleted) == [] and redis.client().xlen(HISTORY_STREAM) == 0


# --- status changes ---------------------------------------------------------------------


async def test_a_status_change_is_dispatched_when_status_type_or_warnings_differ(
    redis: RedisServer, engine: Engine, make_recorder: Any, changes_seen: list[StatusChange]
) -> None:
    source = add_source(engine)
    recorder = make_recorder(engine)
    sequence = [
        (check(), None),  # the first record, a clean success: no news
        (check(), None),
        (check("failed", FailureType.AUTHENTICATION_FAILED), ChangeKind.BROKE),
        (check("failed", FailureType.AUTHENTICATION_FAILED), None),
        (check("failed", FailureType.TIMEOUT), ChangeKind.FAILURE_CHANGED),
        (check(warning=WarningCode.CERTIFICATE_EXPIRING), ChangeKind.RECOVERED),
        (check(warning=WarningCode.CERTIFICATE_EXPIRING), None),
        (check(), ChangeKind.WARNINGS_CHANGED),
    ]
    expected = []
    for result, kind in sequence:
        job = finish(redis, source, result)
        assert await recorder.step(block_ms=100) == 1
        if kind is not None:
            expected.append((job.id, kind))
    assert [(c.current.job_id, c.kind) for c in changes_seen] == expected
    broke = changes_seen[0]
    assert broke.organization_id == ORG and broke.source_id == source
    assert broke.previous is not None and broke.previous.status == "succeeded"
    assert broke.current.status == "failed" and broke.current.type == FailureType.AUTHENTICATION_FAILED
    assert [row.status_changed for row in rows(engine)] == [kind is not None for _, kind in sequence]


async def test_a_sources_first_record_is_a_change_when_it_fails_and_a_late_record_is_none(
    redis: RedisServer, engine: Engine, make_recorder: Any, changes_seen: list[StatusChange]
) -> None:
    source = add_source(engine)
    recorder = make_recorder(engine)
    first = finish(redis, source, check("failed", FailureType.TIMEOUT))
    await recorder.step(block_ms=100)
    finish(redis, source, check("failed", FailureType.TIMEOUT))
    await recorder.step(block_ms=100)
    # A success that ended before the newest record, delivered late: history, not a recovery.
    finish(redis, source, check(), ended_at=datetime.now(UTC) - timedelta(minutes=5))
    await recorder.step(block_ms=100)
    assert [(c.current.job_id, c.kind, c.previous) for c in changes_seen] == [(first.id, ChangeKind.BROKE, None)]
    assert len(rows(engine, source)) == 3


# --- retention --------------------------------------------------------------------------


async def test_pruning_keeps_the_retention_and_the_newest_per_source_once_per_interval(
    redis: RedisServer, engine: Engine, make_recorder: Any
) -> None:
    busy, quiet = add_source(engine), add_source(engine)
    now = datetime.now(UTC)
    for minutes in range(6):
        finish(redis, busy, check(), ended_at=now - timedelta(minutes=minutes))
    finish(redis, quiet, check(), ended_at=now - timedelta(days=3))
    finish(redis, quiet, check(), ended_at=now - timedelta(hours=1))
    recorder = make_recorder(engine, history_retention_days=2, history_max_per_source=4)
    while await recorder.step(block_ms=100):
        pass
    assert len(rows(engine)) == 8
    assert await recorder.prune() == 3
    kept_busy = sorted((r.ended_at for r in rows(engine, busy)), reverse=True)
    assert kept_busy == [now - timedelta(minutes=m) for m in range(4)]  # the newest 4
    assert [r.ended_at for r in rows(engine, quiet)] == [now - timedelta(hours=1)]  # within 2 days
    finish(redis, busy, check())
    await recorder.step(block_ms=100)
    other = make_recorder(engine, history_retention_days=2, history_max_per_source=4)
    assert await other.prune() == 0  # pruned within the interval by another process: not again
    assert len(rows(engine, busy)) == 5


# --- the database down ------------------------------------------------------------------


@pytest.fixture
def proxied_postgres(postgres_server: PostgresServer) -> Iterator[tuple[Engine, TcpProxy]]:
    """A fresh database on the session's cluster, reached through a proxy the test can cut."""
    name = "sc_recorder_" + secrets.token_hex(4)
    admin = postgres_server.dsn(superuser=True, database="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with TcpProxy(HostPort(postgres_server.host, postgres_server.port)) as proxy:
            url = URL.create(
                "postgresql+psycopg",
                username=postgres_server.superuser,
                password=postgres_server.superuser_password,
                host="127.0.0.1",
                port=proxy.port,
                database=name,
            )
            engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 2})
            _prepare(engine)
            yield engine, proxy
            engine.dispose()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _until(predicate: Any, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_results_finished_while_the_database_is_down_are_all_recorded_once_it_is_back(
    redis: RedisServer, proxied_postgres: tuple[Engine, TcpProxy], make_recorder: Any, changes_seen: list[StatusChange]
) -> None:
    engine, proxy = proxied_postgres
    source = add_source(engine)
    recorder = make_recorder(engine)
    recorder.BACKOFF = (0.1, 0.5)
    jobs = [finish(redis, source, check()).id]
    recorder.start()
    assert await _until(lambda: len(rows(engine)) == 1, 10)

    proxy.cut()
    jobs += [finish(redis, source, check("failed", FailureType.TIMEOUT)).id for _ in range(3)]
    await asyncio.sleep(2)  # the recorder tries, fails, backs off: the results wait in Redis
    client = redis.client()
    assert client.xlen(HISTORY_STREAM) == 3
    assert client.xpending(HISTORY_STREAM, HISTORY_GROUP)["pending"] >= 1  # read, never acknowledged

    proxy.restore()
    assert await _until(lambda: len(rows(engine)) == 4, 15), "results were lost or not recorded"
    assert [row.job_id for row in rows(engine)] == jobs
    assert client.xlen(HISTORY_STREAM) == 0
    assert [c.kind for c in changes_seen] == [ChangeKind.BROKE]  # once, though read several times


async def test_pages_last_tests_and_pruning_work_on_postgres(
    redis: RedisServer, proxied_postgres: tuple[Engine, TcpProxy], make_recorder: Any
) -> None:
    engine, _ = proxied_postgres
    source, untested = add_source(engine), add_source(engine)
    now = datetime.now(UTC)
    jobs = [finish(redis, source, check(), ended_at=now - timedelta(minutes=m)).id for m in (3, 2, 1)]
    last = finish(redis, source, check("failed", FailureType.TIMEOUT), ended_at=now).id
    recorder = make_recorder(engine, history_max_per_source=3)
    while await recorder.step(block_ms=100):
        pass
    with Session(engine) as session:
        page, count = history.list_records(session, source_id=source, limit=2, offset=1)
        assert count == 4 and [r.job_id for r in page] == jobs[:0:-1]
        latest = history.last_tests(session, [source, untested])
        assert list(latest) == [source]
        assert (latest[source].status, latest[source].type) == ("failed", FailureType.TIMEOUT)
        assert history.prune(session, retention_days=30, max_per_source=3) == 1
        assert [r.job_id for r in history.list_records(session, source_id=source, limit=10, offset=0)[0]] == [
            last,
            *jobs[:0:-1],
        ]
