"""Is this source going to work? ``sourcecheck check`` runs the connector's check from this
machine, directly; ``sourcecheck test`` sends the test through the API (the client library)
and follows it to its result. Both print each step with its timing, then the verdict."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from api.accounts import organization_for_token
from api.db import get_engine
from api.settings import get_api_settings
from cli.console import EXIT_FAILED, EXIT_NO_RESULT, fail, fail_fields
from connectors.base import CheckResult, CheckStatus, Failure, Step, StepStatus, run_check
from connectors.errors import FailureType, InvalidConfiguration, UnknownConnector
from connectors.registry import get_connector


def _marks() -> dict[str, str]:
    try:
        "✓✗·".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return {"succeeded": "+", "failed": "x", "skipped": "-"}
    return {"succeeded": "✓", "failed": "✗", "skipped": "·"}


STEP_WIDTH = 12
"""The width of a step's name when the steps are printed as they come (their longest is not known yet)."""


def _print_step(step: Step, width: int) -> None:
    """One step, its timing and its message on a line."""
    colors = {"succeeded": "green", "failed": "red"}
    mark = typer.style(_marks().get(step.status, "?"), fg=colors.get(step.status))
    timing = "" if step.status == "skipped" else f"{step.duration_ms:.1f} ms"
    message = step.message or step.status
    if step.status == "skipped":
        message = typer.style(message, dim=True)
    typer.echo(f"  {mark} {step.name:<{width}}  {timing:>10}  {message}")


def _print_verdict(result: CheckResult, printed: frozenset[str] = frozenset()) -> None:
    """The steps (but those ``printed`` already), one a line with their timing, then the
    verdict (and the hint on failure)."""
    marks = _marks()
    width = STEP_WIDTH if printed else max((len(s.name) for s in result.steps), default=0)
    for step in result.steps:
        if step.name not in printed:
            _print_step(step, width)
    took = f" in {result.duration_ms:.1f} ms" if result.duration_ms else ""
    failure = result.failure
    if failure is None:
        typer.echo(typer.style(f"{marks['succeeded']} succeeded{took}: the source works", fg="green", bold=True))
        return
    retry = ", retryable" if failure.retryable else ", not retryable"
    typer.echo(typer.style(f"{marks['failed']} {result.status}{took} ({failure.type}{retry})", fg="red", bold=True))
    if failure.message:
        typer.echo(f"  {failure.message}")
    if failure.hint:
        typer.echo(f"  hint: {failure.hint}")


def _failed(kind: FailureType, message: str) -> CheckResult:
    return CheckResult(status=CheckStatus.FAILED, failure=Failure.of(kind, message))


def _while_waiting(what: str) -> AbstractContextManager[object]:
    """A spinner on stderr while ``what`` runs, when stderr is a terminal (nothing otherwise)."""
    console = Console(stderr=True)
    return console.status(what) if console.is_terminal else nullcontext()


def _read_config(path: str) -> dict[str, Any]:
    """The JSON object in ``path`` ('-': stdin). Errors name the file, never its content."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read the configuration file {path}: {getattr(exc, 'strerror', None) or type(exc).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"the configuration file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    if not isinstance(data, dict):
        fail(f"the configuration file {path} must hold a JSON object, not {type(data).__name__}")
    return data


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

    Prints each step (resolve, tcp, tls, authenticate, access...) with its timing, then the
    verdict, and on failure what went wrong and what to fix.

    Exit code: 0 the source works, 1 the check failed, 2 bad input (each bad configuration
    field is named, its value never shown).

    Example: sourcecheck check postgres --config db.json --timeout 5
    """
    data = _read_config(config)
    try:
        connector = get_connector(definition)
    except UnknownConnector as exc:
        fail(str(exc))
    try:
        parsed = connector.parse_config(data)
    except InvalidConfiguration as exc:
        fail_fields(f"the configuration is not valid for {definition}:", [(e.field, e.message) for e in exc.errors])

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
        _print_verdict(_failed(FailureType.TIMEOUT, f"The check did not end within {timeout:g} s"))
        raise typer.Exit(EXIT_FAILED)
    result = outcome[0]
    if isinstance(result, BaseException):
        _print_verdict(
            _failed(FailureType.INTERNAL_ERROR, f"The check stopped on an unexpected {type(result).__name__}")
        )
        raise typer.Exit(EXIT_FAILED)
    _print_verdict(result)
    raise typer.Exit(0 if result.failure is None else EXIT_FAILED)


