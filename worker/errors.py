"""The errors the worker layer raises on purpose, grouped by what the caller should do::

    WorkerError                      a base for every error below
    └── JobRefused                   the job was not sent: nothing was recorded or queued; retry later
        ├── OrganizationBusy         the organization has as many tests in flight as it may
        └── OrganizationRateLimited  it started as many tests in the last minute as it may:
                                     retry after ``retry_after`` s

Others' errors that pass through unchanged:

- ``redis.exceptions.RedisError`` and ``OSError``: Redis is unreachable or hung; retry
  later (the API answers 503).
- ``cryptography.fernet.InvalidToken`` (``worker.crypto``): no configured key opens a token.

A probe that fails is a result (a failed ``CheckResult``), never an exception.
"""

from __future__ import annotations


class WorkerError(Exception):
    """A base for the worker layer's own errors."""


class JobRefused(WorkerError):
    """The job was not sent, by the organization's limits: nothing was recorded or queued."""

    def __init__(self, organization_id: str) -> None:
        super().__init__(organization_id)
        self.organization_id = organization_id


class OrganizationBusy(JobRefused):
    """The organization has as many tests in flight as it may; retry later."""


class OrganizationRateLimited(JobRefused):
    """The organization started as many tests in the last minute as it may; retry after ``retry_after`` s."""

    def __init__(self, organization_id: str, limit: int, retry_after: int) -> None:
        super().__init__(organization_id)
        self.limit = limit
        self.retry_after = retry_after
