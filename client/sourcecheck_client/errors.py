"""The errors the client raises. A failed *test* is not one of them: it is a
:class:`~sourcecheck_client.models.TestResult` with ``status == "failed"``.

    APIError                       base: anything that kept the call from giving an answer
    ├── AuthenticationError   401  no, malformed, unknown or revoked API key
    ├── NotFoundError         404  unknown source/workspace/job, expired job, or another organization
    ├── ConflictError         409  cancel of a test that had ended (``code`` test_ended) or is shared (test_shared)
    ├── ValidationError       422  bad request or configuration; ``errors`` names each bad field
    ├── RateLimitError        429  the organization has too many tests in flight; see ``retry_after``
    ├── ServiceUnavailableError 503  Redis or the database is down; see ``retry_after``
    ├── APIConnectionError         the API could not be reached (no HTTP answer)
    └── PollTimeoutError           no final result within ``poll_timeout``; ``result`` is the last one seen

Every error raised for an HTTP answer carries ``status_code``, ``code`` and ``message``
from the API's error body ``{"error": {"code", "message", "errors"}}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from sourcecheck_client.models import FieldError

if TYPE_CHECKING:
    from sourcecheck_client.models import TestResult


class APIError(Exception):
    """Base of every error of this client."""

    status_code: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.code = code
        self.errors: list[FieldError] = errors or []
        self.headers = headers or {}

    def __str__(self) -> str:
        prefix = f"{self.status_code} " if self.status_code else ""
        return f"{prefix}{self.code + ': ' if self.code else ''}{self.message}"


class AuthenticationError(APIError):
    status_code = 401


class NotFoundError(APIError):
    status_code = 404


class ConflictError(APIError):
    status_code = 409


class ValidationError(APIError):
    """422: ``errors`` lists each bad field (``configuration.port``...), never its value."""

    status_code = 422

    @property
    def fields(self) -> list[str]:
        return [e.field for e in self.errors]


class _RetryLater(APIError):
    @property
    def retry_after(self) -> float | None:
        """Seconds the API asked to wait before retrying (``Retry-After``), if it said."""
        return parse_retry_after(self.headers.get("retry-after"))


class RateLimitError(_RetryLater):
    status_code = 429


class ServiceUnavailableError(_RetryLater):
    status_code = 503


class APIConnectionError(APIError):
    """The API could not be reached, or the connection broke before an answer."""


class PollTimeoutError(APIError):
    """The test was not final within ``poll_timeout`` seconds. It may still end: poll
    ``result.job_id`` again with ``get_test_result``/``wait_for_result``."""

    def __init__(self, message: str, *, result: TestResult) -> None:
        super().__init__(message)
        self.result = result


_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: not used by this API
    return max(0.0, seconds)


def error_from_response(response: httpx.Response) -> APIError:
    """The error for a non-success answer, from the API's error body when it has one."""
    code: str | None = None
    message: str | None = None
    errors: list[FieldError] = []
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        for item in error.get("errors") or []:
            if isinstance(item, dict) and "field" in item:
                errors.append(FieldError(field=str(item["field"]), message=str(item.get("message", ""))))
    if message is None:
        text = response.text.strip()
        message = text[:200] if text else response.reason_phrase or f"HTTP {response.status_code}"
    cls = _BY_STATUS.get(response.status_code, APIError)
    return cls(message, status_code=response.status_code, code=code, errors=errors, headers=dict(response.headers))
