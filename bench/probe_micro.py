"""Micro-benchmark of one ``http`` check against a fast local plain-HTTP server, in-process.

    .venv/bin/python bench/probe_micro.py [--runs 300] [--skip 50] [--rounds 1] [--profile FILE]

Starts a tiny asyncio HTTP server in a thread on 127.0.0.1 (every request: ``200 OK``,
body ``ok``), then runs the check ``--runs`` times in another event loop, each with a
different URL, and prints the median wall time and the CPU time (``time.process_time``,
both threads: the server's share is small) per check, skipping the first ``--skip``.
``--rounds N`` repeats that N times in the same process and also prints the lowest
medians, the steadiest figure on a shared, noisy machine.
``--profile FILE`` also writes a cProfile of the measured checks (view it with
``python -m pstats FILE``). Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import sys
import threading
import time
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import CheckStatus, get_connector, run_check  # noqa: E402

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


async def _serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def start_server() -> tuple[int, asyncio.AbstractEventLoop]:
    """The port of a server running in a daemon thread, and its loop."""
    ready = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(_serve_client, "127.0.0.1", 0))
        box["port"] = server.sockets[0].getsockname()[1]
        box["loop"] = loop
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True, name="probe-micro-server").start()
    ready.wait()
    return int(box["port"]), box["loop"]  # type: ignore[call-overload,return-value]


async def measure(port: int, runs: int, skip: int, profiler: cProfile.Profile | None) -> tuple[list[float], list[float]]:
    http = get_connector("http")
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(runs):
        config = http.parse_config({"url": f"http://127.0.0.1:{port}/ok?n={uuid4().hex}"})
        if profiler is not None and i == skip:
            profiler.enable()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = await run_check(http, config, timeout=5)
        wall1, cpu1 = time.perf_counter(), time.process_time()
        if result.status != CheckStatus.SUCCEEDED:
            raise SystemExit(f"check {i} failed: {result}")
        walls.append((wall1 - wall0) * 1000)
        cpus.append((cpu1 - cpu0) * 1000)
    if profiler is not None:
        profiler.disable()
    return walls[skip:], cpus[skip:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--skip", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the measured checks")
    args = parser.parse_args()
    port, _ = start_server()
    profiler = cProfile.Profile() if args.profile else None
    best_wall = best_cpu = float("inf")
    for _ in range(args.rounds):
        walls, cpus = asyncio.run(measure(port, args.runs, args.skip, profiler))
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
        print(
            f"http check, {len(walls)} measured of {args.runs}: "
            f"wall median {wall:.3f} ms (p90 {statistics.quantiles(walls, n=10)[-1]:.3f}), "
            f"cpu median {cpu:.3f} ms, cpu mean {statistics.fmean(cpus):.3f} ms",
            flush=True,
        )
    if profiler is not None:
        profiler.dump_stats(args.profile)
    if args.rounds > 1:
        print(f"lowest of {args.rounds} rounds: wall median {best_wall:.3f} ms, cpu median {best_cpu:.3f} ms")


if __name__ == "__main__":
    main()
