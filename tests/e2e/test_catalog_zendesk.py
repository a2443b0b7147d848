"""The zendesk connector through the real stack (API, Redis, a Celery worker), against the Zendesk
stand-in of tests/servers/zendesk.py.

Inline and stored, a correct configuration succeeds with the planned steps; an account without a
help center fails with ``not_found`` naming ``base_url``; a stored source with a wrong API token as
an override fails with ``authentication_failed`` (Zendesk's anonymous answer) and still works
after; a closed port and a silent server fail retryable; the definition marks the tokens secret.
"""

from __future__ import annotations

import pytest

from tests.e2e.catalog import WRONG, Case, Failing, check_through_the_stack
from tests.servers.stack import Stack
from tests.servers.zendesk import AGENT_EMAIL, NO_HC_ACCOUNT, ZendeskServer

pytestmark = pytest.mark.e2e


def _case(server: ZendeskServer) -> Case:
    good = server.config()
    wrong = {"credentials": {"type": "api_token", "email": AGENT_EMAIL, "api_token": WRONG}}
    return Case(
        "zendesk",
        good=good,
        steps=("resolve", "tcp", "tls", "authenticate", "access"),
        inline_bad=Failing(
            server.config(NO_HC_ACCOUNT), "not_found", "access", ("no help center",), fields=("base_url",)
        ),
        stored_bad=Failing(
            wrong,
            "authentication_failed",
            "authenticate",
            ("anonymous user",),
            (WRONG,),
            ("credentials.api_token",),
        ),
        secrets=(server.api_token,),
    )


def test_the_zendesk_connector_works_through_the_stack(
    stack: Stack, zendesk_server: ZendeskServer, closed_port: int
) -> None:
    check_through_the_stack(
        stack,
        _case(zendesk_server),
        unreachable=zendesk_server.config(base_url=f"https://127.0.0.1:{closed_port}"),
        hung=zendesk_server.config(base_url=zendesk_server.url("/hang")),
        secret_fields={"api_token", "access_token"},
    )
