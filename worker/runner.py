"""Runs probes in a few child processes, each an asyncio loop holding many at once.

Why this shape (see docs/execution-model.md): probes are almost all waiting, so one event
loop holds many of them cheaply; but a loop is only as good as its worst connector, and a
probe stuck in C code or crashing its process must not take the worker down or outlive
its deadline. So the loops live in child processes that the parent (the Celery worker)
watches:

- every probe has a hard deadline (its own deadline plus ``grace``), kept by the parent;
- a child whose probe passes it is killed: that probe ends ``timeout``, the others on
  the same child are sent again to another child with the time they have left;
- a child that dies (segfault, ``os._exit``) is replaced; its probes are sent again
  once, and a probe that was on two children that died ends ``worker_lost``;
- a probe can be cancelled (:meth:`ProbeRunner.cancel`): its task in the child is
  cancelled (it ends ``cancelled`` within a moment, the other probes there untouched); one
  that ignores it has its child killed ``grace`` s later, like a probe past its deadline;
- a probe that is watched (``watched`` when it is run, or :meth:`ProbeRunner.watch` while
  it runs) has what its check reports (the plan, each step's start and end, warnings:
  :data:`connectors.base.ProbeEvent`; first what happened so far) sent back over the same
  pipe, a batch per turn of the child's loop, ahead of its result; one nobody watches
  builds no event;
- a child may use ``memory_mb`` of memory (``RLIMIT_DATA``: its heap, anonymous mappings
  and thread stacks). The probe whose check meets the bound (a MemoryError) ends
  ``worker_lost`` saying so and is not sent again; the child then exits at once (a
  MemoryError may have struck any of its probes or the loop itself) and its other probes
  are sent again once, as for any child that died. If the MemoryError struck a bystander
  instead of the probe taking the memory, that probe is the one sent again once, so a
  hostile probe costs at most two children.

The parent side is thread-safe: Celery's threads call :meth:`ProbeRunner.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NoReturn, cast

from connectors.base import (
    CHECK_RESULT,
    CheckResult,
    CheckStatus,
    Connector,
    ConnectorConfig,
    Failure,
    Probe,
    ProbeEvent,
    Watch,
    cancel_check,
    event_json,
    run_check,
)
from connectors.errors import ConnectorError, FailureType
from connectors.registry import all_connectors, get_connector
from worker import logs
from worker.crypto import Cipher, InvalidToken
from worker.records import failed_check
from worker.settings import get_settings

log = logging.getLogger(__name__)


# --- the child: one asyncio loop running many probes ----------------------------------

READY = 0  # the id of the message a child sends once it has started (probe ids start at 1)
EVENTS = -1  # child → parent: a batch of (probe id, event name, data JSON)
CANCEL = -1  # parent → child: (CANCEL, probe id)
WATCH = -2  # parent → child: (WATCH, probe id)
MAX_EVENTS = 200  # events one probe may send: a check that reports more is cut short (a plugin's loop)
EXIT_OUT_OF_MEMORY = 12  # ENOMEM: a child's exit code when it stops on a MemoryError
RESERVE_BYTES = 4 << 20  # held by a child, freed to report that it ran out of memory


def out_of_memory(megabytes: int) -> CheckResult:
    """The result of the probe whose check ran out of its process's memory."""
    failure = Failure.of(
        FailureType.WORKER_LOST,
        f"The probe process ran out of memory during this test (a probe process may use {megabytes} MB): "
        "the test was stopped and the process replaced",
        hint="The test needed more memory than a probe process may use: check what the source sends (a very large "
        "or compressed response), or ask the service's operator about SOURCECHECK_PROBE_MEMORY_MB.",
        retryable=False,
    )
    return CheckResult(status=CheckStatus.FAILED, failure=failure)


def limit_memory(megabytes: int) -> None:
    """Bound this process's data (heap, anonymous mappings, thread stacks) to ``megabytes``;
    0 leaves it unbounded. The data limit, not the address space: the address space also
    counts what the C allocator reserves per thread and shared libraries, which grow with
    the machine's cores rather than with what the probes hold."""
    if megabytes <= 0:
        return
    limit = megabytes << 20
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


class _MemoryGuard:
    """``connector`` for :func:`run_check`, noting a MemoryError that its check raises:
    run_check reports any exception as the connector's bug, and the process would go on."""

    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        self.ran_out = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connector, name)

    async def check(self, config: ConnectorConfig, probe: Probe) -> None:
        try:
            await self._connector.check(config, probe)
        except MemoryError:
            self.ran_out = True
            raise


