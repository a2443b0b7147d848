"""Stored sources: create, list, read, change, delete. Secrets are masked in every answer."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from api import sources
from api.deps import CipherDep, CurrentOrg, SessionDep
from api.models import ErrorResponse, Page, SourceCreate, SourcePublic, SourceUpdate

router = APIRouter(
    tags=["Sources"],
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)


@router.post("/sources", response_model=SourcePublic, status_code=201, summary="Create a source")
def create_source(org: CurrentOrg, body: SourceCreate, session: SessionDep, cipher: CipherDep) -> SourcePublic:
    source = sources.create_source(session, cipher, organization_id=org.id, body=body)
    return sources.to_public(cipher, source)


@router.get("/sources", response_model=Page[SourcePublic], summary="List sources")
def list_sources(org: CurrentOrg, session: SessionDep, cipher: CipherDep, workspace_id: str | None = Query(None)) -> Page[SourcePublic]:
    data = [sources.to_public(cipher, s) for s in sources.list_sources(session, org.id, workspace_id)]
    return Page(data=data, count=len(data))


@router.get("/sources/{source_id}", response_model=SourcePublic, summary="Get a source")
def get_source(org: CurrentOrg, source_id: str, session: SessionDep, cipher: CipherDep) -> SourcePublic:
    return sources.to_public(cipher, sources.find_source(session, org.id, source_id))


@router.patch("/sources/{source_id}", response_model=SourcePublic, summary="Change a source")
def update_source(org: CurrentOrg, source_id: str, body: SourceUpdate, session: SessionDep, cipher: CipherDep) -> SourcePublic:
    source = sources.find_source(session, org.id, source_id)
    return sources.to_public(cipher, sources.update_source(session, cipher, source=source, body=body))


@router.delete("/sources/{source_id}", status_code=204, summary="Delete a source")
def delete_source(org: CurrentOrg, source_id: str, session: SessionDep) -> Response:
    sources.delete_source(session, source=sources.find_source(session, org.id, source_id))
    return Response(status_code=204)
