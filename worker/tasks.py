"""The one task: run a job's probe in the worker's ProbeRunner and return its result."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from celery import Task, states
from celery.signals import worker_shutdown

from worker.app import app
from worker.jobs import TASK_NAME, release
from worker.runner import ProbeRunner
from worker.settings import get_settings

log = logging.getLogger(__name__)

_runner: ProbeRunner | None = None
_runner_lock = threading.Lock()


def runner() -> ProbeRunner:
    """This worker process's probe runner, started on first use."""
    global _runner
    with _runner_lock:
        if _runner is None:
            settings = get_settings()
            _runner = ProbeRunner(settings.fernet_keys(), processes=settings.probe_processes)
        return _runner


@worker_shutdown.connect
def _stop_runner(**_: Any) -> None:
    if _runner is not None:
        _runner.close()


@app.task(name=TASK_NAME, bind=True)
def run_probe(self: Task, job: dict[str, Any]) -> dict[str, Any] | None:
    """Run one probe. Returns ``{"started_at", "ended_at", "worker", "check"}``; a failed
    probe is a normal return, so Celery's FAILURE state means the task itself broke."""
    client = app.backend.client
    existing = client.get(app.backend.get_key_for_task(self.request.id))
    if existing and app.backend.decode_result(existing).get("status") in states.READY_STATES:
        log.info("job %s already has its final result; not run again", job.get("job_id"))
        return None  # a redelivered message: the stored result stands (it is written once)
    started = datetime.now(UTC)
    worker = self.request.hostname
    self.update_state(state="STARTED", meta={"started_at": started.isoformat(), "worker": worker})
    check = runner().run(job["definition"], job["config"], float(job["timeout"]))
    ended = datetime.now(UTC)
    log.info("job %s %s in %.0f ms", job.get("job_id"), check["status"], check.get("duration_ms", 0))
    release(client, job["organization_id"], job["job_id"], job.get("fingerprint"), recent_ttl=get_settings().result_ttl_seconds)
    return {"started_at": started.isoformat(), "ended_at": ended.isoformat(), "worker": worker, "check": check}


@app.task(name="sourcecheck.noop")
def noop() -> None:
    """Does nothing: measures the queue's own round trip (``make bench``)."""
