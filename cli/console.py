"""How a command ends when it cannot do its work: one line on stderr and an exit code.

Exit codes of every command: 0 done (for ``check`` and ``test``: the source works), 1 it
failed (the source does not work, or the database's schema is not the one this version
needs), 2 bad input (an unknown name, an unreadable or invalid configuration, a refused
token, a database that cannot be reached), 3 no result (the API unreachable or busy, or
no answer in time).
"""

from __future__ import annotations

from typing import NoReturn

import typer

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NO_RESULT = 1, 2, 3


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def fail_fields(title: str, errors: list[tuple[str, str]]) -> NoReturn:
    """``title``, then each bad field on a line of its own with what is wrong (never its value)."""
    typer.echo(f"error: {title}", err=True)
    for name, message in errors:
        typer.echo(f"  {name}: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)
