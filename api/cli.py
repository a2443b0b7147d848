"""The ``sourcecheck`` command: accounts, keys, starting the system's processes, and checking sources
(directly with ``check``, or through the API with ``test``)."""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

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


def _fail(message: str) -> NoReturn:
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
def rekey() -> None:
    """Re-encrypt every stored source under the first key of SOURCECHECK_SECRET_KEYS.

    Key rotation: set SOURCECHECK_SECRET_KEYS=new,old everywhere, run this once, and when no
    test sent before the change is still queued, drop the old key.
    """
    from api.deps import get_cipher
    from api.sources import reencrypt_sources
    from worker.crypto import InvalidToken

    with _session() as session:
        try:
            count = reencrypt_sources(session, get_cipher())
        except InvalidToken:
            _fail("a stored source cannot be opened with any key of SOURCECHECK_SECRET_KEYS; nothing was changed")
    typer.echo(f"re-encrypted {count} sources under the first key", err=True)


@app.command()
def run(
    api_port: Annotated[int, typer.Option(help="Port of the API on 127.0.0.1.")] = 8000,
    flower_port: Annotated[int, typer.Option(help="Port of Flower on 127.0.0.1.")] = 5555,
) -> None:
    """Start the whole development system in the foreground: Redis (unless
    SOURCECHECK_REDIS_URL is set), the API on 127.0.0.1:8000, one worker and Flower on
    127.0.0.1:5555. A part that dies is started again (with a growing pause); one that dies 5
    times within 60 s stops everything. Ctrl-C stops all of it.

    Example: sourcecheck run --api-port 8000 --flower-port 5555
    """
    from api.stack import run_stack

    raise typer.Exit(run_stack(api_port=api_port, flower_port=flower_port))


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Start the HTTP API (uvicorn, with the bounds of api.server.uvicorn_argv).

    Example: sourcecheck api --host 0.0.0.0 --port 8000
    """
    from api.server import uvicorn_argv

    os.execv(sys.executable, uvicorn_argv(sys.executable, host, port))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Start a Celery worker; extra arguments go to `celery worker`.

    Example: sourcecheck worker -n worker2@%h --concurrency 16
    """
    os.execv(
        sys.executable,
        [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-E", "--loglevel", "INFO", *ctx.args],
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def flower(ctx: typer.Context) -> None:
    """Start the Flower dashboard; extra arguments go to `celery flower`.

    Example: sourcecheck flower --port 5555 --basic-auth=admin:secret

    Outside the development profile Flower refuses to start without authentication
    (--basic-auth/--auth/--oauth2 options or the FLOWER_BASIC_AUTH/FLOWER_AUTH variables).
    """
    from api.settings import get_api_settings

    auth_options = ("--basic-auth", "--basic_auth", "--auth", "--oauth2")
    has_auth = any(a.startswith(auth_options) for a in ctx.args) or any(
        os.environ.get(v) for v in ("FLOWER_BASIC_AUTH", "FLOWER_AUTH")
    )
    if get_api_settings().profile != "development" and not has_auth:
        _fail(
            "Flower needs authentication outside development: pass --basic-auth=user:password or set FLOWER_BASIC_AUTH"
        )
    os.execv(sys.executable, [sys.executable, "-m", "worker.flower", *ctx.args])  # celery flower, logging as we do


# --- check and test: is this source going to work? ------------------------------------------
# Exit codes of both: 0 the check succeeded, 1 it failed (the source does not work),
# 2 bad input (unknown definition, unreadable or invalid configuration, missing or refused
# token, unknown source), 3 no result (the API unreachable or busy, or no answer in time).

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NO_RESULT = 1, 2, 3


@dataclass
class _StepLine:
    name: str
    status: str
    duration_ms: float
    message: str | None


@dataclass
class _Verdict:
    status: str
    duration_ms: float | None = None
    type: str | None = None
    message: str | None = None
    hint: str | None = None
    retryable: bool | None = None
    steps: list[_StepLine] = field(default_factory=list)


def _marks() -> dict[str, str]:
    try:
        "✓✗·".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return {"succeeded": "+", "failed": "x", "skipped": "-"}
    return {"succeeded": "✓", "failed": "✗", "skipped": "·"}


def _print_verdict(verdict: _Verdict) -> None:
    """The steps, one a line with their timing, then the verdict (and the hint on failure)."""
    marks = _marks()
    colors = {"succeeded": "green", "failed": "red"}
    width = max((len(s.name) for s in verdict.steps), default=0)
    for step in verdict.steps:
        mark = typer.style(marks.get(step.status, "?"), fg=colors.get(step.status))
        timing = "" if step.status == "skipped" else f"{step.duration_ms:.1f} ms"
        message = step.message or step.status
        if step.status == "skipped":
            message = typer.style(message, dim=True)
        typer.echo(f"  {mark} {step.name:<{width}}  {timing:>10}  {message}")
    took = f" in {verdict.duration_ms:.1f} ms" if verdict.duration_ms is not None else ""
    if verdict.status == "succeeded":
        typer.echo(typer.style(f"{marks['succeeded']} succeeded{took}: the source works", fg="green", bold=True))
        return
    retry = "" if verdict.retryable is None else (", retryable" if verdict.retryable else ", not retryable")
    typer.echo(
        typer.style(
            f"{marks['failed']} {verdict.status}{took} ({verdict.type or 'unknown'}{retry})", fg="red", bold=True
        )
    )
    if verdict.message:
        typer.echo(f"  {verdict.message}")
    if verdict.hint:
        typer.echo(f"  hint: {verdict.hint}")


def _while_waiting(what: str) -> AbstractContextManager[object]:
    """A spinner on stderr while ``what`` runs, when stderr is a terminal (nothing otherwise)."""
    from rich.console import Console

    console = Console(stderr=True)
    return console.status(what) if console.is_terminal else nullcontext()


def _read_config(path: str) -> dict[str, Any]:
    """The JSON object in ``path`` ('-': stdin). Errors name the file, never its content."""
    import json

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read the configuration file {path}: {getattr(exc, 'strerror', None) or type(exc).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"the configuration file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    if not isinstance(data, dict):
        _fail(f"the configuration file {path} must hold a JSON object, not {type(data).__name__}")
    return data


def _fail_fields(title: str, errors: list[tuple[str, str]]) -> NoReturn:
    typer.echo(f"error: {title}", err=True)
    for name, message in errors:
        typer.echo(f"  {name}: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def check(
    definition: Annotated[
        str, typer.Argument(help="The source definition: postgres, mysql, http, s3, ...", show_default=False)
    ],
    config: Annotated[
        str,
        typer.Option(
            "--config", "-c", help="A JSON file with the configuration ('-': read stdin).", show_default=False
        ),
    ],
    timeout: Annotated[float, typer.Option(min=0.5, max=60.0, help="The check's deadline in seconds.")] = 10.0,
) -> None:
    """Check a source from this machine, directly: no API, no queue, no worker.

    Prints each step (resolve, tcp, tls, authenticate, access...) with its timing, then the verdict, and on failure what went wrong and what to fix.

    Exit code: 0 the source works, 1 the check failed, 2 bad input (each bad configuration field is named, its value never shown).

    Example: sourcecheck check postgres --config db.json --timeout 5
    """
    import asyncio
    import threading

    from connectors.base import run_check
    from connectors.errors import InvalidConfiguration, UnknownConnector
    from connectors.registry import get_connector

    data = _read_config(config)
    try:
        connector = get_connector(definition)
    except UnknownConnector as exc:
        _fail(str(exc))
    try:
        parsed = connector.parse_config(data)
    except InvalidConfiguration as exc:
        _fail_fields(f"the configuration is not valid for {definition}:", [(e.field, e.message) for e in exc.errors])

    # run_check keeps its deadline for code that can be cancelled; a connector stuck in C
    # code would not be, so the check runs in a thread this command stops waiting for.
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(asyncio.run(run_check(connector, parsed, timeout=timeout)))
        except BaseException as exc:  # run_check catches the connector's faults; this would be ours
            outcome.append(exc)

    runner = threading.Thread(target=work, name="check", daemon=True)
    with _while_waiting(f"Checking {definition} (at most {timeout:g} s)..."):
        runner.start()
        runner.join(timeout + 5)
    if not outcome:
        _print_verdict(_Verdict(status="failed", type="timeout", message=f"The check did not end within {timeout:g} s"))
        raise typer.Exit(EXIT_FAILED)
    result = outcome[0]
    if isinstance(result, BaseException):
        _print_verdict(
            _Verdict(
                status="failed",
                type="internal_error",
                message=f"The check stopped on an unexpected {type(result).__name__}",
            )
        )
        raise typer.Exit(EXIT_FAILED)
    failure = result.failure
    _print_verdict(
        _Verdict(
            status=result.status.value,
            duration_ms=result.duration_ms,
            type=failure.type.value if failure else None,
            message=failure.message if failure else None,
            hint=failure.hint if failure else None,
            retryable=failure.retryable if failure else None,
            steps=[_StepLine(s.name, s.status.value, s.duration_ms, s.message) for s in result.steps],
        )
    )
    raise typer.Exit(0 if failure is None else EXIT_FAILED)


def _organization_of_token(token: str) -> str | None:
    """The organization of ``token`` in this machine's metadata database, if it has one
    (the development setup); None otherwise. Never creates the database."""
    try:
        from api.settings import get_api_settings

        settings = get_api_settings()
        if not settings.database_url and not (settings.data_dir / "sourcecheck.db").exists():
            return None
        from api.accounts import organization_for_token
        from api.db import get_engine

        with get_engine().connect() as connection:
            organization = organization_for_token(connection, token)
        return organization.id if organization else None
    except Exception:
        return None


@app.command("test")
def test_through_api(
    source: Annotated[
        str | None, typer.Option("--source", help="Test this stored source (src_...).", show_default=False)
    ] = None,
    definition: Annotated[
        str | None,
        typer.Option("--definition", help="Test inline: the source definition (postgres, ...).", show_default=False),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="A JSON file with the configuration: inline, or fields overriding the stored source's ('-': stdin).",
            show_default=False,
        ),
    ] = None,
    org: Annotated[
        str | None,
        typer.Option(
            "--org",
            envvar="SOURCECHECK_ORG",
            help="The organization (org_...); default: the token's, when this machine's database knows it.",
            show_default=False,
        ),
    ] = None,
    workspace: Annotated[
        str | None, typer.Option("--workspace", help="Inline: the workspace context.", show_default=False)
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Inline: a name for the source.", show_default=False)
    ] = None,
    api_url: Annotated[
        str, typer.Option("--api-url", envvar="SOURCECHECK_API_URL", help="The API's base URL.")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="SOURCECHECK_TOKEN", help="The API key (sck_...).", show_default=False),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.5, max=60.0, help="The check's deadline in seconds (default: the API's, 10).", show_default=False
        ),
    ] = None,
    poll_timeout: Annotated[
        float,
        typer.Option(
            min=1.0, help="How long to wait for the result in all, polling when the API answers 'still running'."
        ),
    ] = 120.0,
) -> None:
    """Test a source through the API (queued, run by a worker), stored or inline.

    Prints the same step view as `check`; follows the API's "still running" answers (202) until the result is final.

    Exit code: 0 the source works, 1 the check failed, 2 bad input (a refused token, an unknown source, an invalid configuration: each bad field is named), 3 no result (the API unreachable or busy, or no result within --poll-timeout).

    Examples:

      SOURCECHECK_TOKEN=sck_... sourcecheck test --source src_abc123 --org org_xyz789

      sourcecheck test --definition postgres --config db.json --token sck_... --org org_xyz789
    """
    try:
        from sourcecheck_client import (
            APIConnectionError,
            APIError,
            AuthenticationError,
            Client,
            NotFoundError,
            PollTimeoutError,
            ValidationError,
        )
    except ImportError:
        _fail("the sourcecheck-client package is not installed: pip install ./client")

    if (source is None) == (definition is None):
        _fail("give --source src_... to test a stored source, or --definition NAME --config FILE to test inline")
    if definition is not None and config is None:
        _fail("--config FILE is required with --definition")
    if not token:
        _fail("an API key is required: --token sck_... or SOURCECHECK_TOKEN")
    configuration = _read_config(config) if config is not None else None
    organization = org or _organization_of_token(token)
    if not organization:
        _fail("give the organization: --org org_... or SOURCECHECK_ORG")

    what = source or definition
    try:
        with Client(api_key=token, base_url=api_url, organization_id=organization) as client:
            with _while_waiting(f"Testing {what} through {api_url}..."):
                result = client.knowledge_connectors.test_source(
                    source_id=source,
                    source_definition_id=definition,
                    configuration=configuration,
                    workspace_id=workspace,
                    name=name,
                    timeout=timeout,
                    poll_timeout=poll_timeout,
                )
    except ValueError as exc:  # a malformed --api-url
        _fail(str(exc))
    except ValidationError as exc:
        _fail_fields(exc.message, [(e.field, e.message) for e in exc.errors])
    except (AuthenticationError, NotFoundError) as exc:
        _fail(exc.message)
    except PollTimeoutError as exc:
        typer.echo(f"error: no result within {poll_timeout:g} s; the test {exc.result.job_id} may still end", err=True)
        raise typer.Exit(EXIT_NO_RESULT) from None
    except (APIConnectionError, APIError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_NO_RESULT) from None

    info = result.job_info
    if info is not None:
        typer.echo(
            f"{info.source_definition_id} {info.source_id or info.name or ''}  job {info.job_id}"
            + (f" on {info.worker}" if info.worker else "")
        )
    _print_verdict(
        _Verdict(
            status=result.status,
            duration_ms=info.duration_ms if info else None,
            type=info.type if info else None,
            message=info.message if info else None,
            hint=info.hint if info else None,
            retryable=info.retryable if info else None,
            steps=[_StepLine(s.name, s.status, s.duration_ms, s.message) for s in (info.steps if info else [])],
        )
    )
    raise typer.Exit(0 if result.succeeded else EXIT_FAILED)


