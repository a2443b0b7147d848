"""The errors of the api layer, one tree. An ``ApiError`` is an answer, one shape for all:
``{"error": {code, message, errors?}}`` with its HTTP status; the others stop a command or
the API's startup, or stay inside the module that raises them.

ApiLayerError                      every error this package raises on purpose
├── ApiError                 500   an answer that is not a success
│   ├── Unauthorized         401   no token, a malformed, unknown or revoked token
│   ├── NotFound             404   unknown id, or one of another organization (never told apart)
│   ├── InvalidRequest       422   the request is malformed
│   │   ├── InvalidConfigurationError  422   the configuration fails its connector's schema (fields named)
│   │   └── SecretsRequired  422   a change of destination without the stored secrets sent again
│   ├── Conflict             409   the request conflicts with the state of what it names
│   │   ├── TestEnded        409   cancel of a test that has ended (it is unchanged)
│   │   └── TestShared       409   cancel of a test identical requests joined (coalesced)
│   ├── PayloadTooLarge      413
│   ├── TooManyRequests      429   the organization is at its limit of tests; retry after Retry-After
│   └── ServiceUnavailable   503   Redis or the database cannot be reached; retry later
├── AccountError                   an account change that cannot be made (the CLI: exit 2)
├── SchemaNotCurrent               the database's schema is not the one this version needs: the API does
│                                  not start, the CLI exits 1 (both with the message)
└── NotReady                       a readiness check ran and the answer is no (api.health: /readyz is 503)
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import Send

from connectors.errors import FieldError, InvalidConfiguration


class ApiLayerError(Exception):
    """Every error the api package raises on purpose; anything else is a bug."""


class ApiError(ApiLayerError):
    status_code = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, errors: list[FieldError] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.headers = headers

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.errors is not None:
            error["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return {"error": error}


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "A valid API key is required: send 'Authorization: Bearer <token>'") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class TestEnded(Conflict):
    __test__ = False  # not a pytest class
    code = "test_ended"


class TestShared(Conflict):
    __test__ = False
    code = "test_shared"


class InvalidRequest(ApiError):
    status_code = 422
    code = "invalid_request"


class InvalidConfigurationError(InvalidRequest):
    code = "invalid_configuration"

    @classmethod
    def from_connector(cls, exc: InvalidConfiguration, prefix: str = "configuration") -> InvalidConfigurationError:
        errors = [FieldError(field=f"{prefix}.{e.field}", message=e.message) for e in exc.errors]
        fields = ", ".join(e.field for e in errors)
        return cls(f"The configuration is not valid: {fields}", errors=errors)


class SecretsRequired(InvalidRequest):
    """A change of where a stored source connects that would send it a stored secret."""

    code = "secrets_required"

    @classmethod
    def naming(cls, changed: list[str], secrets: list[str], prefix: str = "configuration") -> SecretsRequired:
        why = f"{', '.join(changed)} changed: a stored secret is only sent where it was stored for"
        errors = [FieldError(field=f"{prefix}.{path}", message=f"send this secret again ({why})") for path in secrets]
        return cls(
            f"Send the secrets again with the new destination ({', '.join(changed)}): {', '.join(secrets)}",
            errors=errors,
        )


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class TooManyRequests(ApiError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "service_unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class AccountError(ApiLayerError):
    """A request about accounts that cannot be carried out (the message says why)."""


class SchemaNotCurrent(ApiLayerError):
    """The database is not at the schema this version needs; ``message`` names both revisions
    and what to run. Every entry point stops with it rather than serve against a schema that
    does not match the code."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotReady(ApiLayerError):
    """A readiness check ran and the answer is no."""


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


async def send_error(error: ApiError, send: Send) -> None:
    """Answer ``error`` from ASGI middleware (before or outside the app's routes)."""
    response = error_response(error)
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
