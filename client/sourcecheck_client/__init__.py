"""Python client of the sourcecheck API: is this data source going to work, and if not, why.

    from sourcecheck_client import Client

    client = Client(api_key="sck_...", base_url="http://127.0.0.1:8000")
    result = client.knowledge_connectors.test_source(organization_id="org_xyz789", source_id="src_abc123")
    if not result.succeeded:
        print(result.job_info.type, result.job_info.message, result.job_info.hint)

:class:`AsyncClient` has the same surface, awaited. :func:`verify_webhook` checks a webhook
delivery's signature on the receiver's side.
"""

from sourcecheck_client._core import __version__
from sourcecheck_client.async_client import (
    AsyncClient,
    AsyncKnowledgeConnectors,
    AsyncSourceDefinitions,
    AsyncSources,
)
from sourcecheck_client.client import Client, KnowledgeConnectors, SourceDefinitions, Sources
from sourcecheck_client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PollTimeoutError,
    RateLimitError,
    ServiceUnavailableError,
    ValidationError,
)
from sourcecheck_client.models import (
    CheckWarning,
    FieldError,
    JobInfo,
    LastTest,
    PlanEvent,
    ResultEvent,
    Source,
    SourceDefinition,
    Step,
    StepEvent,
    TestEvent,
    TestRecord,
    TestRecordPage,
    TestResult,
    WarningEvent,
)
from sourcecheck_client.webhooks import WebhookEvent, WebhookVerificationError, verify_webhook

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AsyncKnowledgeConnectors",
    "AsyncSourceDefinitions",
    "AsyncSources",
    "AuthenticationError",
    "CheckWarning",
    "Client",
    "ConflictError",
    "FieldError",
    "JobInfo",
    "KnowledgeConnectors",
    "LastTest",
    "NotFoundError",
    "PlanEvent",
    "PollTimeoutError",
    "RateLimitError",
    "ResultEvent",
    "ServiceUnavailableError",
    "Source",
    "SourceDefinition",
    "SourceDefinitions",
    "Sources",
    "Step",
    "StepEvent",
    "TestEvent",
    "TestRecord",
    "TestRecordPage",
    "TestResult",
    "ValidationError",
    "WarningEvent",
    "WebhookEvent",
    "WebhookVerificationError",
    "__version__",
    "verify_webhook",
]
