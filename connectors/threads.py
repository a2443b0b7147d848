"""Thread pools of a process for work that blocks (a name lookup, a key import, a driver's call).

Each kind of work has its own pool rather than the event loop's default one: work that waits
on a server (a MySQL login) must not hold up work that must not wait (a name lookup). Each
thread's stack counts against a probe process's memory bound, so pools are small. A pool is
made per process on first use, so a forked child gets its own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class ThreadPool:
    """``threads`` threads named ``name-N``, made in each process that uses them."""

    def __init__(self, threads: int, name: str) -> None:
        self.threads = threads
        self.name = name
        self._executors: dict[int, ThreadPoolExecutor] = {}

    def executor(self) -> ThreadPoolExecutor:
        """This process's executor."""
        pid = os.getpid()
        executor = self._executors.get(pid)
        if executor is None:
            executor = self._executors[pid] = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
        return executor

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in one of the threads. Cancelled, it is dropped if it has not started, and
        left to finish otherwise (the caller ends any wait of it: a closed socket, a timeout)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor(), work)
