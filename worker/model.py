"""The job model: what a job is when it is sent, and how it stands later. Holds no secret.

A fingerprint is an HMAC of (organization, definition, deadline, configuration) under a
key derived from the encryption key: it identifies a configuration without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from connectors.base import CheckResult

# After its own deadline a probe has this long to be reported before it is written off.
FINISH_GRACE_SECONDS = 5.0


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass(frozen=True)
class Job:
    """What is known of a job when it is sent."""

    id: str
    organization_id: str
    source_definition_id: str
    timeout: float
    created_at: datetime
    deadline_at: datetime  # when an unfinished job is written off
    source_id: str | None = None
    workspace_id: str | None = None
    name: str | None = None
    fingerprint: str | None = None
    # Its result goes into the source's history: a stored source tested as stored (not
    # inline, not with overrides).
    recorded: bool = False

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # flat: no need for asdict's deep copy
        data["created_at"] = self.created_at.isoformat()
        data["deadline_at"] = self.deadline_at.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Job:
        data = json.loads(raw)
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["deadline_at"] = datetime.fromisoformat(data["deadline_at"])
        return cls(**data)


@dataclass(frozen=True)
class JobView:
    """A job as it stands now."""

    job: Job
    status: JobStatus
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker: str | None = None
    result: CheckResult | None = None


def new_job(
    *,
    organization_id: str,
    source_definition_id: str,
    timeout: float,
    queue_timeout: float,
    source_id: str | None = None,
    workspace_id: str | None = None,
    name: str | None = None,
    fingerprint: str | None = None,
    recorded: bool = False,
) -> Job:
    created = datetime.now(UTC)
    return Job(
        id=f"job_{uuid.uuid4().hex}",
        organization_id=organization_id,
        source_definition_id=source_definition_id,
        timeout=timeout,
        created_at=created,
        deadline_at=created + timedelta(seconds=queue_timeout + timeout + FINISH_GRACE_SECONDS),
        source_id=source_id,
        workspace_id=workspace_id,
        name=name,
        fingerprint=fingerprint,
        recorded=recorded,
    )


def fingerprint(
    cipher_key: str,
    organization_id: str,
    definition: str,
    timeout: float,
    configuration: dict[str, Any],
    recorded_for: str | None = None,
) -> str:
    """Identifies an identical test without revealing its configuration. ``recorded_for``: the
    source whose history the result goes into (such a test joins only tests recorded alike)."""
    key = hashlib.sha256(b"sourcecheck-coalesce:" + cipher_key.encode()).digest()
    parts: list[Any] = [organization_id, definition, timeout, configuration]
    if recorded_for is not None:
        parts.append(recorded_for)
    message = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
