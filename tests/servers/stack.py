"""The whole system for end-to-end tests: a real Redis, real Celery worker processes,
the API under uvicorn in its own process, a SQLite metadata database, two organizations.

Nothing is faked: tests talk HTTP to the API, which enqueues on Redis, which a worker
process consumes, running the real connector against a real server. The misbehaving
connectors of tests/plugins/faulty are on the workers' and the API's path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from api.settings import ApiSettings
from cli.processes import LOOPBACK, api_argv, worker_argv
from tests.servers import free_port
from tests.servers.redis import RedisServer

BIN = Path(sys.executable).parent
FAULTY_PLUGINS = Path(__file__).parents[1] / "plugins" / "faulty"


@dataclass
class Stack:
    base_url: str
    org_id: str
    token: str
    other_org_id: str
    other_token: str
    redis: RedisServer
    data_dir: Path
    env: dict[str, str]
    logs: dict[str, Path] = field(default_factory=dict)
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token or self.token}"}, timeout=70
        )

    def async_client(self, token: str | None = None) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=70,
            limits=limits,
        )

    def url(self, path: str, org_id: str | None = None) -> str:
        return f"/v1/organizations/{org_id or self.org_id}/knowledge/connectors{path}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "sourcecheck"), *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs.values() if p.exists())

    def start_worker(self, name: str, concurrency: int = 1000) -> subprocess.Popen[bytes]:
        log = self.data_dir / f"worker-{name}.log"
        self.logs[f"worker-{name}"] = log
        self.workers[name] = start_worker(self.env, log, name=name, concurrency=concurrency)
        return self.workers[name]

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process group: its probe children die with it."""
        process = self.workers.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout} s")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_worker(env: dict[str, str], log: Path, name: str = "e2e", concurrency: int = 1000) -> subprocess.Popen[bytes]:
    """A real Celery worker process (own process group); returns once it takes jobs."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            worker_argv(name=name, concurrency=concurrency),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _wait_for(lambda: b" ready." in log.read_bytes() or process.poll() is not None, "worker")
    if process.poll() is not None:
        raise RuntimeError(f"worker exited: {log.read_text()[-2000:]}")
    return process


@contextmanager
def launch_stack(
    redis: RedisServer, data_dir: Path, workers: tuple[str, ...] = ("e2e",), **settings: str
) -> Iterator[Stack]:
    """Start an API and ``workers`` against ``redis``; ``settings`` become SOURCECHECK_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCECHECK_")}
    env.update(
        SOURCECHECK_PROFILE="development",
        SOURCECHECK_DATA_DIR=str(data_dir),
        SOURCECHECK_REDIS_URL=redis.url,
        SOURCECHECK_SECRET_KEYS=Fernet.generate_key().decode(),
        SOURCECHECK_DATABASE_URL=f"sqlite:///{data_dir / 'sourcecheck.db'}",
        PYTHONUNBUFFERED="1",
        SOURCECHECK_WORKER_METRICS_PORT="0",  # several workers on one machine: a test that needs it sets a port
        PYTHONPATH=os.pathsep.join([str(FAULTY_PLUGINS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    env.update({f"SOURCECHECK_{k.upper()}": v for k, v in settings.items()})

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(BIN / "sourcecheck"), *args], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout.strip()

    org_id = cli("org", "create", "--id", "org_e2e", "--name", "E2E")
    token = cli("apikey", "create", "--org", org_id)
    other_org_id = cli("org", "create", "--id", "org_other", "--name", "Other")
    other_token = cli("apikey", "create", "--org", other_org_id)

    port = free_port()
    stack = Stack(
        base_url=f"http://127.0.0.1:{port}",
        org_id=org_id,
        token=token,
        other_org_id=other_org_id,
        other_token=other_token,
        redis=redis,
        data_dir=data_dir,
        env=env,
        logs={"api": data_dir / "api.log"},
    )
    api = None
    try:
        for name in workers:
            stack.start_worker(name)
        with stack.logs["api"].open("ab") as out:
            api = subprocess.Popen(
                api_argv(LOOPBACK, port, ApiSettings(**settings), extra=("--log-level", "warning")),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_for(lambda: _healthy(f"{stack.base_url}/healthz") or api.poll() is not None, "API")
        if api.poll() is not None:
            raise RuntimeError(f"API exited: {stack.logs['api'].read_text()[-2000:]}")
        yield stack
    finally:
        processes = [p for p in (api, *stack.workers.values()) if p is not None]
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for process in stack.workers.values():
            try:  # the worker's probe children, if the worker left any
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@contextmanager
def own_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, workers: tuple[str, ...] = ("e2e",), **settings: str
) -> Iterator[Stack]:
    """A stack with a Redis server of its own (for a module that stops Redis, fills it, or
    needs settings of its own): :func:`launch_stack` on a new :class:`RedisServer`."""
    redis = RedisServer(port=free_port(), directory=tmp_path_factory.mktemp(f"{name}-redis"))
    redis.start()
    try:
        with launch_stack(redis, tmp_path_factory.mktemp(name), workers=workers, **settings) as running:
            yield running
    finally:
        redis.stop()


@pytest.fixture(scope="session")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with launch_stack(redis_server, tmp_path_factory.mktemp("sourcecheck")) as running:
        yield running
