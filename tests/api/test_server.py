"""The API's edge as uvicorn serves it (api.server): slow or huge request heads are cut
off, and beyond its concurrency limit uvicorn answers 503, while a well-behaved request
still gets through. Each test runs the API as `sourcecheck api` does (cli.processes.api_argv)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from api.settings import ApiSettings
from cli.processes import LOOPBACK, api_argv
from tests.servers import free_port
from tests.servers.redis import RedisServer

HEAD_TIMEOUT = 1.0
SLOW_CLIENTS = 20
GENEROUS = 15.0  # the machine is shared: "cut off" means well before this, "never" means not by then


@contextmanager
def api(redis_server: RedisServer, tmp_path: Path, **settings: str) -> Iterator[int]:
    """The API under uvicorn with ``settings`` (SOURCECHECK_*), on a free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCECHECK_")}
    env.update(
        SOURCECHECK_REDIS_URL=redis_server.url,
        SOURCECHECK_DATA_DIR=str(tmp_path),
        SOURCECHECK_DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}",
    )
    env.update({f"SOURCECHECK_{k.upper()}": v for k, v in settings.items()})
    port = free_port()
    with (tmp_path / "api.log").open("ab") as out:
        process = subprocess.Popen(
            api_argv(LOOPBACK, port, ApiSettings(**settings), extra=("--log-level", "warning")),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not _healthy(port):
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "api.log").read_text()[-2000:]
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _answer_or_close(sock: socket.socket) -> bytes:
    """What the server sends until it closes; raises TimeoutError if it keeps the connection."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


SLOW_HEAD = b"POST /v1/organizations/org_x/knowledge/connectors/sources/test HTTP/1.1\r\nHost: x\r\nX-Slow: "


def _slow_heads(port: int, kept_alive: bool = False) -> list[socket.socket]:
    """Connections that send a head that never ends (after a whole request and its answer, if ``kept_alive``)."""
    socks = []
    for _ in range(SLOW_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=GENEROUS)
        if kept_alive:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                answer += sock.recv(4096)
        sock.sendall(SLOW_HEAD)
        socks.append(sock)
    return socks


def test_a_head_that_never_ends_is_cut_off_and_others_are_served(redis_server: RedisServer, tmp_path: Path) -> None:
    with api(redis_server, tmp_path, api_head_timeout_seconds=str(HEAD_TIMEOUT)) as port:
        started = time.monotonic()
        socks = _slow_heads(port)
        try:
            assert _healthy(port), "a well-behaved request waits for no slow client"
            for sock in socks:
                assert _answer_or_close(sock).startswith(b"HTTP/1.1 408 ")
            assert time.monotonic() - started < GENEROUS
        finally:
            for sock in socks:
                sock.close()


def test_a_kept_alive_connection_that_starts_a_head_and_stalls_is_cut_off(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with api(redis_server, tmp_path, api_head_timeout_seconds=str(HEAD_TIMEOUT), api_keep_alive_seconds="60") as port:
        socks = _slow_heads(port, kept_alive=True)
        try:
            for sock in socks:
                assert _answer_or_close(sock).startswith(b"HTTP/1.1 408 ")
        finally:
            for sock in socks:
                sock.close()


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with api(redis_server, tmp_path, api_keep_alive_seconds="1") as port:
        with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            started = time.monotonic()
            assert _answer_or_close(sock).startswith(b"HTTP/1.1 200 ")
            assert time.monotonic() - started < 4.0  # uvicorn's default is 5 s


def test_a_head_over_the_limit_is_refused_with_431(redis_server: RedisServer, tmp_path: Path) -> None:
    with api(redis_server, tmp_path, api_max_head_bytes="8192") as port:
        with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as sock:
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused while it was still sending
            assert _answer_or_close(sock).startswith(b"HTTP/1.1 431 ")
        assert _healthy(port)


def test_beyond_the_concurrency_limit_uvicorn_answers_503(redis_server: RedisServer, tmp_path: Path) -> None:
    limit = 16
    with api(redis_server, tmp_path, api_limit_concurrency=str(limit), api_head_timeout_seconds="60") as port:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) for _ in range(limit)]
        try:
            time.sleep(0.5)  # each accepted: the limit is taken
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=GENEROUS)
            assert r.status_code == 503, r.text
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + GENEROUS
        while not _healthy(port):  # the places came back
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_the_api_runs_with_the_bounds_of_its_settings() -> None:
    argv = api_argv("0.0.0.0", 8000, ApiSettings(api_limit_concurrency=100, api_keep_alive_seconds=3))
    for flag, value in (
        ("--http", "api.server:HeadBoundProtocol"),
        ("--limit-concurrency", "100"),
        ("--timeout-keep-alive", "3"),
    ):
        assert argv[argv.index(flag) + 1] == value


LAUNCHERS = ("cli/serve.py", "cli/stack.py", "tests/servers/stack.py", "tests/servers/redis.py", "bench/run.py")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_every_launcher_takes_its_command_lines_from_cli_processes(launcher: str) -> None:
    source = (Path(__file__).parents[2] / launcher).read_text()
    assert "from cli.processes import" in source
    for own_command_line in ('"uvicorn"', '"celery"', '"worker.app"', '"worker.flower"', "REDIS_SERVER_PATH"):
        assert own_command_line not in source, f"{launcher} builds a command line of its own"


@pytest.mark.parametrize(
    "name", ["api_head_timeout_seconds", "api_max_head_bytes", "api_limit_concurrency", "api_keep_alive_seconds"]
)
def test_the_bounds_are_documented_settings(name: str) -> None:
    assert ApiSettings.model_fields[name].description
