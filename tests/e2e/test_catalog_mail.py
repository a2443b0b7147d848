"""The imap connector through the real stack (API, Redis, a Celery worker), against Dovecot.

Inline and stored, a correct configuration (implicit TLS, LOGIN) succeeds with the planned
steps; a missing folder fails with ``not_found`` naming it; a stored source with a wrong
password as an override fails with ``authentication_failed`` naming ``username`` and
``auth.password``, and still works after; a closed port and a silent server fail retryable;
the definition marks the password and the access token secret.
"""

from __future__ import annotations

import pytest

from tests.e2e.catalog import WRONG, Case, Failing, check_through_the_stack
from tests.servers.imap import Dovecot
from tests.servers.stack import Stack
from tests.servers.tcp import HostPort

pytestmark = pytest.mark.e2e

SECRET_FIELDS = {"password", "access_token"}


def _case(dovecot: Dovecot) -> Case:
    return Case(
        "imap",
        good=dovecot.config(),
        steps=("resolve", "tcp", "tls", "authenticate", "access"),
        inline_bad=Failing(
            dovecot.config(folder="Archive/Missing"), "not_found", "access", ("Archive/Missing",), fields=("folder",)
        ),
        stored_bad=Failing(
            {"auth": {"password": WRONG}},
            "authentication_failed",
            "authenticate",
            (dovecot.user,),
            (WRONG,),
            fields=("username", "auth.password"),
        ),
        secrets=(dovecot.password,),
    )


@pytest.mark.parametrize("name", ["imap"])
def test_the_mail_connectors_work_through_the_stack(
    stack: Stack, imap_server: Dovecot, closed_port: int, hung_server: HostPort, name: str
) -> None:
    case = _case(imap_server)
    check_through_the_stack(
        stack,
        case,
        unreachable=imap_server.config(port=closed_port),
        hung=imap_server.config(host=hung_server.host, port=hung_server.port),
        secret_fields=SECRET_FIELDS,
    )
