"""Flower, the workers' dashboard, logging like every other process of ours:
``python -m worker.flower [Flower's options]`` (what ``sourcecheck flower`` runs).

``celery flower`` logs through tornado, whose first parse of the options gives the root
logger tornado's own handler and format, unless the root logger has a handler already.
So the project's logging (``worker.logs``: JSON in production, credentials masked) is set
up before Celery's command line runs, and ``--logging=none`` keeps tornado from changing
the level it was given (``SOURCECHECK_LOG_LEVEL``).

SIGTERM stops Flower's event loop. Flower's own handler raises ``SystemExit`` wherever
the main thread happens to be; during start-up that is sometimes inside code that
swallows it, and Flower then ran on until killed (1 start in 30 stopped right after its
port opened). Asking the loop to stop works however early the signal comes: a loop told
to stop before it starts runs one turn and returns.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import flower.command
from celery.bin.celery import main as celery
from tornado.ioloop import IOLoop

from worker import logs


def _stop(signum: int, _frame: FrameType | None) -> None:
    logging.getLogger("flower.command").info("%s detected, shutting down", signal.Signals(signum).name)
    loop = IOLoop.current().asyncio_loop  # type: ignore[attr-defined]  # the main thread's, Flower's
    loop.call_soon_threadsafe(loop.stop)  # safe in a signal handler, as asyncio's own handlers do


def main(argv: list[str]) -> None:
    logs.configure_from_settings()
    flower.command.sigterm_handler = _stop  # what Flower's command installs for SIGTERM
    sys.argv = ["celery", "-A", "worker.app", "flower", "--logging=none", *argv]
    celery()


if __name__ == "__main__":
    main(sys.argv[1:])
