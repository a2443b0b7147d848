"""The cloud file connectors (onedrive) through the real stack, against the stand-ins of
tests/servers/saas_files.py: inline and stored, a closed port, a server that never answers,
and the definition each serves (the helpers of tests/e2e/catalog.py)."""

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
from tests.servers.saas import SaasServer
from tests.servers.saas_files import BOX_ENTERPRISE, SALESFORCE_KEY_PEM, SALESFORCE_USER, entra_oauth
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e

CLOUD = ("onedrive", "dropbox", "box", "salesforce")

SECRET_FIELDS: dict[str, set[str]] = {
    "onedrive": {"access_token", "client_secret", "refresh_token"},
    "dropbox": {"access_token", "client_secret", "refresh_token"},
    "box": {"access_token", "client_secret"},
    "salesforce": {"private_key", "client_secret", "refresh_token"},
}


def _onedrive(server: SaasServer) -> Case:
    good = {
        "credentials": entra_oauth(server),
        "folder": "Reports",
        "base_url": server.url("/onedrive"),
        "ca_cert": server.ca_pem,
    }
    return Case(
        "onedrive",
        good=good,
        steps=("resolve", "tcp", "tls", "token", "authenticate", "access"),
        inline_bad=Failing(
            good | {"folder": "NoSuchFolder"}, "not_found", "access", ("NoSuchFolder",), fields=("folder",)
        ),
        stored_bad=Failing(
            {"credentials": {"client_secret": WRONG}},
            "authentication_failed",
            "token",
            ("client id or secret",),
            (WRONG,),
        ),
        secrets=(server.client_secret, server.refresh_token),
    )


def _dropbox(server: SaasServer) -> Case:
    good = {
        "credentials": {"type": "token", "access_token": server.token},
        "path": "/Reports",
        "base_url": server.url("/dropbox/api"),
        "content_url": server.url("/dropbox/content"),
        "ca_cert": server.ca_pem,
    }
    return Case(
        "dropbox",
        good=good,
        steps=("resolve", "tcp", "tls", "authenticate", "access"),
        inline_bad=Failing(
            good | {"path": "/NoSuchFolder"}, "not_found", "access", ("/NoSuchFolder",), fields=("path",)
        ),
        stored_bad=Failing(
            {"credentials": {"access_token": WRONG}},
            "authentication_failed",
            "authenticate",
            ("invalid_access_token",),
            (WRONG,),
            fields=("credentials.access_token",),
        ),
        secrets=(server.token,),
    )


def _box(server: SaasServer) -> Case:
    good = {
        "credentials": {
            "type": "client_credentials",
            "client_id": server.client_id,
            "client_secret": server.client_secret,
            "subject_id": BOX_ENTERPRISE,
            "token_url": server.url("/box/oauth2/token"),
        },
        "folder_id": "8000001",
        "base_url": server.url("/box/api"),
        "ca_cert": server.ca_pem,
    }
    return Case(
        "box",
        good=good,
        steps=("resolve", "tcp", "tls", "token", "authenticate", "access"),
        inline_bad=Failing(good | {"folder_id": "7777"}, "not_found", "access", ("not found",), fields=("folder_id",)),
        stored_bad=Failing(
            {"credentials": {"client_secret": WRONG}},
            "authentication_failed",
            "token",
            ("client id or secret",),
            (WRONG,),
            fields=("credentials.client_secret",),
        ),
        secrets=(server.client_secret,),
    )


def _salesforce(server: SaasServer) -> Case:
    good = {
        "credentials": {
            "type": "jwt",
            "consumer_key": server.client_id,
            "username": SALESFORCE_USER,
            "private_key": SALESFORCE_KEY_PEM,
            "login_url": server.url("/salesforce"),
        },
        "base_url": server.url("/salesforce"),
        "ca_cert": server.ca_pem,
    }
    return Case(
        "salesforce",
        good=good,
        steps=("resolve", "tcp", "tls", "token", "authenticate", "access"),
        inline_bad=Failing(good | {"object": "NoSuch__c"}, "not_found", "access", ("NoSuch__c",), fields=("object",)),
        stored_bad=Failing(
            {"credentials": {"consumer_key": WRONG}},
            "authentication_failed",
            "token",
            ("client identifier invalid",),
            fields=("credentials.consumer_key",),
        ),
        secrets=(SALESFORCE_KEY_PEM.splitlines()[2],),
    )


BUILDERS: dict[str, Callable[[SaasServer], Case]] = {
    "onedrive": _onedrive,
    "dropbox": _dropbox,
    "box": _box,
    "salesforce": _salesforce,
}


def _at(case: Case, base_url: str) -> dict[str, Any]:
    """``case.good`` with every URL (the credentials' token or login URL too) at ``base_url``."""
    credentials = {k: base_url if k.endswith("_url") else v for k, v in case.good["credentials"].items()}
    urls = {key: base_url for key in ("base_url", "content_url") if key in case.good}
    return case.good | {"credentials": credentials, **urls}


@pytest.fixture(params=CLOUD)
def case(request: pytest.FixtureRequest, saas_files_server: SaasServer) -> Case:
    return BUILDERS[request.param](saas_files_server)


def test_inline_correct_configuration_succeeds(stack: Stack, case: Case) -> None:
    check_inline_success(stack, case)


def test_inline_incorrect_configuration_fails_naming_the_field(stack: Stack, case: Case) -> None:
    check_inline_failure(stack, case)


def test_stored_source_and_a_wrong_override(stack: Stack, case: Case) -> None:
    check_stored(stack, case)


def test_a_closed_port_is_unreachable(stack: Stack, case: Case, closed_port: int) -> None:
    check_unreachable(stack, case.name, _at(case, f"https://127.0.0.1:{closed_port}"))


def test_a_server_that_never_answers_times_out(stack: Stack, case: Case, saas_files_server: SaasServer) -> None:
    check_hung(stack, case.name, _at(case, saas_files_server.url("/hang")))


def test_the_definition(stack: Stack, case: Case) -> None:
    check_definition(stack, case.name, SECRET_FIELDS[case.name])
