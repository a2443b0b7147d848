"""Tables of the metadata database and the request/response models of the API.

The ladder of a resource: ``SourceBase`` → ``SourceCreate`` / ``SourceUpdate`` →
``Source`` (table) → ``SourcePublic``. Lists are answered as ``{data, count}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy import JSON, Index
from sqlmodel import Field as DBField
from sqlmodel import SQLModel

from connectors.base import StepStatus
from connectors.errors import FailureType, WarningCode
from worker.model import JobStatus

ORG_ID_PATTERN = r"^org_[A-Za-z0-9_-]{1,60}$"
ID_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"
"""Source, workspace and job ids (``src_…``, ``ws_…``, ``job_…``): a malformed one is a 422."""
DEFINITION_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"
"""A source definition id: a connector's entry-point name (``postgres``, ``google_drive``)."""
NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""A display name: one line of text, no control characters (PostgreSQL refuses NUL in text)."""

# Limits of a ``configuration`` object, checked before any validation of its content (the
# body itself is at most ``max_body_bytes``): real configurations are 1 to 3 levels deep
# with a few dozen fields.
MAX_CONFIGURATION_DEPTH = 8
MAX_CONFIGURATION_ITEMS = 500
MAX_CONFIGURATION_KEY_LENGTH = 200


def _bounded_configuration(value: Any) -> Any:
    """Refuse a configuration nested deeper than 8 levels, with more than 500 keys and list
    items in all, or with a key longer than 200 characters. Walks without recursion."""
    if not isinstance(value, dict):
        return value  # pydantic reports the wrong type
    items = 0
    todo: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_CONFIGURATION_DEPTH:
            raise ValueError(f"is nested deeper than {MAX_CONFIGURATION_DEPTH} levels")
        if isinstance(node, dict):
            if any(len(key) > MAX_CONFIGURATION_KEY_LENGTH for key in node):
                raise ValueError(f"has a key longer than {MAX_CONFIGURATION_KEY_LENGTH} characters")
            children = list(node.values())
        else:
            children = node
        items += len(children)
        if items > MAX_CONFIGURATION_ITEMS:
            raise ValueError(f"has more than {MAX_CONFIGURATION_ITEMS} keys and list items")
        todo += [(child, depth + 1) for child in children if isinstance(child, (dict, list))]
    return value


Configuration = Annotated[dict[str, Any], BeforeValidator(_bounded_configuration)]
"""A connector configuration as sent: a JSON object within the limits above."""
ResourceId = Annotated[str, Field(pattern=ID_PATTERN, examples=["src_0123456789abcdef"])]
DefinitionId = Annotated[str, Field(pattern=DEFINITION_ID_PATTERN, examples=["postgres"])]


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


class TestRecord(SQLModel, table=True):
    """One finished test of a stored source (its history; api/history.py writes it).

    Made from the job's final record, which carries no configuration and whose messages
    are scrubbed of its secrets: nothing here is a secret. Deleted with its source, and
    pruned by age and count (``history_retention_days``, ``history_max_per_source``).
    """

    __test__ = False  # not a pytest class
    __tablename__ = "test_record"
    __table_args__ = (Index("ix_test_record_source_newest", "source_id", "ended_at", "id"),)

    id: int | None = DBField(default=None, primary_key=True)
    organization_id: str = DBField(foreign_key="organization.id", index=True)
    source_id: str = DBField(foreign_key="source.id", ondelete="CASCADE")
    job_id: str = DBField(unique=True)  # a result delivered twice is recorded once
    source_definition_id: str
    status: str
    failure_type: str | None = None
    message: str | None = None
    hint: str | None = None
    retryable: bool | None = None
    fields: list[str] | None = DBField(default=None, sa_type=JSON)
    warnings: list[dict[str, Any]] = DBField(default_factory=list, sa_type=JSON)  # code, message, hint
    steps: list[dict[str, Any]] = DBField(default_factory=list, sa_type=JSON)  # name, status, duration_ms, message
    worker: str | None = None
    started_at: datetime | None = None
    ended_at: datetime = DBField(index=True)  # retention prunes by it
    created_at: datetime = DBField(default_factory=utcnow)
    # Its (status, type, warning codes) differ from the record before it: a status change.
    status_changed: bool = False


# --- API models -----------------------------------------------------------------------

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    count: int


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_definition_id: DefinitionId = Field(examples=["postgres"])
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN, examples=["Analytics replica"])
    workspace_id: ResourceId | None = Field(None, description="Default: the organization's default workspace.")
    configuration: Configuration = Field(
        description="Valid against the definition's connection_specification "
        "(at most 8 levels deep, 500 keys and items)."
    )


class SourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200, pattern=NAME_PATTERN)
    configuration: Configuration | None = Field(
        None, description="Fields to change; a secret sent back masked keeps its stored value."
    )


class LastTest(BaseModel):
    """The outcome of a source's latest recorded test."""

    status: JobStatus = Field(examples=["failed"])
    type: FailureType | None = Field(None, description="On failure: its type (docs/failure-types.md).")
    ended_at: datetime


