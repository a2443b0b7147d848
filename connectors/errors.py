"""What can go wrong when a source is checked, modelled by what the caller should do.

The tree::

    ConnectorError              everything this package raises on purpose
    ├── UnknownConnector        the caller's mistake: the registry has no connector of that name
    ├── InvalidConfiguration    the caller's mistake: the configuration fails the connector's
    │                           schema (carries the field errors, never the values)
    └── ProbeFailure            the source's fault, raised inside a step: run_check turns it
                                into a *result* (status "failed") with a FailureType, a
                                message, a hint and whether retrying may help

A connector's validators refuse a field with a ValueError, which ``parse_config`` turns into
InvalidConfiguration. A connector's own exceptions (mysql's refusals) stay in its module and
end as ProbeFailures. Any other exception is a bug in the connector: ``run_check`` logs it with
the connector, the step and a redacted traceback, and reports ``FailureType.INTERNAL_ERROR``
without its text (which may hold a secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FailureType(StrEnum):
    """The fixed set of reasons a check can fail. Documented in docs/failure-types.md."""

    DNS_RESOLUTION_FAILED = "dns_resolution_failed"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_TIMEOUT = "connection_timeout"
    HOST_UNREACHABLE = "host_unreachable"
    TLS_ERROR = "tls_error"
    AUTHENTICATION_FAILED = "authentication_failed"
    AUTHORIZATION_FAILED = "authorization_failed"
    NOT_FOUND = "not_found"
    UNEXPECTED_RESPONSE = "unexpected_response"
    TIMEOUT = "timeout"
    INTERNAL_ERROR = "internal_error"
    WORKER_LOST = "worker_lost"
    EGRESS_BLOCKED = "egress_blocked"
    RATE_LIMITED = "rate_limited"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    CANCELLED = "cancelled"


# Whether running the same test again, unchanged, may give another answer.
RETRYABLE: dict[FailureType, bool] = {
    FailureType.DNS_RESOLUTION_FAILED: True,
    FailureType.CONNECTION_REFUSED: True,
    FailureType.CONNECTION_TIMEOUT: True,
    FailureType.HOST_UNREACHABLE: True,
    FailureType.TLS_ERROR: False,
    FailureType.AUTHENTICATION_FAILED: False,
    FailureType.AUTHORIZATION_FAILED: False,
    FailureType.NOT_FOUND: False,
    FailureType.UNEXPECTED_RESPONSE: False,
    FailureType.TIMEOUT: True,
    FailureType.INTERNAL_ERROR: True,
    FailureType.WORKER_LOST: True,
    FailureType.EGRESS_BLOCKED: False,
    FailureType.RATE_LIMITED: True,
    FailureType.PROVIDER_UNAVAILABLE: True,
    FailureType.CANCELLED: True,
}

DEFAULT_HINTS: dict[FailureType, str] = {
    FailureType.DNS_RESOLUTION_FAILED: "Check the host name for typos and that it resolves from the network the "
    "workers run in.",
    FailureType.CONNECTION_REFUSED: "Nothing listens on that port: check the port number and that the server is "
    "running.",
    FailureType.CONNECTION_TIMEOUT: "The host did not answer the connection: check firewalls, security groups and "
    "allow-lists for the workers' addresses.",
    FailureType.HOST_UNREACHABLE: "No route to the host: check the address and the network between the workers and "
    "the source.",
    FailureType.TLS_ERROR: "Check the server's certificate (valid, not expired, issued for this host) and the TLS "
    "settings of this source.",
    FailureType.AUTHENTICATION_FAILED: "Check the user name and the password or token.",
    FailureType.AUTHORIZATION_FAILED: "The credentials are valid but lack a permission: grant the missing privilege "
    "to this user.",
    FailureType.NOT_FOUND: "The thing this source points at does not exist: check its name.",
    FailureType.UNEXPECTED_RESPONSE: "The server answered, but not as expected: check the URL and the settings of "
    "this source.",
    FailureType.TIMEOUT: "The server accepted the connection but did not answer in time: check that it is healthy "
    "and not overloaded.",
    FailureType.INTERNAL_ERROR: "This is a fault of sourcecheck, not of your source: try again, and report it if it "
    "persists.",
    FailureType.WORKER_LOST: "The worker running this test stopped before it finished: try again.",
    FailureType.EGRESS_BLOCKED: "This address is not allowed by the service's egress policy (cloud metadata and "
    "link-local addresses never are; loopback and private networks depend on how the service is set up): use the "
    "source's public address, or ask the service's operator to allow its network (SOURCECHECK_EGRESS_ALLOW).",
    FailureType.RATE_LIMITED: "The provider is limiting the requests of these credentials: try again after the "
    "time it asked for; if it persists, other clients may be using up the same quota.",
    FailureType.PROVIDER_UNAVAILABLE: "The provider could not handle the request now (an outage or maintenance), "
    "which is not a fault of this configuration: check its status page, then try again.",
    FailureType.CANCELLED: "The test was cancelled before it finished (DELETE of the test, or Ctrl-C): run it "
    "again to get an answer.",
}


class WarningCode(StrEnum):
    """Findings that do not fail a check but that the user should act on. Documented in
    docs/failure-types.md ("Warnings")."""

    TOKEN_EXPIRING = "token_expiring"  # noqa: S105 (a warning code, not a password)
    CERTIFICATE_EXPIRING = "certificate_expiring"
    MISSING_OPTIONAL_SCOPE = "missing_optional_scope"
    EMPTY_LOCATION = "empty_location"
    UNPINNED_HOST_KEY = "unpinned_host_key"
    WEAK_AUTHENTICATION = "weak_authentication"


EXPIRY_WARNING_DAYS = 14
"""A token or certificate that expires within this many days is warned about."""


class ConnectorError(Exception):
    """Base of every exception this package raises on purpose (see the tree above)."""


class ProbeFailure(ConnectorError):
    """The source is not usable; raised inside a step and turned into a failed result."""

    def __init__(
        self,
        type: FailureType,
        message: str,
        *,
        hint: str | None = None,
        retryable: bool | None = None,
        fields: tuple[str, ...] | list[str] = (),
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.hint = hint or DEFAULT_HINTS[type]
        self.retryable = RETRYABLE[type] if retryable is None else retryable
        self.fields = list(fields)
        """The configuration fields this failure is about (``["password"]``, ``["host", "port"]``),
        dotted for nested ones (``ssh_tunnel.host``), so a form can point at them."""
        self.retry_after_s = retry_after_s
        """For a retryable failure: in how many seconds the provider said to try again."""


class UnknownConnector(ConnectorError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown source definition {name!r}; known: {', '.join(sorted(known))}")
        self.name = name


@dataclass(frozen=True)
class FieldError:
    """One configuration field that failed validation. Never holds the value."""

    field: str
    message: str


class InvalidConfiguration(ConnectorError):
    def __init__(self, errors: list[FieldError]) -> None:
        summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
        super().__init__(f"invalid configuration: {summary}")
        self.errors = errors
