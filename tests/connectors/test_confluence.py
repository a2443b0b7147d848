"""The confluence connector against the local Confluence REST stand-in (tests/servers/saas.py)."""

from __future__ import annotations

import base64
from dataclasses import asdict
from typing import Any

import pytest

from connectors.base import CheckStatus, StepStatus
from connectors.errors import FailureType
from connectors.registry import get_connector
from tests.helpers import failure_type, step
from tests.servers.saas import CONFLUENCE_EMAIL, CONFLUENCE_GUEST, CONFLUENCE_SPACE, SaasServer, assert_no_secret, run


def config(server: SaasServer, *, api_token: str | None = None, **override: Any) -> dict[str, Any]:
    return {
        "base_url": server.url("/confluence/wiki"),
        "credentials": {"type": "basic", "email": CONFLUENCE_EMAIL, "api_token": api_token or server.token},
        "space_key": CONFLUENCE_SPACE,
        "ca_cert": server.ca_pem,
        **override,
    }


async def test_a_readable_space_with_email_and_api_token_succeeds(saas_server: SaasServer) -> None:
    result = await run("confluence", config(saas_server))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "authenticate").message == "Signed in as Ada Reader"
    assert step(result, "access").message == "Space ENG (Engineering) is readable"
    sent = saas_server.requests[-1]
    assert sent.path == "/confluence/wiki/rest/api/space/ENG"
    pair = base64.b64encode(f"{CONFLUENCE_EMAIL}:{saas_server.token}".encode()).decode()
    assert sent.headers["authorization"] == f"Basic {pair}"
    assert_no_secret(result, saas_server)
    assert pair not in str(asdict(result))


async def test_a_data_center_personal_access_token_is_sent_as_bearer(saas_server: SaasServer) -> None:
    credentials = {"type": "bearer", "token": saas_server.token}
    result = await run("confluence", config(saas_server, credentials=credentials))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert saas_server.requests[-1].headers["authorization"] == f"Bearer {saas_server.token}"


async def test_a_wrong_api_token_is_authentication_failed_explaining_atlassians_message(
    saas_server: SaasServer,
) -> None:
    wrong = "ATATT" + saas_server.token[::-1]
    result = await run("confluence", config(saas_server, api_token=wrong))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message.startswith("Confluence refused the email and API token")
    assert "id.atlassian.com" in result.failure.hint
    assert step(result, "authenticate").status == StepStatus.FAILED
    assert wrong not in str(asdict(result))


async def test_credentials_served_as_anonymous_are_authentication_failed(saas_server: SaasServer) -> None:
    credentials = {"type": "basic", "email": CONFLUENCE_GUEST, "api_token": "whatever-token"}
    result = await run("confluence", config(saas_server, credentials=credentials))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "Confluence did not accept the credentials and treated the request as anonymous"


async def test_a_wrong_bearer_token_is_authentication_failed(saas_server: SaasServer) -> None:
    result = await run("confluence", config(saas_server, credentials={"type": "bearer", "token": "nope-token"}))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None and "Personal access tokens" in result.failure.hint


async def test_a_scoped_token_without_the_space_scope_is_authorization_failed_naming_it(
    saas_server: SaasServer,
) -> None:
    result = await run("confluence", config(saas_server, api_token=saas_server.limited_token))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == (
        "The token is valid but lacks a scope this call needs (Unauthorized; scope does not match)"
    )
    assert "read:confluence-space.summary" in result.failure.hint
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_missing_space_is_not_found_with_a_hint_about_view_permission(saas_server: SaasServer) -> None:
    result = await run("confluence", config(saas_server, space_key="NOPE"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert result.failure.message == "Confluence has no space with key NOPE that this user can see"
    assert "Space settings > Permissions" in result.failure.hint
    assert result.failure.fields == ["space_key"]


@pytest.mark.parametrize("empty", [None, ""])
async def test_without_a_space_key_at_least_one_visible_space_succeeds(
    saas_server: SaasServer, empty: str | None
) -> None:
    result = await run("confluence", config(saas_server, space_key=empty))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "access").message == (
        "Spaces are visible to this user (the first: ENG, Engineering); no space_key set, so every space the user "
        "can view is read"
    )
    assert saas_server.requests[-1].path == "/confluence/wiki/rest/api/space?limit=1"


async def test_without_a_space_key_an_account_that_sees_no_space_is_authorization_failed(
    saas_server: SaasServer,
) -> None:
    credentials = {"type": "bearer", "token": saas_server.public_token}  # its user views no space
    result = await run("confluence", config(saas_server, credentials=credentials, space_key=None))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "The account sees no space: with no space_key set there is nothing to read"
    assert "View permission" in result.failure.hint
    assert result.failure.fields == ["credentials.token", "space_key"]
    assert step(result, "access").status == StepStatus.FAILED


async def test_without_a_space_key_a_token_lacking_the_space_scope_is_authorization_failed(
    saas_server: SaasServer,
) -> None:
    result = await run("confluence", config(saas_server, api_token=saas_server.limited_token, space_key=None))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None and result.failure.fields == ["credentials.email", "credentials.api_token"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://acme.atlassian.net", "https://acme.atlassian.net/wiki"),
        ("https://acme.atlassian.net/", "https://acme.atlassian.net/wiki"),
        ("https://acme.atlassian.net/wiki", "https://acme.atlassian.net/wiki"),
        ("https://confluence.example.com/confluence", "https://confluence.example.com/confluence"),
    ],
)
def test_a_cloud_site_gets_its_wiki_path(given: str, expected: str) -> None:
    parsed = get_connector("confluence").parse_config(
        {"base_url": given, "credentials": {"type": "bearer", "token": "t"}, "space_key": "ENG"}
    )
    assert parsed.base_url == expected  # type: ignore[attr-defined]
