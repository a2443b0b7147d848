"""The notion connector against the local Notion stand-in (tests/servers/saas.py)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from connectors.base import CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration
from connectors.notion import NOTION_VERSION
from connectors.registry import get_connector
from tests.helpers import failure_type, step
from tests.servers.saas import NOTION_DATABASE_ID, NOTION_PAGE_ID, SaasServer, assert_no_secret, run


def config(server: SaasServer, **override: Any) -> dict[str, Any]:
    return {
        "token": server.token,
        "object_id": NOTION_PAGE_ID,
        "base_url": server.url("/notion"),
        "ca_cert": server.ca_pem,
        **override,
    }


async def test_a_shared_page_is_readable(saas_server: SaasServer) -> None:
    result = await run("notion", config(saas_server))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [(s.name, s.status) for s in result.steps] == [
        ("resolve", StepStatus.SUCCEEDED),
        ("tcp", StepStatus.SUCCEEDED),
        ("tls", StepStatus.SUCCEEDED),
        ("authenticate", StepStatus.SUCCEEDED),
        ("access", StepStatus.SUCCEEDED),
    ]
    assert step(result, "authenticate").message == "Token of Sourcecheck in workspace Acme"
    assert step(result, "access").message == "Page 'Handbook' is readable"
    sent = saas_server.requests[-1]
    assert sent.path == f"/notion/v1/pages/{NOTION_PAGE_ID}"
    assert sent.headers["authorization"] == f"Bearer {saas_server.token}"
    assert sent.headers["notion-version"] == NOTION_VERSION
    assert_no_secret(result, saas_server)


async def test_a_database_is_readable_by_its_url(saas_server: SaasServer) -> None:
    url = "https://www.notion.so/acme/Policies-" + NOTION_DATABASE_ID.replace("-", "") + "?pvs=4"
    result = await run("notion", config(saas_server, object_type="database", object_id=url))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "access").message == "Database 'Policies' is readable"


async def test_an_invalid_token_is_authentication_failed_with_notions_reason(saas_server: SaasServer) -> None:
    wrong = "ntn_" + saas_server.token[::-1]
    result = await run("notion", config(saas_server, token=wrong))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "Notion answered 401 Unauthorized: API token is invalid."
    assert "integration secret" in result.failure.hint
    assert result.failure.fields == ["token"]
    assert step(result, "authenticate").status == StepStatus.FAILED
    assert step(result, "access").status == StepStatus.SKIPPED
    assert wrong not in str(asdict(result))
    assert_no_secret(result, saas_server)


async def test_a_missing_capability_is_authorization_failed(saas_server: SaasServer) -> None:
    result = await run("notion", config(saas_server, token=saas_server.limited_token))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert "Insufficient permissions for this endpoint." in result.failure.message
    assert "Read content" in result.failure.hint
    assert result.failure.fields == ["token"]
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_page_not_shared_with_the_integration_is_not_found_with_how_to_share(saas_server: SaasServer) -> None:
    other = "0f0e0d0c-0b0a-4909-8807-060504030201"
    result = await run("notion", config(saas_server, object_id=other))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert result.failure.message == (
        f"Notion cannot find the page {other}: it is not shared with the integration, or does not exist"
    )
    assert "share the page with the integration" in result.failure.hint.lower()
    assert result.failure.fields == ["object_id"]
    assert result.failure.retryable is False


async def test_a_database_configured_as_a_page_says_which_type_to_set(saas_server: SaasServer) -> None:
    result = await run("notion", config(saas_server, object_id=NOTION_DATABASE_ID))
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE
    assert result.failure is not None and result.failure.hint == "Set object_type to database."


@pytest.mark.parametrize(
    "object_id",
    ["59833787-2cf9-4fdf-8782-e53db20768a5", "598337872cf94fdf8782e53db20768a5", "598337872CF94FDF8782E53DB20768A5"],
)
def test_an_id_is_accepted_with_or_without_dashes(object_id: str) -> None:
    parsed = get_connector("notion").parse_config({"token": "t", "object_id": object_id})
    assert parsed.object_id == NOTION_PAGE_ID  # type: ignore[attr-defined]


@pytest.mark.parametrize("object_id", ["Handbook", "https://example.com/page", "59833787-2cf9"])
def test_something_that_is_not_a_notion_id_is_rejected(object_id: str) -> None:
    with pytest.raises(InvalidConfiguration) as info:
        get_connector("notion").parse_config({"token": "t", "object_id": object_id})
    assert [e.field for e in info.value.errors] == ["object_id"]
