"""The ``sourcecheck`` command (``app``): each command lives in the module named for what it does."""

from __future__ import annotations

import typer

from cli import admin, check, db, serve

app = typer.Typer(
    help="sourcecheck: test whether data sources will work.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # the paragraphs of a docstring are rewrapped to the terminal's width
)

app.add_typer(admin.org_app, name="org")
app.add_typer(admin.key_app, name="apikey")
app.command()(admin.keygen)
app.command()(admin.rekey)

app.command()(serve.run)
app.command("api")(serve.serve_api)
app.command(context_settings=serve.PASS_THROUGH)(serve.worker)
app.command(context_settings=serve.PASS_THROUGH)(serve.flower)

app.command()(check.check)
app.command("test")(check.test_through_api)

app.add_typer(db.app, name="db")
