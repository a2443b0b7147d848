"""Stored sources: create, list, read, change, delete, and their test history. Secrets are
masked in every answer."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from api import history, sources
from api.deps import CipherDep, CurrentOrg, SessionDep, SourceId
from api.models import (
    ID_PATTERN,
    ORGANIZATION_ERRORS,
    Page,
    SourceCreate,
    SourcePublic,
    SourceUpdate,
    TestRecordPublic,
    error_responses,
)

router = APIRouter(
    tags=["Sources"],
    responses=error_responses(*ORGANIZATION_ERRORS),
)

MAX_PAGE = 200


@router.post("/sources", response_model=SourcePublic, status_code=201, summary="Create a source")
def create_source(org: CurrentOrg, body: SourceCreate, session: SessionDep, cipher: CipherDep) -> SourcePublic:
    source = sources.create_source(session, cipher, organization_id=org.id, body=body)
    return sources.to_public(cipher, source)  # no test yet: last_test is null


@router.get("/sources", response_model=Page[SourcePublic], summary="List sources")
def list_sources(
    org: CurrentOrg, session: SessionDep, cipher: CipherDep, workspace_id: str | None = Query(None, pattern=ID_PATTERN)
) -> Page[SourcePublic]:
    found = sources.list_sources(session, organization_id=org.id, workspace_id=workspace_id)
    last = history.last_tests(session, [s.id for s in found])
    data = [sources.to_public(cipher, s, last.get(s.id)) for s in found]
    return Page(data=data, count=len(data))


@router.get("/sources/{source_id}", response_model=SourcePublic, summary="Get a source")
def get_source(org: CurrentOrg, source_id: SourceId, session: SessionDep, cipher: CipherDep) -> SourcePublic:
    source = sources.find_source(session, organization_id=org.id, source_id=source_id)
    return sources.to_public(cipher, source, history.last_tests(session, [source.id]).get(source.id))


@router.patch("/sources/{source_id}", response_model=SourcePublic, summary="Change a source")
def update_source(
    org: CurrentOrg, source_id: SourceId, body: SourceUpdate, session: SessionDep, cipher: CipherDep
) -> SourcePublic:
    source = sources.find_source(session, organization_id=org.id, source_id=source_id)
    source = sources.update_source(session, cipher, source=source, body=body)
    return sources.to_public(cipher, source, history.last_tests(session, [source.id]).get(source.id))


@router.delete("/sources/{source_id}", status_code=204, summary="Delete a source")
def delete_source(org: CurrentOrg, source_id: SourceId, session: SessionDep) -> Response:
    sources.delete_source(session, source=sources.find_source(session, organization_id=org.id, source_id=source_id))
    return Response(status_code=204)


@router.get(
    "/sources/{source_id}/tests",
    response_model=Page[TestRecordPublic],
    summary="List a source's recorded tests, newest first",
    description="Every finished test of the stored source (not inline tests, nor tests with configuration "
    "overrides), kept `SOURCECHECK_HISTORY_RETENTION_DAYS` days and at most "
    "`SOURCECHECK_HISTORY_MAX_PER_SOURCE` per source. `count` is the number of records in all.",
)
def list_source_tests(
    org: CurrentOrg,
    source_id: SourceId,
    session: SessionDep,
    limit: int = Query(50, ge=1, le=MAX_PAGE, description="Records per page."),
    offset: int = Query(0, ge=0, le=1_000_000, description="Records to skip (newest first)."),
) -> Page[TestRecordPublic]:
    source = sources.find_source(session, organization_id=org.id, source_id=source_id)
    rows, count = history.list_records(session, source_id=source.id, limit=limit, offset=offset)
    return Page(data=[history.to_public(row) for row in rows], count=count)
