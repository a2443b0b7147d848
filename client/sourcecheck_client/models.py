"""What the API answers, as typed models (mirrors of the service's ``api.models``).

Unknown fields are ignored, so a newer server does not break an older client; statuses
and failure types are plain strings for the same reason: a value this client does not know
(a failure type added later) is kept as sent. The values known to this version are listed
in :data:`STATUSES`, :data:`STEP_STATUSES` and :data:`FAILURE_TYPES` (see the service's
``docs/failure-types.md``). tests/client/test_models_match_openapi.py keeps these models
and lists in step with the service's OpenAPI document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SUCCEEDED = "succeeded"
FAILED = "failed"
PENDING = "pending"
RUNNING = "running"
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED})
STATUSES = frozenset({SUCCEEDED, FAILED, PENDING, RUNNING})
"""A test's status."""
STEP_STATUSES = frozenset({SUCCEEDED, FAILED, "skipped"})
"""A step's status."""
STEP_EVENT_STATUSES = STEP_STATUSES | {RUNNING}
"""A step event's status: running when the step starts, one of STEP_STATUSES when it ends."""
FAILURE_TYPES = frozenset(
    {
        "dns_resolution_failed",
        "connection_refused",
        "connection_timeout",
        "host_unreachable",
        "tls_error",
        "authentication_failed",
        "authorization_failed",
        "not_found",
        "unexpected_response",
        "timeout",
        "internal_error",
        "worker_lost",
        "egress_blocked",
        "rate_limited",
        "provider_unavailable",
        "cancelled",
    }
)
"""The failure types this client knows (a newer server may send others)."""
WARNING_CODES = frozenset(
    {
        "token_expiring",
        "certificate_expiring",
        "missing_optional_scope",
        "empty_location",
        "unpinned_host_key",
        "weak_authentication",
    }
)
"""The warning codes this client knows (a newer server may send others)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Step(_Model):
    """One stage of a check (``resolve``, ``tcp``, ``tls``, ``authenticate``, ``access``...)."""

    name: str
    status: str = Field(description="One of STEP_STATUSES.")
    duration_ms: float
    message: str | None


class CheckWarning(_Model):
    """A finding that did not fail the test but needs attention."""

    code: str = Field(description="One of WARNING_CODES, or a newer one.")
    message: str
    hint: str


class JobInfo(_Model):
    """The job that ran (or runs) a test: metadata, steps and, on failure, why."""

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
    steps: list[Step] = []
    message: str | None = None
    type: str | None = Field(None, description="On failure: one of FAILURE_TYPES, or a newer one.")
    retryable: bool | None = None
    hint: str | None = None
    fields: list[str] | None = Field(None, description="On failure: the configuration fields it is about.")
    retry_after_s: float | None = Field(None, description="On a provider's refusal: when to try again.")
    warnings: list[CheckWarning] = []


class TestResult(_Model):
    """The answer to a test: ``status`` is succeeded or failed once final, pending or
    running before. A failed test is a result, not an exception."""

    __test__ = False  # not a pytest class

    status: str = Field(description="One of STATUSES.")
    job_info: JobInfo | None

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def final(self) -> bool:
        """True once the test has ended (succeeded or failed)."""
        return self.status in FINAL_STATUSES

    @property
    def job_id(self) -> str | None:
        return self.job_info.job_id if self.job_info else None


class LastTest(_Model):
    """The outcome of a source's latest recorded test."""

    __test__ = False  # not a pytest class

    status: str = Field(description="succeeded or failed.")
    type: str | None = Field(None, description="On failure: one of FAILURE_TYPES, or a newer one.")
    ended_at: datetime


class Source(_Model):
    """A stored source (the service's ``SourcePublic``); secrets are masked in ``configuration``.
    ``last_test``: its latest recorded test, None before the first."""

    id: str
    organization_id: str
    workspace_id: str
    source_definition_id: str
    name: str
    configuration: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_test: LastTest | None


class TestRecord(_Model):
    """A finished test of a stored source, as its history keeps it (the service's ``TestRecordPublic``)."""

    __test__ = False  # not a pytest class

    job_id: str
    source_id: str
    source_definition_id: str
    status: str = Field(description="succeeded or failed.")
    type: str | None = Field(description="On failure: one of FAILURE_TYPES, or a newer one.")
    message: str | None
    hint: str | None
    retryable: bool | None
    fields: list[str] | None
    warnings: list[CheckWarning]
    steps: list[Step]
    worker: str | None
    started_at: datetime | None
    ended_at: datetime
    duration_ms: float | None


class TestRecordPage(_Model):
    """A page of a source's history, newest first; ``count``: its records in all."""

    __test__ = False  # not a pytest class

    data: list[TestRecord]
    count: int


class SourceDefinition(_Model):
    """A kind of source that can be tested; ``connection_specification`` is the JSON Schema
    of its configuration (secret fields carry ``"secret": true``)."""

    id: str
    name: str
    category: str
    icon: str
    documentation_url: str | None
    connection_specification: dict[str, Any]

    @property
    def secret_fields(self) -> list[str]:
        """The top-level configuration fields marked secret."""
        properties = self.connection_specification.get("properties", {})
        return [name for name, schema in properties.items() if isinstance(schema, dict) and schema.get("secret")]


class FieldError(_Model):
    """One bad field of a request (``configuration.port``); never holds the value."""

    field: str
    message: str


# --- a test's live events (stream_test) -----------------------------------------------------


class PlanEvent(_Model):
    """The check starts: the steps it plans, in order."""

    event: Literal["plan"] = "plan"
    id: str | None = None
    steps: list[str]


class StepEvent(_Model):
    """A step starts (``status`` running) or ends (its status, whole milliseconds, message)."""

    event: Literal["step"] = "step"
    id: str | None = None
    name: str
    status: str = Field(description="One of STEP_EVENT_STATUSES.")
    duration_ms: int | None = None
    message: str | None = None

    @property
    def running(self) -> bool:
        return self.status == RUNNING


class WarningEvent(_Model):
    """A warning, as the check finds it."""

    event: Literal["warning"] = "warning"
    id: str | None = None
    code: str
    message: str
    hint: str


class ResultEvent(_Model):
    """The last event: the test's result, as ``get_test_result`` answers it."""

    event: Literal["result"] = "result"
    id: str | None = None
    result: TestResult


TestEvent = PlanEvent | StepEvent | WarningEvent | ResultEvent
"""What ``stream_test`` yields, in order; it ends after the ResultEvent."""
