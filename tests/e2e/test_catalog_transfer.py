"""The transfer connectors through the real stack (API, Redis, a Celery worker): ``ftp``
against pyftpdlib (tests/servers/ftp.py).

Inline and stored, a correct configuration (explicit FTPS) succeeds with the planned steps;
a missing folder fails with ``not_found`` naming ``folder``; a stored source with a wrong
password as an override fails with ``authentication_failed`` naming ``username`` and
``password``, and still works after; a closed port and a silent server fail retryable; the
definition marks the password secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.catalog import (
    WRONG,
    Case,
    Failing,
    check_definition,
    check_hung,
    check_inline_failure,
    check_inline_success,
    check_stored,
    check_unreachable,
)
from tests.servers.ftp import FtpServer
from tests.servers.stack import Stack
from tests.servers.tcp import HostPort

pytestmark = pytest.mark.e2e


def _ftp(request: pytest.FixtureRequest) -> tuple[Case, Callable[..., dict[str, Any]], set[str]]:
    server: FtpServer = request.getfixturevalue("ftp_server")
    case = Case(
        "ftp",
        good=server.config(),
        steps=("resolve", "tcp", "tls", "authenticate", "access"),
        inline_bad=Failing(
            server.config(folder="/no-such-folder"), "not_found", "access", ("/no-such-folder",), fields=("folder",)
        ),
        stored_bad=Failing(
            {"password": WRONG},
            "authentication_failed",
            "authenticate",
            (server.user, "530"),
            (WRONG,),
            fields=("username", "password"),
        ),
        secrets=(server.password,),
    )
    return case, server.config, {"password"}


BUILDERS = {"ftp": _ftp}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_the_transfer_connectors_work_through_the_stack(
    stack: Stack, request: pytest.FixtureRequest, closed_port: int, hung_server: HostPort, name: str
) -> None:
    case, config, secret_fields = BUILDERS[name](request)
    check_inline_success(stack, case)
    check_inline_failure(stack, case)
    check_stored(stack, case)
    check_unreachable(stack, name, config(port=closed_port))
    check_hung(stack, name, config(host=hung_server.host, port=hung_server.port))
    check_definition(stack, name, secret_fields)
