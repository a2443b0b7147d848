"""The jira connector through the real stack, against the stand-in of tests/servers/jira.py, for
both deployments: inline and stored, a closed port, a server that never answers, and the
definition it serves (the helpers of tests/e2e/catalog.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.catalog import WRONG, Case, Failing, check_through_the_stack
from tests.servers import jira
from tests.servers.jira import EMAIL, JiraServer
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e

STEPS = ("resolve", "tcp", "tls", "authenticate", "access")


def _cloud(server: JiraServer) -> Case:
    good = {
        "base_url": server.url("/cloud"),
        "credentials": {"type": "cloud", "email": EMAIL, "api_token": server.api_token},
        "project_key": jira.PROJECT,
        "ca_cert": server.ca_pem,
    }
    return Case(
        "jira",
        good=good,
        steps=STEPS,
        inline_bad=Failing(good | {"project_key": "NOPE"}, "not_found", "access", ("NOPE",), fields=("project_key",)),
        stored_bad=Failing(
            {"credentials": {"api_token": WRONG}},
            "authentication_failed",
            "authenticate",
            ("401",),
            (WRONG,),
            fields=("credentials.email", "credentials.api_token"),
        ),
        secrets=(server.api_token,),
    )


def _data_center(server: JiraServer) -> Case:
    good = {
        "base_url": server.url("/dc"),
        "credentials": {"type": "data_center", "token": server.pat},
        "project_key": jira.EMPTY_PROJECT,
        "ca_cert": server.ca_pem,
    }
    return Case(
        "jira",
        good=good,
        steps=STEPS,
        inline_bad=Failing(
            good | {"credentials": {"type": "data_center", "token": server.limited_token}},
            "authorization_failed",
            "access",
            ("permission",),
            (server.limited_token,),
        ),
        stored_bad=Failing(
            {"credentials": {"token": WRONG}},
            "authentication_failed",
            "authenticate",
            ("not authenticated",),
            (WRONG,),
            fields=("credentials.token",),
        ),
        secrets=(server.pat,),
        warnings=("empty_location",),
    )


def _at(case: Case, base_url: str) -> dict[str, Any]:
    return case.good | {"base_url": base_url}


@pytest.mark.parametrize("build", [_cloud, _data_center], ids=["cloud", "data_center"])
def test_jira_through_the_stack(stack: Stack, jira_server: JiraServer, closed_port: int, build: Any) -> None:
    case = build(jira_server)
    check_through_the_stack(
        stack,
        case,
        unreachable=_at(case, f"https://127.0.0.1:{closed_port}"),
        hung=_at(case, jira_server.url("/hang")),
        secret_fields={"api_token", "token"},
    )
