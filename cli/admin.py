"""Accounts and keys: ``sourcecheck org``, ``sourcecheck apikey``, ``keygen`` and ``rekey``."""

from __future__ import annotations

from typing import Annotated

import typer
from cryptography.fernet import Fernet
from sqlmodel import Session

from api.accounts import create_api_key, create_organization, revoke_api_key
from api.db import get_engine
from api.errors import AccountError
from api.settings import get_api_settings
from api.sources import reencrypt_sources
from api.webhooks import reencrypt_webhooks
from cli.console import fail
from cli.db import open_database
from worker.crypto import Cipher, InvalidToken

org_app = typer.Typer(help="Organizations.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)


def _session() -> Session:
    open_database()
    return Session(get_engine())


@org_app.command("create")
def org_create(
    id: Annotated[str | None, typer.Option("--id", help="The id to give it (org_...); default: a new one.")] = None,
    name: Annotated[str, typer.Option("--name", help="A display name.")] = "My organization",
) -> None:
    """Create an organization (with its default workspace) and print its id.

    Example: sourcecheck org create --id org_xyz789 --name "Acme"
    """
    with _session() as session:
        try:
            org = create_organization(session, name=name, organization_id=id)
        except AccountError as exc:
            fail(str(exc))
        typer.echo(org.id)


@key_app.command("create")
def apikey_create(org: Annotated[str, typer.Option("--org", help="The organization id (org_...).")]) -> None:
    """Create an API key for an organization and print its token (shown only this once).

    Example: TOKEN=$(sourcecheck apikey create --org org_xyz789)
    """
    with _session() as session:
        try:
            key, token = create_api_key(session, organization_id=org)
        except AccountError as exc:
            fail(str(exc))
        typer.echo(f"created API key {key.id} for {org}", err=True)
        typer.echo(token)


@key_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="The key id: the part after sck_ in the token.")]) -> None:
    """Revoke an API key at once.

    Example: sourcecheck apikey revoke 3f2a9c1d0e4b
    """
    with _session() as session:
        try:
            revoke_api_key(session, key_id=key_id)
        except AccountError as exc:
            fail(str(exc))
        typer.echo(f"revoked {key_id}", err=True)


def keygen() -> None:
    """Print a new encryption key for SOURCECHECK_SECRET_KEYS.

    Example: export SOURCECHECK_SECRET_KEYS=$(sourcecheck keygen)
    """
    typer.echo(Fernet.generate_key().decode())


def rekey() -> None:
    """Re-encrypt every stored source under the first key of SOURCECHECK_SECRET_KEYS.

    Key rotation: set SOURCECHECK_SECRET_KEYS=new,old everywhere, run this once, and when no
    test sent before the change is still queued, drop the old key.
    """
    cipher = Cipher(get_api_settings().fernet_keys())
    with _session() as session:
        try:
            count = reencrypt_sources(session, cipher)
        except InvalidToken:
            fail("a stored source cannot be opened with any key of SOURCECHECK_SECRET_KEYS; nothing was changed")
        try:
            hooks = reencrypt_webhooks(session, cipher)
        except InvalidToken:
            fail("a webhook's secret cannot be opened with any key of SOURCECHECK_SECRET_KEYS; it was left as it was")
    typer.echo(f"re-encrypted {count} sources under the first key, and {hooks} webhook secrets", err=True)
