"""`sourcecheck run` (what `make run` starts, api/stack.py): the whole development system
from an empty folder, a test through it, and Ctrl-C stopping all of it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port
from tests.servers.http import HttpServer
from tests.servers.stack import BIN

pytestmark = pytest.mark.e2e


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_run_starts_everything_from_an_empty_folder_and_ctrl_c_stops_it(tmp_path: Path, http_server: HttpServer) -> None:
    api_port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCECHECK_")}
    env["SOURCECHECK_WORKER_METRICS_PORT"] = "0"  # the default port may be taken on this machine
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen([str(BIN / "sourcecheck"), "run", "--api-port", str(api_port), "--flower-port", str(flower_port)],
                               cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 120
        while run.poll() is None and time.monotonic() < deadline:  # ready: the database, Redis and a worker answer
            try:
                if httpx.get(f"{api}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert httpx.get(f"{api}/readyz", timeout=2).status_code == 200, log.read_text()[-3000:]
        assert httpx.get(f"http://127.0.0.1:{flower_port}/healthcheck", timeout=5).status_code == 200

        def cli(*args: str) -> str:
            return subprocess.run([str(BIN / "sourcecheck"), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  check=True, timeout=60).stdout.strip()

        org = cli("org", "create", "--id", "org_run", "--name", "Run")
        token = cli("apikey", "create", "--org", org)
        answer = httpx.post(f"{api}/v1/organizations/{org}/knowledge/connectors/sources/test", timeout=30,
                            headers={"Authorization": f"Bearer {token}"},
                            json={"source_definition_id": "http", "configuration": {"url": http_server.url("/ok")}})
        assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text
        redis_port = int(re.search(r"Redis\s+redis://127\.0\.0\.1:(\d+)/", log.read_text())[1])  # type: ignore[index]
        assert (tmp_path / ".sourcecheck" / "sourcecheck.db").exists()  # its files are in the folder it was started in

        run.send_signal(signal.SIGINT)  # Ctrl-C
        assert run.wait(timeout=90) == 0
        assert not any(_listening(port) for port in (api_port, flower_port, redis_port))
    finally:
        if run.poll() is None:  # the test failed midway: stop the children too, then the rest
            run.send_signal(signal.SIGINT)
            try:
                run.wait(timeout=90)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
