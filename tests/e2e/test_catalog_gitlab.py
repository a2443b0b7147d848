"""The gitlab connector through the real stack (API, Redis, a Celery worker), against the GitLab
stand-in of tests/servers/gitlab.py.

Inline and stored, a correct configuration succeeds with the planned steps; a missing branch
fails with ``not_found`` naming ``branch``; a stored source with a wrong token as an override fails
with ``authentication_failed`` and still works after; a closed port and a silent server fail
retryable; the definition marks the token secret.
"""

from __future__ import annotations

import pytest

from tests.e2e.catalog import WRONG, Case, Failing, check_through_the_stack
from tests.servers.gitlab import GitLabServer
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e


def _case(server: GitLabServer) -> Case:
    good = server.config()
    return Case(
        "gitlab",
        good=good,
        steps=("resolve", "tcp", "tls", "authenticate", "access"),
        inline_bad=Failing(
            good | {"branch": "no-such-branch"}, "not_found", "access", ("no-such-branch",), fields=("branch",)
        ),
        stored_bad=Failing(
            {"token": WRONG}, "authentication_failed", "authenticate", ("401 Unauthorized",), (WRONG,), ("token",)
        ),
        secrets=(server.token,),
    )


def test_the_gitlab_connector_works_through_the_stack(
    stack: Stack, gitlab_server: GitLabServer, closed_port: int
) -> None:
    check_through_the_stack(
        stack,
        _case(gitlab_server),
        unreachable=gitlab_server.config(base_url=f"https://127.0.0.1:{closed_port}"),
        hung=gitlab_server.config(base_url=gitlab_server.url("/hang")),
        secret_fields={"token"},
    )
