"""Workspaces of an organization (each has a default one)."""

from __future__ import annotations

from fastapi import APIRouter

from api import accounts
from api.deps import CurrentOrg, SessionDep
from api.models import ORGANIZATION_ERRORS, Page, Workspace, WorkspaceCreate, WorkspacePublic, error_responses

router = APIRouter(tags=["Workspaces"], responses=error_responses(*ORGANIZATION_ERRORS))


def _public(w: Workspace) -> WorkspacePublic:
    return WorkspacePublic(id=w.id, organization_id=w.organization_id, name=w.name, is_default=w.is_default)


@router.get("/workspaces", response_model=Page[WorkspacePublic], summary="List workspaces")
def list_workspaces(org: CurrentOrg, session: SessionDep) -> Page[WorkspacePublic]:
    rows = accounts.list_workspaces(session, organization_id=org.id)
    return Page(data=[_public(w) for w in rows], count=len(rows))


@router.post("/workspaces", response_model=WorkspacePublic, status_code=201, summary="Create a workspace")
def create_workspace(org: CurrentOrg, body: WorkspaceCreate, session: SessionDep) -> WorkspacePublic:
    return _public(accounts.create_workspace(session, organization_id=org.id, name=body.name))
