"""The whole system for end-to-end tests: a real Redis, a real Celery worker process,
the API under uvicorn in its own process, a SQLite metadata database, two organizations.

Nothing is faked: tests talk HTTP to the API, which enqueues on Redis, which a worker
process consumes, running the real connector against a real server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.servers import free_port
from tests.servers.redis import RedisServer

BIN = Path(sys.executable).parent


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

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {token or self.token}"}, timeout=70)

    def url(self, path: str, org_id: str | None = None) -> str:
        return f"/v1/organizations/{org_id or self.org_id}/knowledge/connectors{path}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "sourcecheck"), *args], env=self.env, capture_output=True, text=True, timeout=60)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs.values() if p.exists())


def _wait_for(predicate, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
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


def start_worker(env: dict[str, str], log: Path, name: str = "e2e", concurrency: int = 8) -> subprocess.Popen[bytes]:
    """A real Celery worker process; returns once it is ready to take jobs."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-E", "-n", f"{name}@%h",
             "--concurrency", str(concurrency), "--loglevel", "INFO"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    _wait_for(lambda: b" ready." in log.read_bytes() or process.poll() is not None, "worker")
    if process.poll() is not None:
        raise RuntimeError(f"worker exited: {log.read_text()[-2000:]}")
    return process


@pytest.fixture(scope="session")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("sourcecheck")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCECHECK_")}
    env.update(
        SOURCECHECK_PROFILE="development",
        SOURCECHECK_DATA_DIR=str(data_dir),
        SOURCECHECK_REDIS_URL=redis_server.url,
        SOURCECHECK_SECRET_KEYS=Fernet.generate_key().decode(),
        SOURCECHECK_DATABASE_URL=f"sqlite:///{data_dir / 'sourcecheck.db'}",
        PYTHONUNBUFFERED="1",
    )

    def cli(*args: str) -> str:
        done = subprocess.run([str(BIN / "sourcecheck"), *args], env=env, capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    org_id = cli("org", "create", "--id", "org_e2e", "--name", "E2E")
    token = cli("apikey", "create", "--org", org_id)
    other_org_id = cli("org", "create", "--id", "org_other", "--name", "Other")
    other_token = cli("apikey", "create", "--org", other_org_id)

    logs = {"worker": data_dir / "worker.log", "api": data_dir / "api.log"}
    port = free_port()
    worker = start_worker(env, logs["worker"])
    with logs["api"].open("ab") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _healthy(f"{base_url}/healthz") or api.poll() is not None, "API")
        if api.poll() is not None:
            raise RuntimeError(f"API exited: {logs['api'].read_text()[-2000:]}")
        yield Stack(base_url=base_url, org_id=org_id, token=token, other_org_id=other_org_id, other_token=other_token,
                    redis=redis_server, data_dir=data_dir, env=env, logs=logs)
    finally:
        for process in (api, worker):
            process.terminate()
        for process in (api, worker):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
