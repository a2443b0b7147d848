"""Connectors that misbehave on purpose, for tests of the worker's isolation.

Registered through the ``sourcecheck_faulty-0.1.dist-info`` beside this file: put this
folder on ``sys.path``/``PYTHONPATH`` and the registry finds them like any plugin.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from typing import Literal

from connectors.base import Connector, ConnectorConfig, Probe


class FaultyConfig(ConnectorConfig):
    mode: Literal["sleep", "block_in_c", "exit", "segfault"]
    seconds: float = 0.0
    tag: str = ""  # makes otherwise identical configurations different


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
