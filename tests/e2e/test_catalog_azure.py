"""The azure_blob connector through the real stack (API, Redis, a Celery worker), against Azurite.

Inline and stored, a correct configuration succeeds with the planned steps (``tls`` skipped in
place: Azurite speaks http://); a missing container fails with ``not_found``; a stored source
with a wrong account key as an override fails with ``authentication_failed`` and still works
after; a closed port and a silent server fail retryable; the definition marks every credential
secret.
"""

from __future__ import annotations

import base64

import pytest

from tests.e2e.catalog import Case, Failing, check_through_the_stack
from tests.servers.azurite import AzuriteServer
from tests.servers.stack import Stack
from tests.servers.tcp import HostPort

pytestmark = pytest.mark.e2e

WRONG_KEY = base64.b64encode(b"Wrong-Account-Key-7d41c9" * 3).decode()
SECRET_FIELDS = {"account_key", "sas_token", "connection_string"}


def _case(azurite: AzuriteServer) -> Case:
    return Case(
        "azure_blob",
        good=azurite.config(prefix="reports/"),
        steps=("resolve", "tcp", "tls", "authenticate", "access"),
        inline_bad=Failing(azurite.config(container="missing"), "not_found", "access", ("missing",)),
        stored_bad=Failing(
            {"account_key": WRONG_KEY}, "authentication_failed", "authenticate", ("account key",), (WRONG_KEY,)
        ),
        secrets=(azurite.key,),
    )


@pytest.mark.parametrize("name", ["azure_blob"])
def test_the_azure_connectors_work_through_the_stack(
    stack: Stack, azurite: AzuriteServer, closed_port: int, hung_server: HostPort, name: str
) -> None:
    case = _case(azurite)
    hung = f"http://{hung_server.host}:{hung_server.port}/sourcecheck"
    check_through_the_stack(
        stack,
        case,
        unreachable=azurite.config(endpoint_url=f"http://127.0.0.1:{closed_port}/sourcecheck"),
        hung=azurite.config(endpoint_url=hung),
        secret_fields=SECRET_FIELDS,
    )
