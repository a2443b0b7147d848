"""The one place the worker relies on Flower's internals.

- ``flower.command.sigterm_handler``: Flower's command installs it for SIGTERM, and it
  raises ``SystemExit`` wherever the main thread is, sometimes inside start-up code that
  swallows it (Flower then runs on); replaced by one that asks the event loop to stop,
  which works however early the signal comes. Flower has no option for it.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import flower.command
from tornado.ioloop import IOLoop

PRIVATE_NAMES = ["flower.command:sigterm_handler"]


def _stop(signum: int, _frame: FrameType | None) -> None:
    logging.getLogger("flower.command").info("%s detected, shutting down", signal.Signals(signum).name)
    loop = IOLoop.current().asyncio_loop  # type: ignore[attr-defined]  # the main thread's, Flower's
    loop.call_soon_threadsafe(loop.stop)  # safe in a signal handler, as asyncio's own handlers do


def stop_on_sigterm() -> None:
    """Make SIGTERM stop Flower's event loop (a loop told to stop before it starts runs one turn and returns)."""
    flower.command.sigterm_handler = _stop
