"""The history of stored sources: rows of ``test_record``, written from the jobs' final
records, listed newest first, summarized as a source's ``last_test``, and pruned.

Writes come from the recorder (api/recorder.py), which takes the final records from the
Redis stream ``finish.lua`` appends them to; what is written is the record's check (status,
failure, warnings, steps), where and when it ran: a final record holds no configuration,
and its messages were scrubbed of the configuration's secrets by the worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.models import LastTest, Source, StepInfo, TestRecord, TestRecordPublic, WarningInfo, utcnow
from api.services.changes import RecordSummary, StatusChange, change_kind
from connectors.base import CheckResult, CheckStatus
from connectors.errors import FailureType
from worker.model import Job, JobStatus
from worker.records import RECORD, Record

log = logging.getLogger("sourcecheck.history")


@dataclass(frozen=True)
class Finished:
    """A final result of a stored source's test, as the stream carries it."""

    job: Job
    record: Record

    @classmethod
    def parse(cls, job: str | bytes, record: str | bytes) -> Finished:
        """Raises ValueError (or a pydantic ValidationError, one) for an unreadable entry."""
        parsed = cls(Job.from_json(job), RECORD.validate_json(record))
        if parsed.job.source_id is None or not parsed.record.status.final:
            raise ValueError("not a final result of a stored source")
        return parsed


@dataclass(frozen=True)
class Written:
    """What writing a batch did: how many rows were new, were there already, or were dropped."""

    recorded: int
    duplicate: int
    dropped: int
    changes: list[StatusChange]


def write_records(session: Session, batch: list[Finished]) -> Written:
    """Record ``batch`` in one transaction, once per job (a job recorded before is skipped,
    or, if it was a status change, its change is returned again: delivery is at least once).
    A result of a source deleted since is dropped. Returns the status changes, in order."""
    for attempt in range(3):
        try:
            return _write(session, batch)
        except IntegrityError:  # another recorder wrote one of these jobs meanwhile: again, skipping it
            session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _write(session: Session, batch: list[Finished]) -> Written:
    recorded = duplicate = dropped = 0
    changes: list[StatusChange] = []
    for finished in batch:
        job = finished.job
        assert job.source_id is not None
        existing = session.exec(select(TestRecord).where(col(TestRecord.job_id) == job.id)).first()
        if existing is not None:
            duplicate += 1
            if existing.status_changed:
                changes.append(_change(session, existing))
            continue
        # Locked (PostgreSQL), so that two recorders compare each record with the one before it.
        source = session.get(Source, job.source_id, with_for_update=True)
        if source is None or source.organization_id != job.organization_id:
            dropped += 1
            continue
        row = _row(finished)
        newest = _newest(session, job.source_id)
        current = _summary(row)
        if newest is None or (newest.ended_at, newest.job_id) <= (current.ended_at, current.job_id):
            row.status_changed = change_kind(_summary(newest) if newest else None, current) is not None
        session.add(row)
        session.flush()
        recorded += 1
        if row.status_changed:
            changes.append(_change(session, row))
    session.commit()
    return Written(recorded, duplicate, dropped, changes)


def _row(finished: Finished) -> TestRecord:
    job, record = finished.job, finished.record
    check = record.check or CheckResult(status=CheckStatus(record.status.value))
    failure = check.failure
    assert job.source_id is not None
    return TestRecord(
        organization_id=job.organization_id,
        source_id=job.source_id,
        job_id=job.id,
        source_definition_id=job.source_definition_id,
        status=record.status.value,
        failure_type=failure.type.value if failure else None,
        message=failure.message if failure else None,
        hint=failure.hint if failure else None,
        retryable=failure.retryable if failure else None,
        fields=list(failure.fields) if failure else None,
        warnings=[{"code": w.code.value, "message": w.message, "hint": w.hint} for w in check.warnings],
        steps=[
            {"name": s.name, "status": s.status.value, "duration_ms": s.duration_ms, "message": s.message}
            for s in check.steps
        ],
        worker=record.worker,
        started_at=_time(record.started_at),
        ended_at=_time(record.ended_at) or utcnow(),
    )


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _newest(session: Session, source_id: str, before: TestRecord | None = None) -> TestRecord | None:
    """The source's newest record (or the newest before ``before``)."""
    query = select(TestRecord).where(col(TestRecord.source_id) == source_id)
    if before is not None:
        query = query.where(tuple_(col(TestRecord.ended_at), col(TestRecord.id)) < (before.ended_at, before.id))
    query = query.order_by(col(TestRecord.ended_at).desc(), col(TestRecord.id).desc()).limit(1)
    return session.exec(query).first()


