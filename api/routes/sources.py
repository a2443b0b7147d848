"""Stored sources: create, list, read, change, delete. Secrets are masked in every answer."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from api import sources
from api.deps import CipherDep, CurrentOrg, SessionDep, SourceId
from api.models import ID_PATTERN, ORGANIZATION_ERRORS, Page, SourceCreate, SourcePublic, SourceUpdate, error_responses

router = APIRouter(
    tags=["Sources"],
    responses=error_responses(*ORGANIZATION_ERRORS),
)


@router.post("/sources", response_model=SourcePublic, status_code=201, summary="Create a source")
def create_source(org: CurrentOrg, body: SourceCreate, session: SessionDep, cipher: CipherDep) -> SourcePublic:
    source = sources.create_source(session, cipher, organization_id=org.id, body=body)
    return sources.to_public(cipher, source)


@router.get("/sources", response_model=Page[SourcePublic], summary="List sources")
def list_sources(
    org: CurrentOrg, session: SessionDep, cipher: CipherDep, workspace_id: str | None = Query(None, pattern=ID_PATTERN)
) -> Page[SourcePublic]:
    data = [
        sources.to_public(cipher, s)
        for s in sources.list_sources(session, organization_id=org.id, workspace_id=workspace_id)
    ]
    return Page(data=data, count=len(data))


@router.get("/sources/{source_id}", response_model=SourcePublic, summary="Get a source")
def get_source(org: CurrentOrg, source_id: SourceId, session: SessionDep, cipher: CipherDep) -> SourcePublic:
    return sources.to_public(cipher, sources.find_source(session, organization_id=org.id, source_id=source_id))


@router.patch("/sources/{source_id}", response_model=SourcePublic, summary="Change a source")
def update_source(
    org: CurrentOrg, source_id: SourceId, body: SourceUpdate, session: SessionDep, cipher: CipherDep
) -> SourcePublic:
    source = sources.find_source(session, organization_id=org.id, source_id=source_id)
    return sources.to_public(cipher, sources.update_source(session, cipher, source=source, body=body))


@router.delete("/sources/{source_id}", status_code=204, summary="Delete a source")
def delete_source(org: CurrentOrg, source_id: SourceId, session: SessionDep) -> Response:
    sources.delete_source(session, source=sources.find_source(session, organization_id=org.id, source_id=source_id))
    return Response(status_code=204)
