"""The azure_blob connector against a real Blob service (Azurite, tests/servers/azurite.py)."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest

from connectors import get_connector
from connectors.azure_blob import AzureBlobConnector
from connectors.base import CheckResult, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from tests import helpers
from tests.helpers import failure, failure_type, messages, step
from tests.servers.azurite import ACCOUNT, ODD_NAME, AzuriteServer


async def check(config: dict[str, Any], timeout: float = 5.0) -> CheckResult:
    return await helpers.check("azure_blob", config, timeout)


def codes(result: CheckResult) -> list[WarningCode]:
    return [w.code for w in result.warnings]


def test_the_azure_blob_connector_is_registered_under_its_name() -> None:
    connector = get_connector("azure_blob")
    assert isinstance(connector, AzureBlobConnector)
    assert connector.category == "files"


async def test_an_account_key_lists_and_reads_the_first_bytes(azurite: AzuriteServer) -> None:
    result = await check(azurite.config(prefix="reports/"))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert [(s.name, s.status) for s in result.steps] == [
        ("resolve", StepStatus.SUCCEEDED),
        ("tcp", StepStatus.SUCCEEDED),
        ("tls", StepStatus.SKIPPED),
        ("authenticate", StepStatus.SUCCEEDED),
        ("access", StepStatus.SUCCEEDED),
    ]
    assert step(result, "access").message == ("Container 'data' listed; read the first 13 bytes of 'reports/2024.csv'")
    assert result.warnings == []
    assert azurite.key not in messages(result)


async def test_the_first_byte_read_is_ranged(azurite: AzuriteServer) -> None:
    result = await check(azurite.config(prefix="reports/big"))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert "read the first 1024 bytes of 'reports/big.bin'" in step(result, "access").message


@pytest.mark.parametrize("auth", ["account_key", "sas_token"])
async def test_a_blob_name_that_needs_encoding_is_signed_and_read(azurite: AzuriteServer, auth: str) -> None:
    config = azurite.config(prefix="odd/")
    if auth == "sas_token":
        config = {**config, "account_key": None, "sas_token": azurite.sas("data", "rl")}
    result = await check(config)
    assert result.status == CheckStatus.SUCCEEDED, result
    assert f"read the first 13 bytes of '{ODD_NAME}'" in step(result, "access").message


async def test_a_connection_string_with_the_key_succeeds(azurite: AzuriteServer) -> None:
    conn = f"BlobEndpoint={azurite.endpoint_url};AccountName={ACCOUNT};AccountKey={azurite.key}"
    result = await check({"container": "data", "connection_string": conn})
    assert result.status == CheckStatus.SUCCEEDED, result


async def test_a_sas_with_read_and_list_succeeds(azurite: AzuriteServer) -> None:
    sas = azurite.sas("data", "rl")
    result = await check(azurite.config(account_key=None, sas_token=sas))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert result.warnings == []
    assert sas not in messages(result)


async def test_a_sas_connection_string_succeeds_naming_the_account_from_its_endpoint(azurite: AzuriteServer) -> None:
    conn = f"BlobEndpoint={azurite.endpoint_url};SharedAccessSignature={azurite.sas('data', 'rl')}"
    result = await check({"container": "data", "connection_string": conn})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert f"accepted by account '{ACCOUNT}'" in step(result, "authenticate").message


async def test_a_sas_expiring_soon_succeeds_with_a_token_expiring_warning(azurite: AzuriteServer) -> None:
    sas = azurite.sas("data", "rl", expires_in=datetime.timedelta(days=3))
    result = await check(azurite.config(account_key=None, sas_token=sas))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert codes(result) == [WarningCode.TOKEN_EXPIRING]


async def test_an_expired_sas_fails_with_authentication_failed(azurite: AzuriteServer) -> None:
    sas = azurite.sas("data", "rl", expires_in=datetime.timedelta(days=-1))
    result = await check(azurite.config(account_key=None, sas_token=sas))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert failure(result).fields == ["sas_token"]


async def test_an_empty_container_succeeds_with_an_empty_location_warning(azurite: AzuriteServer) -> None:
    result = await check(azurite.config(container="empty"))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert codes(result) == [WarningCode.EMPTY_LOCATION]


async def test_an_empty_prefix_succeeds_with_an_empty_location_warning(azurite: AzuriteServer) -> None:
    result = await check(azurite.config(prefix="nothing-here/"))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert codes(result) == [WarningCode.EMPTY_LOCATION]
    assert step(result, "access").message == "Container 'data' has no blob under prefix 'nothing-here/' yet (listed)"


# --- failures --------------------------------------------------------------------------


async def test_a_wrong_account_key_fails_with_authentication_failed(azurite: AzuriteServer) -> None:
    wrong = base64.b64encode(b"w" * 64).decode()
    result = await check(azurite.config(account_key=wrong))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert step(result, "authenticate").status == StepStatus.FAILED
    assert failure(result).fields == ["account_key", "account_name"]
    assert wrong not in messages(result)


async def test_a_tampered_sas_fails_with_authentication_failed(azurite: AzuriteServer) -> None:
    sas = azurite.sas("data", "rl").replace("sp=rl", "sp=rwl")
    result = await check(azurite.config(account_key=None, sas_token=sas))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert failure(result).fields == ["sas_token"]


async def test_a_missing_container_fails_with_not_found(azurite: AzuriteServer) -> None:
    result = await check(azurite.config(container="missing"))
    assert failure_type(result) == FailureType.NOT_FOUND, result
    assert failure(result).fields == ["container"]


async def test_a_sas_for_another_container_fails_with_authorization_failed(azurite: AzuriteServer) -> None:
    result = await check(azurite.config(account_key=None, sas_token=azurite.sas("empty", "rl")))
    assert failure_type(result) in (FailureType.AUTHORIZATION_FAILED, FailureType.AUTHENTICATION_FAILED)
    assert failure(result).fields == ["sas_token"]


async def test_a_sas_without_list_fails_the_access_step(azurite: AzuriteServer) -> None:
    result = await check(azurite.config(account_key=None, sas_token=azurite.sas("data", "r")))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED, result
    assert step(result, "access").status == StepStatus.FAILED
    assert "l (list)" in failure(result).hint


async def test_a_sas_without_read_fails_the_first_byte_read(azurite: AzuriteServer) -> None:
    result = await check(azurite.config(prefix="reports/", account_key=None, sas_token=azurite.sas("data", "l")))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED, result
    assert "read blob 'reports/2024.csv'" in failure(result).message
    assert "r (read)" in failure(result).hint
    assert failure(result).fields == ["sas_token"]


def test_exactly_one_credential_is_required(azurite: AzuriteServer) -> None:
    with pytest.raises(InvalidConfiguration, match="exactly one"):
        get_connector("azure_blob").parse_config(azurite.config(sas_token="sv=2023-11-03&sig=x"))
    with pytest.raises(InvalidConfiguration, match="base64"):
        get_connector("azure_blob").parse_config(azurite.config(account_key="not base64!"))


# --- hostile or overloaded servers -------------------------------------------------------


async def test_server_busy_fails_as_rate_limited_with_retry_after(azure_standin: str) -> None:
    config = {"account_name": ACCOUNT, "container": "data", "sas_token": "sv=2023-11-03&sig=x"}
    result = await check({**config, "endpoint_url": f"{azure_standin}/busy"})
    assert failure_type(result) == FailureType.RATE_LIMITED
    assert failure(result).retry_after_s == 120


@pytest.mark.parametrize(
    ("path", "expected", "retry_after"),
    [("down", FailureType.PROVIDER_UNAVAILABLE, None), ("limit", FailureType.RATE_LIMITED, 3600)],
)
async def test_an_outage_or_a_rate_limit_fails_retryable(
    azure_standin: str, path: str, expected: FailureType, retry_after: float | None
) -> None:
    config = {"account_name": ACCOUNT, "container": "data", "sas_token": "sv=2023-11-03&sig=x"}
    result = await check({**config, "endpoint_url": f"{azure_standin}/{path}"})
    assert (failure_type(result), failure(result).retryable) == (expected, True)
    assert failure(result).retry_after_s == retry_after


async def test_a_disabled_account_fails_naming_the_account(azure_standin: str) -> None:
    config = {"account_name": ACCOUNT, "container": "data", "sas_token": "sv=2023-11-03&sig=x"}
    result = await check({**config, "endpoint_url": f"{azure_standin}/disabled"})
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert failure(result).fields == ["account_name"]


async def test_a_huge_listing_and_an_unranged_blob_are_cut(azure_standin: str) -> None:
    config = {"account_name": ACCOUNT, "container": "data", "sas_token": "sv=2023-11-03&sig=x"}
    result = await check({**config, "endpoint_url": f"{azure_standin}/huge"})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "access").message == "Container 'data' listed; read the first 1024 bytes of 'b0'"
