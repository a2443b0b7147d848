"""The one task: decrypt a job's configuration, run its connector's check, return the result."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from connectors.base import CheckResult, CheckStatus, Failure, run_check
from connectors.errors import DEFAULT_HINTS, RETRYABLE, ConnectorError, FailureType
from connectors.registry import get_connector
from worker.app import app
from worker.crypto import Cipher, InvalidToken
from worker.jobs import TASK_NAME
from worker.settings import get_settings

log = logging.getLogger(__name__)

_cipher: Cipher | None = None


def cipher() -> Cipher:
    global _cipher
    if _cipher is None:
        _cipher = Cipher(get_settings().fernet_keys())
    return _cipher


def _failed(kind: FailureType, message: str) -> CheckResult:
    failure = Failure(type=kind, message=message, hint=DEFAULT_HINTS[kind], retryable=RETRYABLE[kind])
    return CheckResult(status=CheckStatus.FAILED, failure=failure)


@app.task(name=TASK_NAME, bind=True)
def run_probe(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    """Run one probe. Returns ``{"started_at", "ended_at", "worker", "check"}``; a failed
    probe is a normal return, so Celery's FAILURE state means the task itself broke."""
    started = datetime.now(UTC)
    worker = self.request.hostname
    self.update_state(state="STARTED", meta={"started_at": started.isoformat(), "worker": worker})
    try:
        connector = get_connector(job["definition"])
        config = connector.parse_config(cipher().decrypt_json(job["config"]))
        result = asyncio.run(run_check(connector, config, timeout=float(job["timeout"])))
    except InvalidToken:
        log.error("job %s: no configured key decrypts its configuration", job.get("job_id"))
        result = _failed(FailureType.INTERNAL_ERROR, "The worker could not decrypt this test's configuration (key mismatch)")
    except ConnectorError as exc:
        # The API validated the configuration; a worker with other connector code disagrees.
        log.error("job %s: %s", job.get("job_id"), exc)
        result = _failed(FailureType.INTERNAL_ERROR, "The worker could not run this test: " + str(exc))
    except SoftTimeLimitExceeded:
        result = _failed(FailureType.TIMEOUT, f"The probe did not end by its deadline of {job['timeout']:g} s and was stopped")
    ended = datetime.now(UTC)
    log.info("job %s %s in %.0f ms", job.get("job_id"), result.status, result.duration_ms)
    return {"started_at": started.isoformat(), "ended_at": ended.isoformat(), "worker": worker, "check": result.to_dict()}