class SourcePublic(BaseModel):
    id: str
    organization_id: str
    workspace_id: str
    source_definition_id: str
    name: str
    configuration: dict[str, Any] = Field(description="Secrets are masked.")
    created_at: datetime
    updated_at: datetime
    last_test: LastTest | None = Field(
        description="Its latest recorded test (tests of the stored source, not inline ones); null before the first."
    )


class SourceDefinitionPublic(BaseModel):
    id: str
    name: str
    category: str
    icon: str
    documentation_url: str | None
    connection_specification: dict[str, Any]


class WorkspaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)


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
        json_schema_extra={
            "examples": [
                {"source_id": "src_abc123"},
                {
                    "source_definition_id": "postgres",
                    "configuration": {"host": "db.example.com", "database": "app", "user": "reader", "password": "..."},
                },
            ]
        },
    )

    source_id: ResourceId | None = Field(None, description="Test an existing source by its ID.")
    source_definition_id: DefinitionId | None = Field(None, description="Source definition to use for inline testing.")
    workspace_id: ResourceId | None = Field(None, description="Workspace context for inline testing.")
    configuration: Configuration | None = Field(
        None,
        description="Configuration to test (for inline testing), or fields overriding the stored source's "
        "(at most 8 levels deep, 500 keys and items).",
    )
    name: str | None = Field(
        None, max_length=200, pattern=NAME_PATTERN, description="Source name (for inline testing)."
    )


class StepInfo(BaseModel):
    name: str
    status: StepStatus
    duration_ms: float
    message: str | None


class WarningInfo(BaseModel):
    code: WarningCode = Field(description='What was found (docs/failure-types.md, "Warnings").')
    message: str
    hint: str = Field(description="What to do about it.")


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
    type: FailureType | None = Field(None, description="On failure: its type (docs/failure-types.md).")
    retryable: bool | None = Field(None, description="On failure: whether running the same test again may help.")
    hint: str | None = Field(None, description="On failure: what to fix.")
    fields: list[str] | None = Field(
        None,
        description="On failure: the configuration fields it is about (dotted when nested: ssh_tunnel.host), "
        "for a form to point at; empty when it is about none in particular.",
    )
    retry_after_s: float | None = Field(
        None, description="On a rate_limited or provider_unavailable failure: when the provider said to try again."
    )
    warnings: list[WarningInfo] = Field(
        [], description="Findings that did not fail the test but need attention (a token that expires soon...)."
    )


class TestResult(BaseModel):
    __test__ = False  # not a pytest class

    status: JobStatus = Field(examples=["succeeded"])
    job_info: JobInfo | None


