"""The file connectors webdav and gcs through the real stack (API, Redis, a Celery worker).

webdav runs against WsgiDAV (tests/servers/webdav.py) over https with the session's test CA.
Inline and stored, a correct configuration succeeds with the planned steps; a missing folder
fails with ``not_found`` naming ``path``; a stored source with a wrong password as an override
fails with ``authentication_failed`` naming ``password`` and still works after; a closed port
and a silent server fail retryable; the definition marks every credential secret.
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
from tests.servers.stack import Stack
from tests.servers.tcp import HostPort
from tests.servers.webdav import WebDavServer

pytestmark = pytest.mark.e2e

_STEPS = ("resolve", "tcp", "tls", "authenticate", "access")


def _webdav(request: pytest.FixtureRequest) -> tuple[Case, Callable[[str], dict[str, Any]]]:
    dav: WebDavServer = request.getfixturevalue("webdav_server")
    case = Case(
        "webdav",
        good=dav.config(),
        steps=_STEPS,
        inline_bad=Failing(dav.config(path="missing"), "not_found", "access", ("'/missing'",), fields=("path",)),
        stored_bad=Failing(
            {"password": WRONG}, "authentication_failed", "authenticate", ("reader",), (WRONG,), fields=("password",)
        ),
        secrets=(dav.password,),
    )
    return case, lambda address: dav.plain_config(url=f"http://{address}/dav")


BUILDERS = {"webdav": _webdav}
SECRET_FIELDS = {"webdav": {"password", "token"}}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_file_connectors_work_through_the_stack(
    request: pytest.FixtureRequest, stack: Stack, closed_port: int, hung_server: HostPort, name: str
) -> None:
    case, aimed_at = BUILDERS[name](request)
    check_inline_success(stack, case)
    check_inline_failure(stack, case)
    check_stored(stack, case)
    check_unreachable(stack, name, aimed_at(f"127.0.0.1:{closed_port}"))
    check_hung(stack, name, aimed_at(f"{hung_server.host}:{hung_server.port}"))
    check_definition(stack, name, SECRET_FIELDS[name])
