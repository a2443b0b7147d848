"""Organizations, their workspaces and their API keys.

A token is ``sck_<key id>_<secret>``. Only the SHA-256 of the whole token is stored; the
key id finds the row, and the hashes are compared in constant time. A token has 256
bits of randomness, so a fast hash is enough (no password stretching is needed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import sqlalchemy as sql
from sqlalchemy import Connection, bindparam
from sqlmodel import Session, col, select

from api.errors import AccountError
from api.models import ORG_ID_PATTERN, ApiKey, Organization, Workspace, utcnow

TOKEN_RE = re.compile(r"^sck_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_organization(session: Session, *, name: str, organization_id: str | None = None) -> Organization:
    """A new organization with its default workspace."""
    org_id = organization_id or new_id("org")
    if not re.match(ORG_ID_PATTERN, org_id):
        raise AccountError(f"organization id {org_id!r} must look like org_<letters, digits, _ or ->")
    if session.get(Organization, org_id) is not None:
        raise AccountError(f"organization {org_id} exists already")
    org = Organization(id=org_id, name=name)
    session.add(org)
    session.add(Workspace(id=new_id("ws"), organization_id=org_id, name="Default", is_default=True))
    session.commit()
    session.refresh(org)
    return org


def create_api_key(session: Session, *, organization_id: str) -> tuple[ApiKey, str]:
    """A new key for the organization, and its token (shown once, never stored)."""
    if session.get(Organization, organization_id) is None:
        raise AccountError(f"organization {organization_id} does not exist")
    key_id = secrets.token_hex(6)
    token = f"sck_{key_id}_{secrets.token_urlsafe(32)}"
    key = ApiKey(id=key_id, organization_id=organization_id, token_hash=_hash(token))
    session.add(key)
    session.commit()
    return key, token


def revoke_api_key(session: Session, *, key_id: str) -> None:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise AccountError(f"API key {key_id} does not exist")
    key.revoked_at = utcnow()
    session.add(key)
    session.commit()


# Built once and run as a Core query: every authenticated request makes this read, which
# needs none of the ORM session's tracking.
_TOKEN_LOOKUP = (
    sql.select(
        col(Organization.id),
        col(Organization.name),
        col(Organization.created_at),
        col(ApiKey.token_hash),
        col(ApiKey.revoked_at),
    )
    .join(ApiKey, col(ApiKey.organization_id) == col(Organization.id))
    .where(col(ApiKey.id) == bindparam("key_id"))
)


def organization_for_token(connection: Connection, token: str) -> Organization | None:
    """The organization a valid, unrevoked token belongs to; None for anything else."""
    match = TOKEN_RE.match(token)
    if not match:
        return None
    row = connection.execute(_TOKEN_LOOKUP, {"key_id": match.group(1)}).first()
    if row is None:
        return None
    organization_id, name, created_at, token_hash, revoked_at = row
    if revoked_at is not None or not hmac.compare_digest(token_hash, _hash(token)):
        return None
    return Organization(id=organization_id, name=name, created_at=created_at)


def default_workspace(session: Session, organization_id: str) -> Workspace:
    workspace = session.exec(
        select(Workspace).where(Workspace.organization_id == organization_id, Workspace.is_default == sql.true())
    ).first()
    if workspace is None:  # an organization made before workspaces existed
        workspace = Workspace(id=new_id("ws"), organization_id=organization_id, name="Default", is_default=True)
        session.add(workspace)
        session.commit()
    return workspace


def create_workspace(session: Session, *, organization_id: str, name: str) -> Workspace:
    workspace = Workspace(id=new_id("ws"), organization_id=organization_id, name=name)
    session.add(workspace)
    session.commit()
    session.refresh(workspace)
    return workspace


def list_workspaces(session: Session, *, organization_id: str) -> list[Workspace]:
    return list(session.exec(select(Workspace).where(Workspace.organization_id == organization_id)).all())


def find_workspace(session: Session, *, organization_id: str, workspace_id: str) -> Workspace | None:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None or workspace.organization_id != organization_id:
        return None
    return workspace
