"""The file connectors webdav and gcs through the real stack (API, Redis, a Celery worker).

webdav runs against WsgiDAV (tests/servers/webdav.py) over https with the session's test CA;
gcs with a service account whose JWT the stand-in's token endpoint verifies, then the listing
and the read against gcp-storage-emulator (tests/servers/gcs.py). Inline and stored, a correct
configuration succeeds with the planned steps; a missing folder or bucket fails with
``not_found`` naming it; a stored source with a wrong secret as an override (a password, a key
Google does not know) fails with ``authentication_failed`` naming the field and still works
after; a closed port and a silent server fail retryable; the definition marks every credential
secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.catalog import WRONG, Case, Failing, check_through_the_stack
from tests.servers.gcs import other_key_json, service_account_json
from tests.servers.saas import SaasServer
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


def _gcs(request: pytest.FixtureRequest) -> tuple[Case, Callable[[str], dict[str, Any]]]:
    standin: SaasServer = request.getfixturevalue("gcs_standin")
    emulator: str = request.getfixturevalue("gcs_emulator")
    key_json = service_account_json(standin.url("/gcs-token"))
    wrong_key = other_key_json(standin.url("/gcs-token"))
    credentials = {"type": "service_account", "service_account_json": key_json}
    good = {"credentials": credentials, "bucket": "data", "prefix": "reports/", "base_url": emulator}
    good["ca_cert"] = standin.ca_pem  # the token endpoint's CA
    case = Case(
        "gcs",
        good=good,
        steps=("resolve", "tcp", "tls", "token", "authenticate", "access"),
        inline_bad=Failing(
            good | {"bucket": "missing"}, "not_found", "authenticate", ("'missing'",), fields=("bucket",)
        ),
        stored_bad=Failing(
            {"credentials": {"type": "service_account", "service_account_json": wrong_key}},
            "authentication_failed",
            "token",
            ("Invalid JWT Signature",),
            fields=("credentials.service_account_json",),
        ),
        secrets=(key_json, json.loads(key_json)["private_key"].splitlines()[5]),  # the key itself too
    )
    token = {"type": "token", "access_token": "ya29.unreachable"}
    return case, lambda address: {"credentials": token, "bucket": "data", "base_url": f"http://{address}"}


BUILDERS = {"webdav": _webdav, "gcs": _gcs}
SECRET_FIELDS = {"webdav": {"password", "token"}, "gcs": {"service_account_json", "access_token", "refresh_token"}}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_file_connectors_work_through_the_stack(
    request: pytest.FixtureRequest, stack: Stack, closed_port: int, hung_server: HostPort, name: str
) -> None:
    case, aimed_at = BUILDERS[name](request)
    check_through_the_stack(
        stack,
        case,
        unreachable=aimed_at(f"127.0.0.1:{closed_port}"),
        hung=aimed_at(f"{hung_server.host}:{hung_server.port}"),
        secret_fields=SECRET_FIELDS[name],
    )
