"""Status changes of stored sources: what one is, and the one place it is dispatched.

The recorder (api/recorder.py) calls :func:`on_change` when a source's new record
differs from the one before it in (status, failure type, set of warning codes), after the
record is committed. A source's first record is a change only if it is not a clean
success (failed, or succeeded with warnings): a source that works from the start is no
news. A record older than the source's newest one (delivered late) is history, not a change.

Delivery is at least once: a change is dispatched again if the recorder stopped between
committing the record and acknowledging it, so a consumer (webhooks) keys what it does on
``change.current.job_id``. Dispatching must not raise for a consumer's failure to deliver;
whatever it raises is logged and the record stays recorded. It runs on the API's event
loop, inside the recorder's batch: it should persist what it has to do (a delivery to
make) and return, never deliver inline (a slow receiver would hold up the history).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel import Session

from api import metrics
from api.deliveries import WebhookChange, deliver_change
from api.models import TestRecordPublic
from connectors.errors import FailureType
from worker.model import JobStatus

log = logging.getLogger("sourcecheck.changes")


class ChangeKind(StrEnum):
    BROKE = "broke"  # succeeded (or never tested) → failed
    RECOVERED = "recovered"  # failed → succeeded
    FAILURE_CHANGED = "failure_changed"  # failed → failed with another type
    WARNINGS_CHANGED = "warnings_changed"  # same status and type, another set of warning codes


@dataclass(frozen=True)
class RecordSummary:
    """What decides whether a record is a change, and when it ended."""

    job_id: str
    status: JobStatus
    type: FailureType | None
    warning_codes: frozenset[str]
    ended_at: datetime

    @classmethod
    def of(cls, record: TestRecordPublic) -> RecordSummary:
        return cls(
            job_id=record.job_id,
            status=record.status,
            type=record.type,
            warning_codes=frozenset(w.code.value for w in record.warnings),
            ended_at=record.ended_at,
        )


@dataclass(frozen=True)
class StatusChange:
    organization_id: str
    source_id: str
    kind: ChangeKind
    previous: RecordSummary | None  # None: the source's first record
    current: TestRecordPublic  # the new record, as GET .../sources/{source_id}/tests shows it


def change_kind(previous: RecordSummary | None, current: RecordSummary) -> ChangeKind | None:
    """How ``current`` differs from ``previous`` (None: no change)."""
    failed = current.status == JobStatus.FAILED
    if previous is None:
        if failed:
            return ChangeKind.BROKE
        return ChangeKind.WARNINGS_CHANGED if current.warning_codes else None
    if previous.status != current.status:
        return ChangeKind.BROKE if failed else ChangeKind.RECOVERED
    if previous.type != current.type:
        return ChangeKind.FAILURE_CHANGED
    if previous.warning_codes != current.warning_codes:
        return ChangeKind.WARNINGS_CHANGED
    return None


async def on_change(change: StatusChange, sessions: Callable[[], Session]) -> None:
    """The dispatch point of a status change (see the module docstring): counted, logged, and
    an event stored for each of the organization's webhooks (api/deliveries.py sends them),
    in a session of ``sessions``, the recorder's database."""
    metrics.STATUS_CHANGES.labels(change.kind.value).inc()
    log.info(
        "source %s status changed (%s): %s → %s%s",
        change.source_id,
        change.kind.value,
        change.previous.status.value if change.previous else "none",
        change.current.status.value,
        f" ({change.current.type.value})" if change.current.type else "",
        extra={"organization_id": change.organization_id, "source_id": change.source_id},
    )
    await deliver_change(
        sessions,
        WebhookChange(
            organization_id=change.organization_id,
            source_id=change.source_id,
            old_status=change.previous.status.value if change.previous else None,
            new_status=change.current.status.value,
            result=change.current,
            occurred_at=change.current.ended_at,
            key=change.current.job_id,  # a change dispatched twice is one event
        ),
    )
