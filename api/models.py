"""Tables of the metadata database and the request/response models of the API.

The ladder of a resource: ``SourceBase`` → ``SourceCreate`` / ``SourceUpdate`` →
``Source`` (table) → ``SourcePublic``. Lists are answered as ``{data, count}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Field as DBField
from sqlmodel import SQLModel

ORG_ID_PATTERN = r"^org_[A-Za-z0-9_-]{1,60}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Organization(SQLModel, table=True):
    id: str = DBField(primary_key=True)
    name: str
    created_at: datetime = DBField(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    """An API key: the token is shown once; only its SHA-256 is kept."""

    id: str = DBField(primary_key=True)  # the public part of the token
    organization_id: str = DBField(foreign_key="organization.id", index=True)
    token_hash: str
    created_at: datetime = DBField(default_factory=utcnow)
    revoked_at: datetime | None = None


class Workspace(SQLModel, table=True):
    id: str = DBField(primary_key=True)
    organization_id: str = DBField(foreign_key="organization.id", index=True)
    name: str
    is_default: bool = False
    created_at: datetime = DBField(default_factory=utcnow)


class Source(SQLModel, table=True):
    id: str = DBField(primary_key=True)
    organization_id: str = DBField(foreign_key="organization.id", index=True)
    workspace_id: str = DBField(foreign_key="workspace.id", index=True)
    source_definition_id: str
    name: str
    # The whole configuration, secrets included, Fernet-encrypted (see worker.crypto).
    configuration_encrypted: str
    created_at: datetime = DBField(default_factory=utcnow)
    updated_at: datetime = DBField(default_factory=utcnow)


# --- API models -----------------------------------------------------------------------

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    count: int


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_definition_id: str = Field(examples=["postgres"])
    name: str = Field(min_length=1, max_length=200, examples=["Analytics replica"])
    workspace_id: str | None = Field(None, description="Default: the organization's default workspace.")
    configuration: dict[str, Any] = Field(description="Valid against the definition's connection_specification.")


class SourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    configuration: dict[str, Any] | None = Field(
        None, description="Fields to change; a secret sent back masked keeps its stored value."
    )


class SourcePublic(BaseModel):
    id: str
    organization_id: str
    workspace_id: str
    source_definition_id: str
    name: str
    configuration: dict[str, Any] = Field(description="Secrets are masked.")
    created_at: datetime
    updated_at: datetime


class SourceDefinitionPublic(BaseModel):
    id: str
    name: str
    category: str
    icon: str
    documentation_url: str | None
    connection_specification: dict[str, Any]


class WorkspacePublic(BaseModel):
    id: str
    organization_id: str
    name: str
    is_default: bool


class TestSourceRequest(BaseModel):
    """Exactly one mode: ``source_id`` (optionally with ``configuration`` overrides), or
    ``source_definition_id`` with ``configuration`` (inline)."""

    __test__ = False  # not a pytest class

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"source_id": "src_abc123"}, {"source_definition_id": "postgres", "configuration": {"host": "db.example.com", "database": "app", "user": "reader", "password": "..."}}]},
    )

    source_id: str | None = Field(None, description="Test an existing source by its ID.")
    source_definition_id: str | None = Field(None, description="Source definition to use for inline testing.")
    workspace_id: str | None = Field(None, description="Workspace context for inline testing.")
    configuration: dict[str, Any] | None = Field(None, description="Configuration to test (for inline testing).")
    name: str | None = Field(None, max_length=200, description="Source name (for inline testing).")


class StepInfo(BaseModel):
    name: str
    status: str = Field(description="succeeded, failed or skipped")
    duration_ms: float
    message: str | None


class JobInfo(BaseModel):
    job_id: str
    source_id: str | None
    source_definition_id: str
    workspace_id: str | None
    name: str | None = None
    timeout_seconds: float
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: float | None = None
    worker: str | None = None
    steps: list[StepInfo] = []
    message: str | None = Field(None, description="On failure: what went wrong, for a person.")
    type: str | None = Field(None, description="On failure: one of the failure types (docs/failure-types.md).")
    retryable: bool | None = Field(None, description="On failure: whether running the same test again may help.")
    hint: str | None = Field(None, description="On failure: what to fix.")


class TestResult(BaseModel):
    __test__ = False  # not a pytest class

    status: str = Field(description="succeeded, failed, pending or running", examples=["succeeded"])
    job_info: JobInfo | None


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    errors: list[ErrorDetail] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