def cancelled_check(message: str = "The test was cancelled before it started") -> CheckResult:
    """The result of a probe cancelled outside its check (before it ran, or by killing its process)."""
    return failed_check(FailureType.CANCELLED, message)


def _child_main(conn: Connection, keys: list[str], memory_mb: int = 0) -> None:
    # The parent decides when children stop: a Ctrl-C or a SIGTERM sent to the whole
    # process group (systemd, a terminal) lets the worker finish its probes first; the
    # child ends when the parent closes its pipe (or dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.configure_from_settings()  # the worker's log format; each probe's lines carry its job's ids
    all_connectors()  # import every connector before the first probe, not during it
    egress = get_settings().egress_policy()  # from the environment, which the child shares with its worker
    profile = get_settings().profile
    cipher = Cipher(keys)
    limit_memory(memory_mb)
    reserve = [bytearray(RESERVE_BYTES)]  # never touched: costs no physical memory

    def exit_out_of_memory(probe_id: int | None) -> NoReturn:
        reserve.clear()  # room to say so
        with contextlib.suppress(Exception):
            log.error("probe process %s ran out of memory (%s MB); exiting", os.getpid(), memory_mb)
            if probe_id is not None:
                conn.send((probe_id, CHECK_RESULT.dump_json(out_of_memory(memory_mb))))
        os._exit(EXIT_OUT_OF_MEMORY)

    gc.freeze()  # start-up's objects stay: the collector need not scan them again
    conn.send((READY, None))  # started: the parent may send probes without charging them our start-up
    loop = asyncio.new_event_loop()
    tasks: dict[int, asyncio.Task[None]] = {}
    watches: dict[int, Watch] = {}
    pending_events: list[tuple[int, str, str]] = []
    event_counts: dict[int, int] = {}

    def flush_events() -> None:
        if not pending_events:
            return
        batch = pending_events.copy()
        pending_events.clear()
        try:
            conn.send((EVENTS, batch))
        except MemoryError:
            exit_out_of_memory(None)

    def listener_for(probe_id: int) -> Callable[[ProbeEvent], None]:
        def told(event: ProbeEvent) -> None:
            count = event_counts.get(probe_id, 0)
            if count >= MAX_EVENTS:
                return
            event_counts[probe_id] = count + 1
            if not pending_events:
                loop.call_soon(flush_events)  # one pipe message per turn of the loop, not per event
            pending_events.append((probe_id, event.event, event_json(event)))

        return told

    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), MemoryError):  # in a callback or another task: no probe to blame
            exit_out_of_memory(None)
        loop.default_exception_handler(context)

    def on_thread_error(args: threading.ExceptHookArgs) -> None:
        if issubclass(args.exc_type, MemoryError):
            exit_out_of_memory(None)  # not from the loop's thread: leave the pipe to it
        threading.__excepthook__(args)

    loop.set_exception_handler(on_loop_error)
    threading.excepthook = on_thread_error

    async def probe(
        probe_id: int,
        definition: str,
        token: str,
        timeout: float,
        context: dict[str, str] | None = None,
        watched: bool = False,
    ) -> None:
        logs.replace(context)  # this task's own copy of the context
        watch = watches[probe_id] = Watch(listener_for(probe_id) if watched else None)
        try:
            connector = get_connector(definition)
            config = connector.parse_config(cipher.decrypt_json(token))
            guard = _MemoryGuard(connector)
            result = await run_check(
                cast(Connector, guard), config, timeout=timeout, egress=egress, profile=profile, watch=watch
            )
            if guard.ran_out:
                exit_out_of_memory(probe_id)
        except MemoryError:
            exit_out_of_memory(probe_id)
        except asyncio.CancelledError:  # cancelled outside run_check's reach (only the parent cancels here)
            result = cancelled_check("The test was cancelled")
        except InvalidToken:
            result = failed_check(
                FailureType.INTERNAL_ERROR, "The worker could not decrypt this test's configuration (key mismatch)"
            )
        except ConnectorError as exc:
            result = failed_check(FailureType.INTERNAL_ERROR, f"The worker could not run this test: {exc}")
        except Exception as exc:  # run_check catches connector bugs; this is ours
            log.exception("probe %s failed outside its check", probe_id)
            result = failed_check(
                FailureType.INTERNAL_ERROR, f"The check stopped on an unexpected {type(exc).__name__}"
            )
        log.debug("probe %s of %s ended %s", probe_id, definition, result.status)
        event_counts.pop(probe_id, None)
        watches.pop(probe_id, None)
        flush_events()  # its events go before its result
        try:  # JSON through the pipe: cheaper than pickling the dataclasses and their enums
            conn.send((probe_id, CHECK_RESULT.dump_json(result)))
        except MemoryError:
            exit_out_of_memory(None)

    def ended(probe_id: int, task: asyncio.Task[None]) -> None:
        tasks.pop(probe_id, None)
        if task.cancelled():  # cancelled before its coroutine began: it has reported nothing
            with contextlib.suppress(OSError):
                conn.send((probe_id, CHECK_RESULT.dump_json(cancelled_check())))

    def readable() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            loop.stop()  # the parent is gone
            return
        if message[0] == CANCEL:
            running = tasks.get(message[1])
            if running is not None:
                cancel_check(running)
            return
        if message[0] == WATCH:
            watch = watches.get(message[1])
            if watch is not None:
                watch.attach(listener_for(message[1]))
            return
        task = loop.create_task(probe(*message))
        tasks[message[0]] = task
        task.add_done_callback(functools.partial(ended, message[0]))

    loop.add_reader(conn.fileno(), readable)
    loop.run_forever()
    os._exit(0)  # the parent is gone: nothing is left to report to


