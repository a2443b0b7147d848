"""Workspaces of an organization (each has a default one)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select

from api.accounts import create_workspace as create_workspace_record
from api.deps import CurrentOrg, SessionDep
from api.models import NAME_PATTERN, ORGANIZATION_ERRORS, Page, Workspace, WorkspacePublic, error_responses

router = APIRouter(tags=["Workspaces"], responses=error_responses(*ORGANIZATION_ERRORS))


class WorkspaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)


def _public(w: Workspace) -> WorkspacePublic:
    return WorkspacePublic(id=w.id, organization_id=w.organization_id, name=w.name, is_default=w.is_default)


@router.get("/workspaces", response_model=Page[WorkspacePublic], summary="List workspaces")
def list_workspaces(org: CurrentOrg, session: SessionDep) -> Page[WorkspacePublic]:
    rows = session.exec(select(Workspace).where(Workspace.organization_id == org.id)).all()
    return Page(data=[_public(w) for w in rows], count=len(rows))


@router.post("/workspaces", response_model=WorkspacePublic, status_code=201, summary="Create a workspace")
def create_workspace(org: CurrentOrg, body: WorkspaceCreate, session: SessionDep) -> WorkspacePublic:
    return _public(create_workspace_record(session, organization_id=org.id, name=body.name))
