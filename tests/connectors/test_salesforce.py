"""The salesforce connector against the local Salesforce org stand-in (REST API and token endpoint)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.base import CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration
from connectors.registry import get_connector
from tests.helpers import failure_type, step
from tests.servers.saas import SaasServer, assert_no_secret, run
from tests.servers.saas_files import SALESFORCE_GONE_USER, SALESFORCE_KEY_PEM, SALESFORCE_NO_API_USER, SALESFORCE_USER


def jwt(server: SaasServer, **override: Any) -> dict[str, Any]:
    return {
        "type": "jwt",
        "consumer_key": server.client_id,
        "username": SALESFORCE_USER,
        "private_key": SALESFORCE_KEY_PEM,
        "login_url": server.url("/salesforce"),
        **override,
    }


def config(server: SaasServer, credentials: dict[str, Any] | None = None, **override: Any) -> dict[str, Any]:
    return {
        "credentials": credentials or jwt(server),
        "base_url": server.url("/salesforce"),
        "ca_cert": server.ca_pem,
        **override,
    }


async def test_the_jwt_bearer_flow_and_the_objects_describe(saas_files_server: SaasServer) -> None:
    result = await run("salesforce", config(saas_files_server))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [s.name for s in result.steps] == ["resolve", "tcp", "tls", "token", "authenticate", "access"]
    assert step(result, "authenticate").message == f"Signed in as {SALESFORCE_USER}"
    assert step(result, "access").message == "The object Account (Account) is readable, with 3 fields"
    assert saas_files_server.requests[-1].path == "/salesforce/services/data/v61.0/sobjects/Account/describe"
    assert SALESFORCE_KEY_PEM.splitlines()[1] not in str(result)
    assert_no_secret(result, saas_files_server)


async def test_a_refresh_token(saas_files_server: SaasServer) -> None:
    server = saas_files_server
    credentials = {
        "type": "oauth",
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "refresh_token": server.refresh_token,
        "token_url": server.url("/salesforce/services/oauth2/token"),
    }
    result = await run("salesforce", config(server, credentials))
    assert result.status == CheckStatus.SUCCEEDED, result.failure


async def test_a_user_not_pre_authorized_and_a_wrong_consumer_key_fail_at_token(saas_files_server: SaasServer) -> None:
    for override in ({"username": "mallory@example.com"}, {"consumer_key": "3MVGwrong"}):
        result = await run("salesforce", config(saas_files_server, jwt(saas_files_server, **override)))
        assert failure_type(result) == FailureType.AUTHENTICATION_FAILED, result.failure
        assert result.failure is not None and "credentials.consumer_key" in result.failure.fields
        assert "pre-authorized" in (result.failure.hint or "")
        assert step(result, "token").status == StepStatus.FAILED


def test_a_key_that_is_not_rsa_is_refused_when_parsed() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(InvalidConfiguration):
        get_connector("salesforce").parse_config(
            {"credentials": {**jwt_static(), "private_key": pem}, "base_url": "https://acme.my.salesforce.com"}
        )


def jwt_static() -> dict[str, str]:
    return {"type": "jwt", "consumer_key": "3MVG9", "username": SALESFORCE_USER, "private_key": SALESFORCE_KEY_PEM}


async def test_an_invalid_session_is_authentication_failed(saas_files_server: SaasServer) -> None:
    result = await run("salesforce", config(saas_files_server, jwt(saas_files_server, username=SALESFORCE_GONE_USER)))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None and "Session expired or invalid" in result.failure.message
    assert "base_url" in result.failure.fields
    assert step(result, "authenticate").status == StepStatus.FAILED


async def test_api_disabled_for_org_is_authorization_failed(saas_files_server: SaasServer) -> None:
    result = await run("salesforce", config(saas_files_server, jwt(saas_files_server, username=SALESFORCE_NO_API_USER)))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None and "API Enabled" in (result.failure.hint or "")
    assert "credentials.username" in result.failure.fields


async def test_a_missing_object_is_not_found_naming_object(saas_files_server: SaasServer) -> None:
    result = await run("salesforce", config(saas_files_server, object="Contact"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None and list(result.failure.fields) == ["object"]
    assert "does not exist" in result.failure.message


async def test_request_limit_exceeded_429_and_503(saas_files_server: SaasServer) -> None:
    result = await run("salesforce", config(saas_files_server, object="Busy__c"))
    assert failure_type(result) == FailureType.RATE_LIMITED
    assert result.failure is not None and "TotalRequests Limit exceeded" in result.failure.message
    result = await run("salesforce", config(saas_files_server, object="Throttled__c"))
    assert failure_type(result) == FailureType.RATE_LIMITED
    assert result.failure is not None and result.failure.retry_after_s == 120
    result = await run("salesforce", config(saas_files_server, object="Down__c"))
    assert failure_type(result) == FailureType.PROVIDER_UNAVAILABLE