def _summary(row: TestRecord) -> RecordSummary:
    return RecordSummary(
        job_id=row.job_id,
        status=JobStatus(row.status),
        type=FailureType(row.failure_type) if row.failure_type else None,
        warning_codes=frozenset(str(w["code"]) for w in row.warnings),
        ended_at=row.ended_at,
    )


def _change(session: Session, row: TestRecord) -> StatusChange:
    current = to_public(row)
    previous = _newest(session, row.source_id, before=row)
    summary = _summary(row)
    kind = change_kind(_summary(previous) if previous else None, summary)
    assert kind is not None
    return StatusChange(
        organization_id=row.organization_id,
        source_id=row.source_id,
        kind=kind,
        previous=_summary(previous) if previous else None,
        current=current,
    )


def to_public(row: TestRecord) -> TestRecordPublic:
    started, ended = row.started_at, row.ended_at
    duration = (ended - started).total_seconds() * 1000 if started else None
    return TestRecordPublic(
        job_id=row.job_id,
        source_id=row.source_id,
        source_definition_id=row.source_definition_id,
        status=JobStatus(row.status),
        type=FailureType(row.failure_type) if row.failure_type else None,
        message=row.message,
        hint=row.hint,
        retryable=row.retryable,
        fields=row.fields,
        warnings=[WarningInfo.model_validate(w) for w in row.warnings],
        steps=[StepInfo.model_validate(s) for s in row.steps],
        worker=row.worker,
        started_at=started,
        ended_at=ended,
        duration_ms=round(duration, 2) if duration is not None else None,
    )


def list_records(session: Session, *, source_id: str, limit: int, offset: int) -> tuple[list[TestRecord], int]:
    """A page of the source's records, newest first, and how many it has in all."""
    query = (
        select(TestRecord)
        .where(col(TestRecord.source_id) == source_id)
        .order_by(col(TestRecord.ended_at).desc(), col(TestRecord.id).desc())
        .offset(offset)
        .limit(limit)
    )
    rows = list(session.exec(query).all())
    count = session.exec(select(func.count()).where(col(TestRecord.source_id) == source_id)).one()
    return rows, int(count)


def last_tests(session: Session, source_ids: list[str]) -> dict[str, LastTest]:
    """Each source's newest record, as ``last_test`` (sources without one are left out).
    One indexed lookup per source: a page of sources costs its size, not its history."""
    if not source_ids:
        return {}
    newest = (
        select(TestRecord.id)
        .where(col(TestRecord.source_id) == col(Source.id))
        .order_by(col(TestRecord.ended_at).desc(), col(TestRecord.id).desc())
        .limit(1)
        .correlate(Source)
        .scalar_subquery()
    )
    query = (
        select(Source.id, TestRecord.status, TestRecord.failure_type, TestRecord.ended_at)
        .join(TestRecord, col(TestRecord.id) == newest)
        .where(col(Source.id).in_(source_ids))
    )
    return {
        source_id: LastTest(
            status=JobStatus(status), type=FailureType(failure_type) if failure_type else None, ended_at=ended_at
        )
        for source_id, status, failure_type, ended_at in session.exec(query).all()
    }


def prune(session: Session, *, retention_days: int, max_per_source: int, batch: int = 10_000) -> int:
    """Delete records past the retention and beyond the newest ``max_per_source`` of each
    source, ``batch`` rows a statement (each its own transaction); how many were deleted."""
    cutoff = utcnow() - timedelta(days=retention_days)
    ranked = select(
        TestRecord.id,
        func.row_number()
        .over(partition_by=TestRecord.source_id, order_by=(col(TestRecord.ended_at).desc(), col(TestRecord.id).desc()))
        .label("rank"),
    ).subquery()
    excess = select(ranked.c.id).where(ranked.c.rank > max_per_source).limit(batch)
    expired = select(TestRecord.id).where(col(TestRecord.ended_at) < cutoff).limit(batch)
    deleted = 0
    for doomed in (expired, excess):
        while True:
            ids = list(session.exec(doomed).all())
            if not ids:
                break
            session.exec(delete(TestRecord).where(col(TestRecord.id).in_(ids)))
            session.commit()
            deleted += len(ids)
            if len(ids) < batch:
                break
    return deleted
