"""Micro-benchmark of one ``http`` check against a fast local HTTP(S) server, in-process.

    .venv/bin/python bench/probe_micro.py [--runs 300] [--skip 50] [--rounds 1] [--profile FILE]
                                          [--https] [--delay MS]

Starts a tiny asyncio HTTP server in a thread on 127.0.0.1 (every request: ``200 OK``,
body ``ok``), then runs the check ``--runs`` times in another event loop, each with a
different URL, and prints the median wall time and the CPU time (``time.process_time``,
both threads: the server's share is small) per check, skipping the first ``--skip``.
``--rounds N`` repeats that N times in the same process and also prints the lowest
medians, the steadiest figure on a shared, noisy machine.
``--profile FILE`` also writes a cProfile of the measured checks (view it with
``python -m pstats FILE``).
``--https`` serves over TLS (a certificate made for the run, given to the check as
``ca_cert``: verified as in production). ``--delay MS`` puts a relay in front of the server
that holds every chunk of data, both ways, for MS milliseconds: a network round trip of
2 × MS for each exchange of data (TCP connects are not delayed, so a remote server's cost of
a connection is understated by one round trip). CPU per check is only meaningful without it.
Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import ssl
import statistics
import sys
import threading
import time
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import CheckStatus, get_connector, run_check  # noqa: E402
from tests.servers.http import self_signed, server_context  # noqa: E402

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


async def _relay(upstream_port: int, delay: float, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Forward a client's connection to the server, every chunk held ``delay`` s, both ways."""
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    sink.close()
                    return
                sink.write(data)

        sender = asyncio.create_task(deliver())
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                queue.put_nowait((loop.time() + delay, data))
        queue.put_nowait((loop.time() + delay, b""))
        with contextlib.suppress(ConnectionError):
            await sender

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def start_server(tls: ssl.SSLContext | None, delay: float) -> int:
    """The port of a server (behind a delaying relay when ``delay``) in a daemon thread."""
    ready = threading.Event()
    box: dict[str, int] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(_serve_client, "127.0.0.1", 0, ssl=tls))
        box["port"] = port = server.sockets[0].getsockname()[1]
        if delay:
            relay = loop.run_until_complete(
                asyncio.start_server(functools.partial(_relay, port, delay), "127.0.0.1", 0)
            )
            box["port"] = relay.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True, name="probe-micro-server").start()
    ready.wait()
    return box["port"]


async def measure(
    port: int, runs: int, skip: int, profiler: cProfile.Profile | None, ca_pem: str | None
) -> tuple[list[float], list[float]]:
    http = get_connector("http")
    scheme = "https" if ca_pem else "http"
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(runs):
        config = http.parse_config({"url": f"{scheme}://127.0.0.1:{port}/ok?n={uuid4().hex}", "ca_cert": ca_pem})
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
    parser.add_argument("--https", action="store_true", help="serve over TLS, the certificate verified")
    parser.add_argument("--delay", type=float, default=0.0, metavar="MS", help="hold every chunk MS ms, both ways")
    args = parser.parse_args()
    cert_pem, key_pem = self_signed(("127.0.0.1",)) if args.https else (None, None)
    port = start_server(server_context(cert_pem, key_pem) if cert_pem and key_pem else None, args.delay / 1000)
    profiler = cProfile.Profile() if args.profile else None
    best_wall = best_cpu = float("inf")
    for _ in range(args.rounds):
        walls, cpus = asyncio.run(measure(port, args.runs, args.skip, profiler, cert_pem))
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
        print(
            f"{'https' if args.https else 'http'} check{f' ({args.delay:g} ms each way)' if args.delay else ''}, "
            f"{len(walls)} measured of {args.runs}: "
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