# --- db: the metadata database's schema ---------------------------------------------------

db_app = typer.Typer(
    help="The metadata database's schema (Alembic migrations in api/migrations/).", no_args_is_help=True
)
app.add_typer(db_app, name="db")


def _on_database(action: Any) -> Any:
    """``action()``; a database that cannot be reached or refuses ends the command with one
    line (the driver's message, which has no password) and exit status 2."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return action()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        _fail(f"database: {reason[0] if reason else type(exc).__name__}")


@db_app.command("upgrade")
def db_upgrade(
    sql: Annotated[bool, typer.Option("--sql", help="Print the SQL it would run instead of running it.")] = False,
) -> None:
    """Migrate the metadata database (SOURCECHECK_DATABASE_URL) to the schema this version needs.

    Run it once per release before starting the API in production (the development
    profile does it on startup). Safe to run again, and from several places at once.

    Example: sourcecheck db upgrade
    """
    from api.db import describe, upgrade_schema, upgrade_sql

    if sql:
        _on_database(upgrade_sql)
        return
    before, after = _on_database(upgrade_schema)
    if before == after:
        typer.echo(f"database already at revision {describe(after)} (head)")
    else:
        typer.echo(f"database upgraded from revision {describe(before)} to {describe(after)} (head)")


@db_app.command("current")
def db_current(
    check: Annotated[bool, typer.Option("--check", help="Exit with status 1 unless the database is at head.")] = False,
) -> None:
    """Print the database's schema revision (stdout) and whether it is at head (stderr).

    Example: sourcecheck db current --check
    """
    from api.db import describe, schema_state

    state = _on_database(schema_state)
    typer.echo(describe(state.current))
    if state.up_to_date:
        typer.echo(f"at head ({describe(state.heads)})", err=True)
        return
    if state.unknown:
        typer.echo(f"unknown to this version, whose head is {describe(state.heads)}", err=True)
    else:
        typer.echo(f"behind head {describe(state.heads)}: run `sourcecheck db upgrade`", err=True)
    if check:
        raise typer.Exit(1)


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Option("-m", "--message", help="What the migration changes.")],
    empty: Annotated[bool, typer.Option("--empty", help="An empty migration to fill by hand.")] = False,
) -> None:
    """For developers: write the next migration, generated from the model changes.

    The file goes into api/migrations/versions; its operations are the difference between
    api/models.py and the development database (upgraded to head first). Review it, then
    commit it with the model change.

    Example: sourcecheck db revision -m "add source.description"
    """
    from api.db import init_db, new_revision

    init_db()  # development: the database at head first, so the difference is the model change only
    typer.echo(new_revision(message, autogenerate=not empty))