def _organization_of_token(token: str) -> str | None:
    """The organization of ``token`` in this machine's metadata database, if it has one
    (the development setup); None when there is none. Never creates the database; one that
    is there but cannot be read ends the command, naming why."""
    settings = get_api_settings()
    if not settings.database_url and not (settings.data_dir / "sourcecheck.db").exists():
        return None
    try:
        with get_engine().connect() as connection:
            organization = organization_for_token(connection, token)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        fail(
            f"cannot find the token's organization in the database {settings.sqlalchemy_url()} "
            f"({reason[0] if reason else type(exc).__name__}): give --org org_... or SOURCECHECK_ORG"
        )
    return organization.id if organization else None


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
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Print each step as it happens (the test's event stream); Ctrl-C cancels the test."
        ),
    ] = False,
) -> None:
    """Test a source through the API (queued, run by a worker), stored or inline.

    Prints the same step view as `check`; follows the API's "still running" answers (202)
    until the result is final. With --follow, each step is printed as it happens (a spinner
    on the running one in a terminal), and Ctrl-C cancels the test and prints its result.

    Exit code: 0 the source works, 1 the check failed, 2 bad input (a refused token, an
    unknown source, an invalid configuration: each bad field is named), 3 no result (the API
    unreachable or busy, or no result within --poll-timeout).

    Examples:

      SOURCECHECK_TOKEN=sck_... sourcecheck test --source src_abc123 --org org_xyz789

      sourcecheck test --definition postgres --config db.json --token sck_... --org org_xyz789
    """
    try:  # lazily: the client is a package of its own, which only this command needs
        from sourcecheck_client import (
            APIConnectionError,
            APIError,
            AuthenticationError,
            Client,
            ConflictError,
            NotFoundError,
            PollTimeoutError,
            ValidationError,
        )
    except ImportError:
        fail("the sourcecheck-client package is not installed: pip install ./client")

    if (source is None) == (definition is None):
        fail("give --source src_... to test a stored source, or --definition NAME --config FILE to test inline")
    if definition is not None and config is None:
        fail("--config FILE is required with --definition")
    if not token:
        fail("an API key is required: --token sck_... or SOURCECHECK_TOKEN")
    configuration = _read_config(config) if config is not None else None
    organization = org or _organization_of_token(token)
    if not organization:
        fail("give the organization: --org org_... or SOURCECHECK_ORG")

    what = source or definition
    printed: frozenset[str] = frozenset()
    try:
        with Client(api_key=token, base_url=api_url, organization_id=organization) as client:
            with _while_waiting(f"Testing {what} through {api_url}..." if not follow else f"Sending {what}..."):
                result = client.knowledge_connectors.test_source(
                    source_id=source,
                    source_definition_id=definition,
                    configuration=configuration,
                    workspace_id=workspace,
                    name=name,
                    timeout=timeout,
                    poll_timeout=poll_timeout,
                    wait=0 if follow else None,  # following: the job's id at once, then its events
                    poll=not follow,
                )
            if follow and not result.final and result.job_id:
                typer.echo(f"{what}  job {result.job_id}: following its steps (Ctrl-C cancels it)")
                result, printed = follow_test(client, result.job_id, ConflictError)
    except ValueError as exc:  # a malformed --api-url
        fail(str(exc))
    except ValidationError as exc:
        fail_fields(exc.message, [(e.field, e.message) for e in exc.errors])
    except (AuthenticationError, NotFoundError) as exc:
        fail(exc.message)
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
    # The API's answer as a CheckResult. The client keeps a status or failure type a newer
    # server added as the text it sent: printed as such, hence the casts.
    failure = (
        Failure(cast(FailureType, info.type or "unknown"), info.message or "", info.hint or "", bool(info.retryable))
        if info and not result.succeeded
        else None
    )
    steps = [Step(s.name, cast(StepStatus, s.status), s.duration_ms, s.message) for s in (info.steps if info else [])]
    _print_verdict(
        CheckResult(
            status=CheckStatus.SUCCEEDED if result.succeeded else CheckStatus.FAILED,
            steps=steps,
            failure=failure,
            duration_ms=(info.duration_ms if info else None) or 0.0,
        ),
        printed,
    )
    raise typer.Exit(0 if result.succeeded else EXIT_FAILED)


def follow_test(client: Any, job_id: str, conflict: type[Exception]) -> tuple[Any, frozenset[str]]:
    """Print the test's steps as its event stream brings them; Ctrl-C cancels the test.
    Returns its final result and the names of the steps printed. (``client``: a
    sourcecheck_client.Client, imported lazily by the caller; ``conflict`` its ConflictError.)"""
    from sourcecheck_client import ResultEvent, StepEvent

    printed: set[str] = set()
    console = Console()
    spinner = console.status("") if console.is_terminal else None
    connectors = client.knowledge_connectors
    try:
        for event in connectors.stream_test(job_id):
            if isinstance(event, StepEvent) and event.running:
                if spinner is not None:
                    spinner.update(f"{event.name}...")
                    spinner.start()
            elif isinstance(event, StepEvent):
                if spinner is not None:
                    spinner.stop()
                step = Step(event.name, cast(StepStatus, event.status), float(event.duration_ms or 0), event.message)
                _print_step(step, STEP_WIDTH)
                printed.add(event.name)
            elif isinstance(event, ResultEvent):
                return event.result, frozenset(printed)
    except KeyboardInterrupt:
        if spinner is not None:
            spinner.stop()
        typer.echo("cancelling the test...", err=True)
        try:
            result = connectors.cancel_test(job_id)
        except conflict:  # it ended meanwhile: its result stands
            result = connectors.get_test_result(job_id)
        if not result.final:
            result = connectors.wait_for_result(job_id, poll_timeout=10)
        return result, frozenset(printed)
    finally:
        if spinner is not None:
            spinner.stop()
    return connectors.wait_for_result(job_id), frozenset(printed)
