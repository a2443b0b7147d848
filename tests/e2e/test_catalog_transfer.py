"""The transfer connectors through the real stack (API, Redis, a Celery worker): ``ftp``
against pyftpdlib (tests/servers/ftp.py), ``git`` against ``git http-backend`` (tests/servers/git.py).

Inline and stored, a correct configuration (explicit FTPS; a basic-auth HTTPS repository)
succeeds with the planned steps; a missing folder (a missing branch) fails with ``not_found``
naming the field; a stored source with a wrong password as an override fails with
``authentication_failed`` naming the credential fields, and still works after; a closed port
and a silent server fail retryable; the definition marks the secrets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.catalog import WRONG, Case, Failing, check_through_the_stack
from tests.servers.ftp import FtpServer
from tests.servers.git import GitServer
from tests.servers.stack import Stack
from tests.servers.tcp import HostPort

pytestmark = pytest.mark.e2e


Built = tuple[Case, Callable[[str, int], dict[str, Any]], set[str]]
"""A connector's case, its good configuration moved to another host and port, its secret fields."""


def _ftp(request: pytest.FixtureRequest) -> Built:
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
    return case, lambda host, port: server.config(host=host, port=port), {"password"}


def _git(request: pytest.FixtureRequest) -> Built:
    server: GitServer = request.getfixturevalue("git_server")
    case = Case(
        "git",
        good=server.config(),
        steps=("resolve", "tcp", "tls", "authenticate", "access"),
        inline_bad=Failing(
            server.config(branch="no-such-branch"), "not_found", "access", ("no-such-branch",), fields=("branch",)
        ),
        stored_bad=Failing(
            {"auth": {"password": WRONG}},
            "authentication_failed",
            "authenticate",
            ("401",),
            (WRONG,),
            fields=("auth.username", "auth.password"),
        ),
        secrets=(server.password,),
    )
    return case, lambda host, port: server.config(url=f"https://{host}:{port}/docs.git"), {"password", "token"}


BUILDERS = {"ftp": _ftp, "git": _git}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_the_transfer_connectors_work_through_the_stack(
    stack: Stack, request: pytest.FixtureRequest, closed_port: int, hung_server: HostPort, name: str
) -> None:
    case, config, secret_fields = BUILDERS[name](request)
    check_through_the_stack(
        stack,
        case,
        unreachable=config("127.0.0.1", closed_port),
        hung=config(hung_server.host, hung_server.port),
        secret_fields=secret_fields,
    )