# --- the parent: children, deadlines, restarts -----------------------------------------


EventSink = Callable[[list[tuple[str, str]]], None]
"""Takes a probe's events as they come: ``(event name, data JSON)`` pairs, in order."""


@dataclass
class _Probe:
    id: int
    definition: str
    token: str
    deadline: float  # monotonic: when the probe itself gives up
    hard_deadline: float  # monotonic: when the parent stops waiting and kills its child
    future: Future[CheckResult]
    crashes: int = 0
    context: dict[str, str] = field(default_factory=dict)  # the job's log fields (worker.logs)
    job_id: str | None = None
    on_events: EventSink | None = None
    watched: bool = False
    cancelled: bool = False


@dataclass
class _Child:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    inflight: dict[int, _Probe] = field(default_factory=dict)
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    lost: bool = False
    ready: bool = False  # it has imported the connectors and runs its loop


class ProbeRunner:
    """A pool of ``processes`` probe children. :meth:`run` blocks until the probe's result.

    ``memory_mb`` bounds each child's memory (0: no bound; None: SOURCECHECK_PROBE_MEMORY_MB)."""

    def __init__(self, keys: list[str], processes: int = 2, grace: float = 1.0, memory_mb: int | None = None) -> None:
        self._keys = keys
        self._size = processes
        self._grace = grace
        self._memory_mb = get_settings().probe_memory_mb if memory_mb is None else memory_mb
        self._context = multiprocessing.get_context("spawn")  # no forking a threaded process
        self._lock = threading.Condition()
        self._children: list[_Child] = []
        self._ids = itertools.count(1)
        self._closed = False
        self._jobs: dict[str, _Probe] = {}  # the probes run for a job id, to cancel them
        self._cancelled_early: dict[str, float] = {}  # job ids cancelled before their probe was run here
        self._watched_early: dict[str, float] = {}  # job ids watched before their probe was run here
        for _ in range(processes):
            self._start_child()
        self._watchdog = threading.Thread(target=self._watch, name="probe-watchdog", daemon=True)
        self._watchdog.start()

    # public

    def run(
        self,
        definition: str,
        token: str,
        timeout: float,
        *,
        job_id: str | None = None,
        on_events: EventSink | None = None,
        watched: bool = False,
    ) -> CheckResult:
        """Run one probe and return its result. Never raises for the probe's faults.

        ``job_id``: what :meth:`cancel` and :meth:`watch` know it by. ``on_events``: called
        (from a reader thread: keep it quick) with the probe's events as they come, all of
        them before the result is returned, once it is ``watched`` (now or later)."""
        now = time.monotonic()
        probe = _Probe(
            id=next(self._ids),
            definition=definition,
            token=token,
            deadline=now + timeout,
            hard_deadline=now + timeout + self._grace,
            future=Future(),
            context=logs.current(),
            job_id=job_id,
            on_events=on_events,
            watched=watched and on_events is not None,
        )
        if job_id is not None:
            with self._lock:
                self._jobs[job_id] = probe
                probe.cancelled = self._cancelled_early.pop(job_id, None) is not None
                if self._watched_early.pop(job_id, None) is not None and on_events is not None:
                    probe.watched = True
        try:
            self._dispatch(probe)
            try:  # the watchdog ends every probe by its hard deadline; this is a last guard
                return probe.future.result(timeout=timeout + self._grace + 30)
            except TimeoutError:
                log.error("probe %s got no result from the watchdog", probe.id)
                return failed_check(FailureType.TIMEOUT, "The probe did not end by its deadline and was stopped")
        finally:
            if job_id is not None:
                with self._lock:
                    if self._jobs.get(job_id) is probe:
                        del self._jobs[job_id]

    def cancel(self, job_id: str) -> bool:
        """Cancel the probe of ``job_id``: it ends ``cancelled`` (its child is killed ``grace`` s
        later if it does not stop). A job not running here yet is remembered for a minute, so
        its probe ends at once if it comes. True when a probe of it was running here."""
        now = time.monotonic()
        with self._lock:
            probe = self._jobs.get(job_id)
            if probe is None:
                self._cancelled_early = {j: t for j, t in self._cancelled_early.items() if now - t < 60}
                self._cancelled_early[job_id] = now
                return False
            probe.cancelled = True
            probe.hard_deadline = min(probe.hard_deadline, now + self._grace)
            child = next((c for c in self._children if probe.id in c.inflight), None)
        if child is not None:
            self._send(child, (CANCEL, probe.id))
        return True

    def watch(self, job_id: str) -> bool:
        """Have the probe of ``job_id`` send its events (what happened so far first); a job
        not running here yet is remembered for a minute. True when it was running here."""
        now = time.monotonic()
        with self._lock:
            probe = self._jobs.get(job_id)
            if probe is None:
                self._watched_early = {j: t for j, t in self._watched_early.items() if now - t < 60}
                self._watched_early[job_id] = now
                return False
            if probe.watched or probe.on_events is None:
                return True
            probe.watched = True
            child = next((c for c in self._children if probe.id in c.inflight), None)
        if child is not None:
            self._send(child, (WATCH, probe.id))
        return True

    def running_jobs(self) -> list[str]:
        """The job ids of the probes running here (for a watcher that missed a cancel)."""
        with self._lock:
            return list(self._jobs)

    def wait_ready(self, timeout: float) -> bool:
        """Block until every child has started (a spawned child imports every connector
        first: seconds on a busy machine), at most ``timeout`` s; True when they all have."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._closed and not (len(self._children) >= self._size and all(c.ready for c in self._children)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return not self._closed

    def inflight(self) -> int:
        with self._lock:
            return sum(len(c.inflight) for c in self._children)

    def pids(self) -> list[int]:
        with self._lock:
            return [c.process.pid for c in self._children if c.process.pid is not None]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            children, self._children = self._children, []
            self._lock.notify_all()
        for child in children:
            with contextlib.suppress(OSError):
                child.conn.close()
            child.process.join(timeout=2)
            if child.process.is_alive():
                child.process.kill()
            for probe in child.inflight.values():
                probe.future.set_result(
                    failed_check(FailureType.WORKER_LOST, "The worker stopped before the test finished")
                )

    # internals

    def _start_child(self) -> None:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_child_main, args=(child_end, self._keys, self._memory_mb), name="sourcecheck-probes", daemon=True
        )
        process.start()
        child_end.close()
        child = _Child(process=process, conn=parent_end)
        with self._lock:
            closed = self._closed
            if not closed:
                self._children.append(child)
                self._lock.notify_all()
        if closed:  # a replacement that finished starting after close(): nobody else would ever stop it
            parent_end.close()
            process.join(timeout=2)
            if process.is_alive():
                process.kill()
            process.join(timeout=5)
            return
        threading.Thread(target=self._read, args=(child,), name=f"probe-reader-{process.pid}", daemon=True).start()

    def _dispatch(self, probe: _Probe) -> None:
        if probe.cancelled:
            probe.future.set_result(cancelled_check())
            return
        remaining = probe.deadline - time.monotonic()
        if remaining <= 0.05:
            probe.future.set_result(
                failed_check(FailureType.TIMEOUT, "The probe did not end by its deadline and was stopped")
            )
            return
        with self._lock:
            while not self._closed and not any(not c.lost for c in self._children):
                if not self._lock.wait(timeout=max(0.0, probe.hard_deadline - time.monotonic())):
                    break
            live = [c for c in self._children if not c.lost]
            if self._closed or not live:
                probe.future.set_result(
                    failed_check(FailureType.WORKER_LOST, "No probe process was available to run the test")
                )
                return
            # A child still starting (a replacement) gets probes only when no started one is left.
            child = min([c for c in live if c.ready] or live, key=lambda c: len(c.inflight))
            child.inflight[probe.id] = probe
        self._send(child, (probe.id, probe.definition, probe.token, remaining, probe.context, probe.watched))

    def _send(self, child: _Child, message: tuple[Any, ...]) -> None:
        """One message down ``child``'s pipe; a broken pipe loses the child (its probes go elsewhere)."""
        try:
            with child.send_lock:
                child.conn.send(message)
        except (OSError, ValueError):
            self._lose(child, "its pipe broke")

    def _read(self, child: _Child) -> None:
        while True:
            try:
                probe_id, result = child.conn.recv()
            except (EOFError, OSError, TypeError):  # TypeError: the pipe was closed under us (close())
                break
            if probe_id == READY:
                with self._lock:
                    child.ready = True
                    self._lock.notify_all()
                continue
            if probe_id == EVENTS:
                self._pass_events(child, result)
                continue
            with self._lock:
                probe = child.inflight.pop(probe_id, None)
            if probe is not None and not probe.future.done():
                probe.future.set_result(CHECK_RESULT.validate_json(result))
        self._lose(child, "it exited")

    def _pass_events(self, child: _Child, batch: list[tuple[int, str, str]]) -> None:
        by_probe: dict[int, list[tuple[str, str]]] = {}
        for probe_id, name, data in batch:
            by_probe.setdefault(probe_id, []).append((name, data))
        for probe_id, events in by_probe.items():
            probe = child.inflight.get(probe_id)  # read without the lock: a dict lookup, and a stale miss is harmless
            if probe is None or probe.on_events is None:
                continue
            try:
                probe.on_events(events)
            except Exception:
                log.exception("the events of probe %s could not be passed on", probe_id)

    def _watch(self) -> None:
        while not self._closed:
            time.sleep(0.05)
            now = time.monotonic()
            with self._lock:
                stuck = [
                    c for c in self._children if not c.lost and any(p.hard_deadline < now for p in c.inflight.values())
                ]
            for child in stuck:
                log.warning("probe process %s overran a deadline; killing it", child.process.pid)
                self._lose(child, "a probe overran its deadline", kill=True)

    def _lose(self, child: _Child, reason: str, kill: bool = False) -> None:
        with self._lock:
            if child.lost:
                return
            child.lost = True
            if child in self._children:
                self._children.remove(child)
            orphans = list(child.inflight.values())
            child.inflight.clear()
            closed = self._closed
        if kill or child.process.is_alive():
            with contextlib.suppress(OSError, AttributeError):
                child.process.kill()
        child.process.join(timeout=5)
        with contextlib.suppress(OSError):
            child.conn.close()
        if child.process.exitcode == EXIT_OUT_OF_MEMORY:
            reason = f"it ran out of memory ({self._memory_mb} MB)"
        if not closed:
            log.warning(
                "probe process %s lost (%s, exit code %s); %d probes to place again",
                child.process.pid,
                reason,
                child.process.exitcode,
                len(orphans),
            )
            threading.Thread(target=self._start_child, name="probe-respawn", daemon=True).start()
        now = time.monotonic()
        for probe in orphans:
            if probe.future.done():
                continue
            if probe.cancelled:
                probe.future.set_result(
                    cancelled_check("The test was cancelled (its probe did not stop, so its process was replaced)")
                )
            elif probe.hard_deadline <= now + 0.01:
                probe.future.set_result(
                    failed_check(FailureType.TIMEOUT, "The probe did not end by its deadline and was stopped")
                )
            elif not kill and probe.crashes >= 1:
                probe.future.set_result(
                    failed_check(
                        FailureType.WORKER_LOST, "The process running this test died twice; the test may crash it"
                    )
                )
            else:
                if not kill:
                    probe.crashes += 1
                threading.Thread(target=self._dispatch, args=(probe,), daemon=True).start()
