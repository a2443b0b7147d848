"""The ``sourcecheck`` command: accounts, keys, and starting the system's processes."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from cryptography.fernet import Fernet
from sqlmodel import Session

app = typer.Typer(help="sourcecheck: test whether data sources will work.", no_args_is_help=True, add_completion=False)
org_app = typer.Typer(help="Organizations.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(key_app, name="apikey")


def _session() -> Session:
    from api.db import get_engine, init_db

    init_db()
    return Session(get_engine())


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@org_app.command("create")
def org_create(
    id: Annotated[str | None, typer.Option("--id", help="The id to give it (org_...); default: a new one.")] = None,
    name: Annotated[str, typer.Option("--name", help="A display name.")] = "My organization",
) -> None:
    """Create an organization (with its default workspace) and print its id.

    Example: sourcecheck org create --id org_xyz789 --name "Acme"
    """
    from api.accounts import AccountError, create_organization

    with _session() as session:
        try:
            org = create_organization(session, name=name, organization_id=id)
        except AccountError as exc:
            _fail(str(exc))
        typer.echo(org.id)


@key_app.command("create")
def apikey_create(org: Annotated[str, typer.Option("--org", help="The organization id (org_...).")]) -> None:
    """Create an API key for an organization and print its token (shown only this once).

    Example: TOKEN=$(sourcecheck apikey create --org org_xyz789)
    """
    from api.accounts import AccountError, create_api_key

    with _session() as session:
        try:
            key, token = create_api_key(session, organization_id=org)
        except AccountError as exc:
            _fail(str(exc))
        typer.echo(f"created API key {key.id} for {org}", err=True)
        typer.echo(token)


@key_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="The key id: the part after sck_ in the token.")]) -> None:
    """Revoke an API key at once.

    Example: sourcecheck apikey revoke 3f2a9c1d0e4b
    """
    from api.accounts import AccountError, revoke_api_key

    with _session() as session:
        try:
            revoke_api_key(session, key_id=key_id)
        except AccountError as exc:
            _fail(str(exc))
        typer.echo(f"revoked {key_id}", err=True)


@app.command()
def keygen() -> None:
    """Print a new encryption key for SOURCECHECK_SECRET_KEYS.

    Example: export SOURCECHECK_SECRET_KEYS=$(sourcecheck keygen)
    """
    typer.echo(Fernet.generate_key().decode())


@app.command()
def run() -> None:
    """Start the whole development system in the foreground: Redis (unless
    SOURCECHECK_REDIS_URL is set), the API on 127.0.0.1:8000, one worker and Flower on
    127.0.0.1:5555. Ctrl-C stops all of it.

    Example: sourcecheck run
    """
    from api.stack import run_stack

    raise typer.Exit(run_stack())


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Start the HTTP API.

    Example: sourcecheck api --host 0.0.0.0 --port 8000
    """
    os.execv(sys.executable, [sys.executable, "-m", "uvicorn", "api.main:app", "--host", host, "--port", str(port), "--no-server-header"])


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Start a Celery worker; extra arguments go to `celery worker`.

    Example: sourcecheck worker -n worker2@%h --concurrency 16
    """
    os.execv(sys.executable, [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-E", "--loglevel", "INFO", *ctx.args])


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def flower(ctx: typer.Context) -> None:
    """Start the Flower dashboard; extra arguments go to `celery flower`.

    Example: sourcecheck flower --port 5555 --basic-auth=admin:secret

    Outside the development profile Flower refuses to start without authentication
    (--basic-auth/--auth/--oauth2 options or the FLOWER_BASIC_AUTH/FLOWER_AUTH variables).
    """
    from api.settings import get_api_settings

    auth_options = ("--basic-auth", "--basic_auth", "--auth", "--oauth2")
    has_auth = any(a.startswith(auth_options) for a in ctx.args) or any(os.environ.get(v) for v in ("FLOWER_BASIC_AUTH", "FLOWER_AUTH"))
    if get_api_settings().profile != "development" and not has_auth:
        _fail("Flower needs authentication outside development: pass --basic-auth=user:password or set FLOWER_BASIC_AUTH")
    os.execv(sys.executable, [sys.executable, "-m", "celery", "-A", "worker.app", "flower", *ctx.args])
