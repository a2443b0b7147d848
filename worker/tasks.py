"""The one task: run a job's probe in the worker's ProbeRunner and return its result."""

from __future__ import annotations

import functools
import gc
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.exceptions import Reject
from celery.signals import task_postrun, task_prerun, worker_init, worker_ready, worker_shutdown, worker_shutting_down

from connectors.base import CheckResult
from connectors.errors import FailureType
from worker import logs, metrics
from worker.app import TASK_NAME, app
from worker.control import ControlWatcher
from worker.events import EventWriter
from worker.records import failed_check, final_record
from worker.reporting import Begun, reporter
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


@functools.cache
def event_writer() -> EventWriter:
    """This worker process's writer of its jobs' live events (worker.events)."""
    return EventWriter(reporter().client, get_settings().result_ttl_seconds)


_heartbeat: metrics.Heartbeat | None = None
_control: ControlWatcher | None = None
_stopping = threading.Event()  # set when the worker begins to shut down


def _in_flight() -> int:
    return _runner.inflight() if _runner is not None else 0


@worker_init.connect
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    """The worker's Prometheus metrics, served from its main process (see worker.metrics)."""
    settings = get_settings()
    metrics.track_in_flight(_in_flight)
    address = settings.worker_metrics_address or ("0.0.0.0" if settings.profile == "production" else "127.0.0.1")
    metrics.start_server(settings.worker_metrics_port, address)


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    """Mark this worker alive in Redis for GET /readyz (see worker.metrics.Heartbeat)."""
    global _heartbeat
    hostname = str(getattr(sender, "hostname", None) or app.conf.get("worker_name") or "worker")
    _heartbeat = metrics.Heartbeat(reporter().client, hostname, _in_flight)
    _heartbeat.start()


@worker_ready.connect
def _hear_callers(**_: Any) -> None:
    """Hear the cancels and watchers of the tests this worker runs (worker.control)."""
    global _control
    probes = runner()
    _control = ControlWatcher(reporter().client, probes)
    _control.start()


@worker_ready.connect
def _freeze_startup_objects(**_: Any) -> None:
    # What start-up made lives as long as the process: the collector need not scan it again.
    gc.freeze()


@worker_shutting_down.connect
def _shutting_down(**_: Any) -> None:
    # A worker shutting down takes no new job: readiness stops counting it now, not when
    # its last probe has ended. (Sent from a signal handler: only sets events.)
    _stopping.set()
    if _heartbeat is not None:
        _heartbeat.stop(timeout=0)


@task_prerun.connect
def _bind_log_context(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    """Every log line of a probe's task carries its job's ids (the payload holds no secret in clear)."""
    job = args[0] if getattr(task, "name", None) == TASK_NAME and args and isinstance(args[0], dict) else {}
    logs.replace(
        {
            "job_id": job.get("job_id"),
            "organization_id": job.get("organization_id"),
            "source_id": job.get("source_id"),
            "definition": job.get("definition"),
        }
    )


@task_postrun.connect
def _clear_log_context(**_: Any) -> None:
    logs.replace(None)  # the thread runs other tasks next


@worker_init.connect
def _start_runner(**_: Any) -> None:
    """Start the probe processes before the worker takes its first job (and says "ready"),
    so that no probe's deadline pays for their start-up."""
    if not runner().wait_ready(timeout=60):
        log.warning("the probe processes did not all start within 60 s; the worker starts anyway")


# Celery sends worker_shutdown after its pool has stopped, that is once every task still
# running at a warm shutdown (SIGTERM) has returned: the probes end before their runner.
@worker_shutdown.connect
def _stop_runner(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
    if _control is not None:
        _control.stop()
    if _runner is not None:
        _runner.close()


def summary(check: CheckResult) -> str:
    """What Flower shows as a task's result: ``succeeded in 12 ms``, or
    ``failed (timeout) in 2001 ms: <the failure's message>`` (secrets in it already masked)."""
    took = f"{check.duration_ms:.0f} ms"
    if not check.failure:
        return f"{check.status} in {took}"
    return f"{check.status} ({check.failure.type}) in {took}: {check.failure.message}"


# The task stores its own result (worker.reporting: with the job's release, in one call),
# so Celery stores none. It returns a one-line summary, not the result: Celery puts the
# repr of the return value into its task-succeeded event (what Flower shows), and the
# repr of a whole result is costly and reads worse.
@app.task(name=TASK_NAME, bind=True, ignore_result=True)
def run_probe(self: Task, job: dict[str, Any]) -> str:
    """Run one probe and store its final record (see worker.reporting). Returns a summary
    for Flower (see :func:`summary`); a failed probe is a normal return, so Celery's FAILURE
    state means the task itself broke (its job's result is then an internal error)."""
    if _stopping.is_set():
        # A warm shutdown began (SIGTERM) as this message arrived: give it back, untouched,
        # for another worker; the probes already running here finish first.
        raise Reject("the worker is shutting down", requeue=True)
    ttl = get_settings().result_ttl_seconds
    started = datetime.now(UTC)
    worker = self.request.hostname
    report = reporter()
    begun = report.begin(job["job_id"], started_at=started, worker=worker, ttl=ttl)
    if not begun:
        log.info("job %s already has its final result; not run again", job.get("job_id"))
        return "not run: the job already had its final result"  # a redelivered message: the stored result stands

    def end(check: CheckResult) -> None:
        report.finish(job, final_record(check, started_at=started, ended_at=datetime.now(UTC), worker=worker), ttl)

    job_id = job["job_id"]
    events = event_writer()
    try:
        check = runner().run(
            job["definition"],
            job["config"],
            float(job["timeout"]),
            job_id=job_id,
            on_events=functools.partial(events.put, job_id),
            watched=begun == Begun.WATCHED,
        )
    except Exception:  # a bug of ours: the job still ends now, not at its deadline
        end(failed_check(FailureType.INTERNAL_ERROR, "The test could not be run"))
        raise
    events.flush(job_id)  # its events go before the result, which ends its stream
    try:
        end(check)
    finally:  # after the result is out: the caller need not wait for our bookkeeping
        metrics.observe_probe(job["definition"], check)
    outcome = summary(check)
    log.info("job %s %s", job.get("job_id"), outcome)
    return outcome


@app.task(name="sourcecheck.noop")
def noop() -> None:
    """Does nothing: measures the queue's own round trip (``make bench``)."""