class TestRecordPublic(BaseModel):
    """A finished test of a stored source, as its history keeps it (never its configuration)."""

    __test__ = False  # not a pytest class

    job_id: str
    source_id: str
    source_definition_id: str
    status: JobStatus
    type: FailureType | None = Field(description="On failure: its type (docs/failure-types.md).")
    message: str | None
    hint: str | None
    retryable: bool | None
    fields: list[str] | None
    warnings: list[WarningInfo]
    steps: list[StepInfo]
    worker: str | None
    started_at: datetime | None
    ended_at: datetime
    duration_ms: float | None


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    errors: list[ErrorDetail] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    401: {"description": "Missing, malformed, unknown or revoked API key."},
    404: {
        "description": "Unknown organization (or the key's organization is another one), source, workspace, "
        "definition or job: never told apart from one that exists elsewhere."
    },
    409: {"description": "The request conflicts with the state of what it names (`code` and `message` say which)."},
    413: {"description": "The request body is larger than the limit (64 KiB by default)."},
    422: {
        "description": "Malformed request: a path, query or body field (named in `errors`, values never echoed), "
        "a configuration that fails its definition's schema, or one nested or sized past the limits."
    },
    429: {
        "description": "The organization has too many tests in flight, or ran too many this minute; retry after "
        "`Retry-After` seconds. Nothing was enqueued.",
        "headers": _RETRY_AFTER,
    },
    503: {
        "description": "The queue or the database is unavailable; retry after `Retry-After` seconds.",
        "headers": _RETRY_AFTER,
    },
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all in the one error shape."""
    return {code: {"model": ErrorResponse, **ERROR_RESPONSES[code]} for code in codes}


ORGANIZATION_ERRORS = (401, 404, 413, 422, 503)
"""What any route under /v1/organizations/{organization_id} may answer besides its own success."""


# --- webhooks -------------------------------------------------------------------------


class DeliveryState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Webhook(SQLModel, table=True):
    """An endpoint of an organization that receives signed POSTs when a source's status changes."""

    id: str = DBField(primary_key=True)
    organization_id: str = DBField(foreign_key="organization.id", index=True)
    url: str
    # The signing secret, Fernet-encrypted (worker.crypto): shown once, at creation.
    secret_encrypted: str
    active: bool = True
    created_at: datetime = DBField(default_factory=utcnow)


class WebhookEvent(SQLModel, table=True):
    """One change of a source, as sent to every endpoint of its organization (retries send the same body)."""

    __tablename__ = "webhook_event"

    id: str = DBField(primary_key=True)
    organization_id: str = DBField(foreign_key="organization.id", index=True)
    source_id: str
    type: str
    # The JSON body sent (no secret: results are scrubbed), kept so a retry sends the same bytes.
    payload: str
    created_at: datetime = DBField(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """One attempt to deliver an event to a webhook: ``pending`` until sent, then
    ``succeeded`` (2xx) or ``failed``; a failed attempt with time and attempts left is
    followed by a new ``pending`` one."""

    __tablename__ = "webhook_delivery"

    id: str = DBField(primary_key=True)
    webhook_id: str = DBField(foreign_key="webhook.id", index=True)
    event_id: str = DBField(foreign_key="webhook_event.id", index=True)
    source_id: str
    attempt: int
    state: str = DBField(index=True)
    status_code: int | None = None
    error: str | None = None
    response_excerpt: str | None = None
    duration_ms: float | None = None
    created_at: datetime = DBField(default_factory=utcnow)
    next_attempt_at: datetime = DBField(default_factory=utcnow, index=True)
    # Until when one dispatcher holds this attempt (several API processes share the table).
    claimed_until: datetime | None = None
    sent_at: datetime | None = None


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2000,
        description="Where to POST the events: https (http only where the operator allows it), no credentials.",
        examples=["https://hooks.example.com/sourcecheck"],
    )


class WebhookPublic(BaseModel):
    id: str
    organization_id: str
    url: str
    active: bool
    created_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(
        description="The signing secret (HMAC-SHA256 of the Sourcecheck-Signature header): shown only in this answer."
    )


class WebhookDeliveryPublic(BaseModel):
    id: str
    webhook_id: str
    event_id: str
    source_id: str
    attempt: int
    state: DeliveryState = Field(
        examples=["succeeded"], description="pending (not sent yet), succeeded (2xx) or failed."
    )
    status_code: int | None = Field(None, description="The receiver's HTTP status, when it answered.")
    error: str | None = Field(None, description="Why the attempt failed without an HTTP answer (or with a non-2xx).")
    response_excerpt: str | None = Field(None, description="The first characters of the receiver's answer, cleaned.")
    duration_ms: float | None = None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None = None
