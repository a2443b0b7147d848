"""Dependencies of the routes, as ``Annotated`` aliases so signatures read as prose."""

from __future__ import annotations

from functools import cache
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from sqlmodel import Session

from api.accounts import organization_for_token
from api.db import get_engine, get_session, run_db
from api.errors import NotFound, Unauthorized
from api.models import DEFINITION_ID_PATTERN, ID_PATTERN, ORG_ID_PATTERN, Organization
from api.settings import ApiSettings, get_api_settings
from worker.crypto import Cipher
from worker.jobs import JobStore

SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[ApiSettings, Depends(get_api_settings)]


@cache
def get_cipher() -> Cipher:
    return Cipher(get_api_settings().fernet_keys())


# Dependencies are coroutines where they can be: FastAPI runs a plain function in the
# threadpool, a hop that costs more than these functions themselves.
async def _cipher_dependency() -> Cipher:
    return get_cipher()


CipherDep = Annotated[Cipher, Depends(_cipher_dependency)]


def job_store(request: Request) -> JobStore:
    """The API process's JobStore (opened by the app's lifespan)."""
    store: JobStore = request.app.state.job_store
    return store


OrganizationId = Annotated[
    str,
    Path(
        pattern=ORG_ID_PATTERN,
        description="The unique identifier of the organization (format: `org_*`).",
        examples=["org_xyz789"],
    ),
]
# Malformed ids are 422 before anything is looked up; well-formed unknown ones are 404.
SourceId = Annotated[str, Path(pattern=ID_PATTERN, description="The source's id (`src_*`).", examples=["src_abc123"])]
JobId = Annotated[str, Path(pattern=ID_PATTERN, description="The test's job id (`job_*`).", examples=["job_5f0c"])]
DefinitionIdParam = Annotated[
    str, Path(pattern=DEFINITION_ID_PATTERN, description="A source definition's id.", examples=["postgres"])
]


async def current_organization(
    organization_id: OrganizationId,
    authorization: Annotated[str | None, Header(description="`Bearer <API key>`")] = None,
) -> Organization:
    """The organization of the path, if the bearer token belongs to it.

    401 without a valid token; 404 when the token belongs to another organization (the
    same answer as for an organization that does not exist, so nothing is revealed).
    """
    organization = await organization_of_bearer(authorization)
    if organization.id != organization_id:
        raise NotFound(f"Organization {organization_id} not found")
    return organization


async def organization_of_bearer(authorization: str | None) -> Organization:
    """The organization of an ``Authorization: Bearer <token>`` header; 401 without a valid token."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    organization = await run_db(_organization_for_token, token.strip())
    if organization is None:
        raise Unauthorized("The API key is not valid or has been revoked")
    return organization


def _organization_for_token(token: str) -> Organization | None:
    # A connection of its own, given back at once: a test request must not hold a database
    # connection while it awaits its result.
    with get_engine().connect() as connection:
        return organization_for_token(connection, token)


CurrentOrg = Annotated[Organization, Depends(current_organization)]
