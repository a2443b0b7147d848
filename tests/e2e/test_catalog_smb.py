"""The ``smb`` connector through the real stack (API, Redis, a Celery worker) against Samba's
smbd (tests/servers/smb.py).

Inline and stored, a correct configuration (share ``docs``, folder ``reports``) succeeds with
the planned steps; a missing share fails with ``not_found`` naming ``share``; a stored source
with a wrong password as an override fails with ``authentication_failed`` naming the
credential fields, and still works after; a closed port and a silent server fail retryable;
the definition marks the password secret.
"""

from __future__ import annotations

import pytest

from tests.e2e.catalog import WRONG, Case, Failing, check_through_the_stack
from tests.servers.smb import Samba
from tests.servers.stack import Stack
from tests.servers.tcp import HostPort

pytestmark = pytest.mark.e2e


def test_smb_works_through_the_stack(stack: Stack, smb_server: Samba, closed_port: int, hung_server: HostPort) -> None:
    case = Case(
        "smb",
        good=smb_server.config(),
        steps=("resolve", "tcp", "negotiate", "authenticate", "access"),
        inline_bad=Failing(
            smb_server.config(share="no-such-share"), "not_found", "access", ("no-such-share",), fields=("share",)
        ),
        stored_bad=Failing(
            {"password": WRONG},
            "authentication_failed",
            "authenticate",
            (smb_server.user,),
            (WRONG,),
            fields=("username", "password", "domain"),
        ),
        secrets=(smb_server.password,),
    )
    check_through_the_stack(
        stack,
        case,
        unreachable=smb_server.config(host="127.0.0.1", port=closed_port),
        hung=smb_server.config(host=hung_server.host, port=hung_server.port),
        secret_fields={"password"},
    )
