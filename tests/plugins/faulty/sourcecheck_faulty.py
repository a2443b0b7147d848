"""Connectors that misbehave on purpose, for tests of the worker's isolation.

Registered through the ``sourcecheck_faulty-0.1.dist-info`` beside this file: put this
folder on ``sys.path``/``PYTHONPATH`` and the registry finds them like any plugin.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import urllib.parse
from typing import Literal

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure


class FaultyConfig(ConnectorConfig):
    mode: Literal["sleep", "block_in_c", "exit", "segfault", "echo_secret", "raise_secret", "memory_hog"]
    seconds: float = 0.0
    megabytes: int = 0  # memory_hog: how much it takes (in chunks, over ``seconds``) before it succeeds
    tag: str = ""  # makes otherwise identical configurations different
    password: Secret | None = None  # echo_secret/raise_secret put it into their error


CHUNK_MB = 16
PAGE = 4096


async def hog(megabytes: int, seconds: float) -> None:
    """Take ``megabytes`` of memory, a chunk at a time over ``seconds``, and hold it to the end.
    A cap, not "without bound": should the process have no bound, the test sees success."""
    held: list[bytearray] = []
    chunks = max(1, megabytes // CHUNK_MB)
    for _ in range(chunks):
        chunk = bytearray(CHUNK_MB << 20)
        chunk[::PAGE] = b"\x01" * len(range(0, len(chunk), PAGE))  # touch every page: resident, as a decoded bomb is
        held.append(chunk)
        await asyncio.sleep(seconds / chunks)


class FaultyConnector(Connector):
    name = "faulty"
    title = "Faulty (tests only)"
    config_model = FaultyConfig
    steps = ("misbehave",)

    async def check(self, config: FaultyConfig, probe: Probe) -> None:
        async with probe.step("misbehave"):
            if config.mode == "sleep":
                await asyncio.sleep(config.seconds)  # cooperative: the deadline can cancel it
            elif config.mode == "block_in_c":
                ctypes.CDLL(None).sleep(int(config.seconds))  # blocks the event loop in C
            elif config.mode == "exit":
                os._exit(3)
            elif config.mode == "segfault":
                ctypes.string_at(0)
            elif config.mode == "memory_hog":
                await hog(config.megabytes, config.seconds)
            elif config.mode in ("echo_secret", "raise_secret"):
                # What careless drivers do: echo the connection string, password included.
                password = config.password.get_secret_value() if config.password else ""
                dsn = f"postgresql://reader:{password}@127.0.0.1:5432/app"
                quoted = f"postgresql://reader:{urllib.parse.quote(password, safe='')}@127.0.0.1:5432/app"
                if config.mode == "raise_secret":
                    raise RuntimeError(f"driver crashed on {dsn}")
                raise ProbeFailure(
                    FailureType.AUTHENTICATION_FAILED,
                    f"password {password} rejected: {dsn} ({quoted})",
                    hint=f"check {password}",
                )
