"""How a job's state is written in Redis: a started record, then one final record (JSON).

``{"status": "running", "started_at", "worker"}`` when a worker takes the job;
``{"status": "succeeded" | "failed", "started_at", "ended_at", "worker", "check"}`` when it
ends, or when it is written off at its deadline. Both are read, and the final one written, as
a :class:`Record` (the check as a CheckResult, :data:`~connectors.base.CHECK_RESULT`'s JSON form).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import TypeAdapter

from connectors.base import CheckResult, CheckStatus, Failure
from connectors.errors import FailureType
from worker.model import Job, JobStatus, JobView


@dataclass
class Record:
    """A started or final record, as stored. Times stay ISO 8601 text: as Python writes them."""

    status: JobStatus
    started_at: str | None = None
    ended_at: str | None = None
    worker: str | None = None
    check: CheckResult | None = None


# One encoding of the record and its check at once: cheaper than json with the check as a dict.
RECORD: TypeAdapter[Record] = TypeAdapter(Record)


def failed_check(kind: FailureType, message: str) -> CheckResult:
    """A failed CheckResult, for failures found outside the connector."""
    return CheckResult(status=CheckStatus.FAILED, failure=Failure.of(kind, message))


def started_record(started_at: datetime, worker: str | None) -> str:
    """What a worker writes when it starts a job."""
    return json.dumps({"status": JobStatus.RUNNING, "started_at": started_at.isoformat(), "worker": worker})


def final_record(check: CheckResult, *, started_at: datetime | None, ended_at: datetime, worker: str | None) -> str:
    """A job's final record: the probe's check, when and where it ran."""
    record = Record(
        status=JobStatus.SUCCEEDED if check.status == CheckStatus.SUCCEEDED else JobStatus.FAILED,
        started_at=started_at.isoformat() if started_at else None,
        ended_at=ended_at.isoformat(),
        worker=worker,
        check=check,
    )
    return RECORD.dump_json(record).decode()


def written_off(view: JobView, now: datetime) -> str:
    """The final record of a job nobody finished by its deadline."""
    if view.status == JobStatus.RUNNING:
        check = failed_check(FailureType.WORKER_LOST, "The worker running this test stopped before it finished")
    else:
        check = failed_check(
            FailureType.TIMEOUT, "No worker took this test before its deadline: the workers are saturated or down"
        )
    return final_record(check, started_at=view.started_at, ended_at=now, worker=view.worker)


def cancelled_before_start(now: datetime) -> str:
    """The final record of a job cancelled before a worker started it."""
    check = failed_check(FailureType.CANCELLED, "The test was cancelled before it started")
    return final_record(check, started_at=None, ended_at=now, worker=None)


def view_from_record(job: Job, raw: str | bytes | None) -> JobView:
    """Turn a started or final record (or None: not started) into a JobView."""
    if not raw:
        return JobView(job=job, status=JobStatus.PENDING)
    record = RECORD.validate_json(raw)
    return JobView(
        job=job,
        status=record.status,
        started_at=_parse_time(record.started_at),
        ended_at=_parse_time(record.ended_at),
        worker=record.worker,
        result=record.check,
    )


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
