"""Flower, the workers' dashboard, logging like every other process of ours:
``python -m worker.flower [Flower's options]`` (what ``sourcecheck flower`` runs).

``celery flower`` logs through tornado, whose first parse of the options gives the root
logger tornado's own handler and format, unless the root logger has a handler already.
So the project's logging (``worker.logs``: JSON in production, credentials masked) is set
up before Celery's command line runs, and ``--logging=none`` keeps tornado from changing
the level it was given (``SOURCECHECK_LOG_LEVEL``). SIGTERM stops Flower's event loop
(see ``worker.seams.flower``).
"""

from __future__ import annotations

import sys

from celery.bin.celery import main as celery

from worker import logs
from worker.seams import flower as flower_seam


def main(argv: list[str]) -> None:
    logs.configure_from_settings()
    flower_seam.stop_on_sigterm()
    sys.argv = ["celery", "-A", "worker.app", "flower", "--logging=none", *argv]
    celery()


if __name__ == "__main__":
    main(sys.argv[1:])
