"""The gcs connector: listing and reads against a real emulator (gcp-storage-emulator), the service
account's JWT grant and Google's error bodies against a local stand-in (tests/servers/gcs.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors import get_connector
from connectors.base import CheckResult, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.gcs import GcsConnector
from tests import helpers
from tests.connectors.test_http_bounds import assert_too_large, attack
from tests.helpers import failure, messages, step
from tests.servers.bomb import BombServer
from tests.servers.gcs import SERVICE_ACCOUNT, other_key_json, service_account_json
from tests.servers.http import HttpServer
from tests.servers.saas import SaasServer
from tests.servers.tcp import HostPort


async def check(config: dict[str, Any], timeout: float = 5.0) -> CheckResult:
    return await helpers.check("gcs", config, timeout)


def token(value: str = "ya29.emulator") -> dict[str, str]:
    return {"type": "token", "access_token": value}


def service_account(standin: SaasServer, key_json: str | None = None) -> dict[str, str]:
    return {
        "type": "service_account",
        "service_account_json": key_json or service_account_json(standin.url("/gcs-token")),
    }


def on_standin(standin: SaasServer, credentials: dict[str, str], **overrides: Any) -> dict[str, Any]:
    return {
        "credentials": credentials,
        "bucket": "data",
        "base_url": standin.url("/gcs"),
        "ca_cert": standin.ca_pem,
        **overrides,
    }


def test_the_gcs_connector_is_registered_under_its_name() -> None:
    connector = get_connector("gcs")
    assert isinstance(connector, GcsConnector)
    assert connector.category == "files"
    config = connector.parse_config({"credentials": token(), "bucket": "data"})
    assert connector.planned_steps(config) == ("resolve", "tcp", "tls", "authenticate", "access")


# --- the emulator: listing and reading ---------------------------------------------------------


async def test_a_prefix_with_objects_is_listed_and_its_first_object_read(gcs_emulator: str) -> None:
    result = await check({"credentials": token(), "bucket": "data", "prefix": "reports/", "base_url": gcs_emulator})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "tls").status == StepStatus.SKIPPED  # the emulator speaks http://
    assert step(result, "authenticate").message == "Token accepted for the token's account; bucket 'data' found (US)"
    assert step(result, "access").message == (
        "Bucket 'data' listed under prefix 'reports/': read the first 1024 bytes of 'reports/2024.csv'"
    )
    assert result.warnings == []


async def test_an_object_name_that_needs_encoding_is_read(gcs_emulator: str) -> None:
    result = await check({"credentials": token(), "bucket": "data", "prefix": "notes/", "base_url": gcs_emulator})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert "read the first 1 bytes of 'notes/a b+c.txt'" in step(result, "access").message


async def test_an_empty_bucket_is_an_empty_location_warning(gcs_emulator: str) -> None:
    result = await check({"credentials": token(), "bucket": "empty", "base_url": gcs_emulator})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]
    assert "no object in the bucket" in step(result, "access").message


async def test_an_empty_prefix_is_an_empty_location_warning(gcs_emulator: str) -> None:
    result = await check({"credentials": token(), "bucket": "data", "prefix": "nothing/", "base_url": gcs_emulator})
    assert result.status == CheckStatus.SUCCEEDED, result
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]
    assert "under prefix 'nothing/'" in result.warnings[0].message


async def test_a_missing_bucket_in_the_emulator_is_not_found(gcs_emulator: str) -> None:
    found = failure(await check({"credentials": token(), "bucket": "no-such-bucket", "base_url": gcs_emulator}))
    assert found.type == FailureType.NOT_FOUND
    assert list(found.fields) == ["bucket"]


# --- the stand-in: the service account's grant ---------------------------------------------------


async def test_a_service_account_gets_a_token_with_a_signed_jwt_and_reads(gcs_standin: SaasServer) -> None:
    result = await check(on_standin(gcs_standin, service_account(gcs_standin)))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert [s.name for s in result.steps] == ["resolve", "tcp", "tls", "token", "authenticate", "access"]
    assert step(result, "token").message.startswith("Google issued an access token at 127.0.0.1 (valid for 59 min)")
    assert step(result, "authenticate").message == f"Token accepted for {SERVICE_ACCOUNT}; bucket 'data' found (EU)"
    assert "read the first 1024 bytes of 'reports/2024.csv'" in step(result, "access").message
    assert not any(t in messages(result) for t in gcs_standin.issued)


async def test_a_key_google_does_not_know_is_authentication_failed_at_the_token_step(gcs_standin: SaasServer) -> None:
    result = await check(
        on_standin(gcs_standin, service_account(gcs_standin, other_key_json(gcs_standin.url("/gcs-token"))))
    )
    found = failure(result)
    assert found.type == FailureType.AUTHENTICATION_FAILED
    assert "Invalid JWT Signature" in found.message
    assert list(found.fields) == ["credentials.service_account_json"]
    assert "new JSON key" in (found.hint or "")
    assert step(result, "token").status == StepStatus.FAILED


async def test_a_key_for_another_account_is_authentication_failed(gcs_standin: SaasServer) -> None:
    key = json.loads(service_account_json(gcs_standin.url("/gcs-token")))
    key["client_email"] = "gone@sourcecheck-test.iam.gserviceaccount.com"
    found = failure(await check(on_standin(gcs_standin, service_account(gcs_standin, json.dumps(key)))))
    assert found.type == FailureType.AUTHENTICATION_FAILED
    assert "account not found" in found.message


async def test_a_service_account_signs_in_at_its_token_uri_then_reads_from_the_emulator(
    gcs_standin: SaasServer, gcs_emulator: str
) -> None:
    config = on_standin(gcs_standin, service_account(gcs_standin), base_url=gcs_emulator, prefix="reports/")
    result = await check(config)
    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "tls").status == StepStatus.SKIPPED  # base_url's: the token endpoint is https
    assert step(result, "token").status == StepStatus.SUCCEEDED
    assert "'reports/2024.csv'" in step(result, "access").message


# --- the stand-in: Google's error bodies ---------------------------------------------------------


async def test_an_invalid_token_is_authentication_failed_naming_it(gcs_standin: SaasServer) -> None:
    result = await check(on_standin(gcs_standin, token("ya29.wrong-token")))
    found = failure(result)
    assert found.type == FailureType.AUTHENTICATION_FAILED
    assert "Invalid Credentials" in found.message
    assert list(found.fields) == ["credentials.access_token"]
    assert "ya29.wrong-token" not in messages(result)


async def test_a_token_without_objects_list_is_authorization_failed(gcs_standin: SaasServer) -> None:
    result = await check(on_standin(gcs_standin, token(gcs_standin.limited_token)))
    found = failure(result)
    assert found.type == FailureType.AUTHORIZATION_FAILED
    assert "does not have storage.objects.list access" in found.message
    assert "roles/storage.objectViewer" in (found.hint or "")
    assert list(found.fields) == ["credentials.access_token", "bucket"]
    # buckets.get was refused too, which reading objects does not need: authenticate passed.
    assert step(result, "authenticate").status == StepStatus.SUCCEEDED


async def test_an_object_that_may_be_listed_but_not_read_is_authorization_failed(gcs_standin: SaasServer) -> None:
    found = failure(await check(on_standin(gcs_standin, token(gcs_standin.token), bucket="locked")))
    assert found.type == FailureType.AUTHORIZATION_FAILED
    assert "reading 'reports/2024.csv' is denied" in found.message
    assert "storage.objects.get" in found.message


async def test_a_missing_bucket_is_not_found_naming_it(gcs_standin: SaasServer) -> None:
    found = failure(await check(on_standin(gcs_standin, token(gcs_standin.token), bucket="nope")))
    assert found.type == FailureType.NOT_FOUND
    assert "The specified bucket does not exist." in found.message
    assert list(found.fields) == ["bucket"]


async def test_a_rate_limited_bucket_is_rate_limited_with_when_to_retry(gcs_standin: SaasServer) -> None:
    found = failure(await check(on_standin(gcs_standin, token(gcs_standin.token), bucket="busy")))
    assert found.type == FailureType.RATE_LIMITED
    assert found.retryable is True
    assert found.retry_after_s == 120


async def test_an_outage_is_provider_unavailable(gcs_standin: SaasServer) -> None:
    found = failure(await check(on_standin(gcs_standin, token(gcs_standin.token), bucket="down")))
    assert found.type == FailureType.PROVIDER_UNAVAILABLE
    assert found.retryable is True


async def test_a_server_answering_a_gzip_bomb_is_bounded(bomb_server: BombServer, http_server: HttpServer) -> None:
    bomb_server.mode = "gzip"  # 50 MiB once decoded, to every path
    config = {"credentials": token(), "bucket": "data", "base_url": bomb_server.base_url}
    assert_too_large(await attack("gcs", config, http_server), "4 MiB")


async def test_a_server_that_never_answers_is_a_timeout(hung_server: HostPort) -> None:
    config = {"credentials": token(), "bucket": "data", "base_url": f"http://{hung_server.host}:{hung_server.port}"}
    result = await check(config, timeout=1.5)
    assert failure(result).type == FailureType.TIMEOUT


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key_json",
    [
        "not json",
        json.dumps({"type": "authorized_user"}),
        json.dumps({"type": "service_account", "client_email": "a@b", "private_key": "not a key"}),
        json.dumps({"type": "service_account", "private_key": "x"}),
    ],
)
def test_a_file_that_is_not_a_service_account_key_is_refused_without_its_content(key_json: str) -> None:
    config = {"credentials": {"type": "service_account", "service_account_json": key_json}, "bucket": "data"}
    with pytest.raises(InvalidConfiguration) as raised:
        get_connector("gcs").parse_config(config)
    assert key_json not in str(raised.value)


@pytest.mark.parametrize("bucket", ["gs://data", "Data", "a", "data/reports"])
def test_an_invalid_bucket_name_is_refused(bucket: str) -> None:
    with pytest.raises(InvalidConfiguration):
        get_connector("gcs").parse_config({"credentials": token(), "bucket": bucket})


def test_the_schema_marks_the_secrets_and_the_base_url() -> None:
    schema = get_connector("gcs").connection_specification()
    assert schema["properties"]["base_url"]["x-destination"] is True
    account = schema["$defs"]["GoogleServiceAccount"]["properties"]["service_account_json"]
    assert account["secret"] is True
