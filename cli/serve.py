"""Starting the system's processes: ``sourcecheck run`` (all of it, supervised: cli.stack)
and each part alone (``api``, ``worker``, ``flower``), as the container images run them."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from api.settings import get_api_settings
from cli.console import fail
from cli.processes import api_argv, flower_argv, worker_argv
from cli.stack import API_PORT, FLOWER_PORT, run_stack

# Options these commands do not know go on to the program they start.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
FLOWER_AUTH_OPTIONS = ("--basic-auth", "--basic_auth", "--auth", "--oauth2")
FLOWER_AUTH_VARIABLES = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH")


def run(
    api_port: Annotated[int, typer.Option(help="Port of the API on 127.0.0.1.")] = API_PORT,
    flower_port: Annotated[int, typer.Option(help="Port of Flower on 127.0.0.1.")] = FLOWER_PORT,
) -> None:
    """Start the whole development system in the foreground.

    Redis (unless SOURCECHECK_REDIS_URL is set), the API on 127.0.0.1:8000, one worker and
    Flower on 127.0.0.1:5555. A part that dies is started again (with a growing pause); one
    that dies 5 times within 60 s stops everything. Ctrl-C stops all of it.

    Example: sourcecheck run --api-port 8000 --flower-port 5555
    """
    raise typer.Exit(run_stack(api_port=api_port, flower_port=flower_port))


def serve_api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = API_PORT,
) -> None:
    """Start the HTTP API (uvicorn, with the bounds of the api_* settings).

    Example: sourcecheck api --host 0.0.0.0 --port 8000
    """
    os.execv(sys.executable, api_argv(host, port))


def worker(ctx: typer.Context) -> None:
    """Start a Celery worker; extra arguments go to `celery worker`.

    Example: sourcecheck worker -n worker2@%h --concurrency 16
    """
    os.execv(sys.executable, worker_argv(extra=ctx.args))


def flower(ctx: typer.Context) -> None:
    """Start the Flower dashboard; extra arguments go to `celery flower`.

    Example: sourcecheck flower --port 5555 --basic-auth=admin:secret

    Outside the development profile Flower refuses to start without authentication
    (--basic-auth/--auth/--oauth2 options or the FLOWER_BASIC_AUTH/FLOWER_AUTH variables).
    """
    has_auth = any(a.startswith(FLOWER_AUTH_OPTIONS) for a in ctx.args) or any(
        os.environ.get(v) for v in FLOWER_AUTH_VARIABLES
    )
    if get_api_settings().profile != "development" and not has_auth:
        fail(
            "Flower needs authentication outside development: pass --basic-auth=user:password or set FLOWER_BASIC_AUTH"
        )
    os.execv(sys.executable, flower_argv(ctx.args))
