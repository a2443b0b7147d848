"""The s3 connector against a real S3-compatible server (SeaweedFS, tests/servers/s3.py)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from connectors import get_connector
from connectors.base import FIRST_BYTES, MASK, CheckResult, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.s3 import S3Config, S3Connector, _answer, _read_failure, _target
from tests import helpers
from tests.helpers import failure_type, messages, step
from tests.servers.http import HttpServer
from tests.servers.s3 import EXTERNAL_ID, ROLE_ARN, S3Server, StsServer
from tests.servers.tcp import HostPort


async def check(config: dict[str, Any], timeout: float = 5.0) -> CheckResult:
    return await helpers.check("s3", config, timeout)


def statuses(result: CheckResult) -> list[tuple[str, StepStatus]]:
    return [(s.name, s.status) for s in result.steps]


# --- success ---------------------------------------------------------------------------


def test_the_s3_connector_is_registered_under_its_name() -> None:
    connector = get_connector("s3")
    assert isinstance(connector, S3Connector)
    assert connector.category == "files"
    assert connector.steps == ("resolve", "tcp", "tls", "authenticate", "access")


async def test_a_readable_bucket_succeeds_step_by_step(s3_server: S3Server) -> None:
    result = await check(s3_server.config(prefix="reports/"))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert statuses(result) == [
        ("resolve", StepStatus.SUCCEEDED),
        ("tcp", StepStatus.SUCCEEDED),
        ("tls", StepStatus.SKIPPED),
        ("authenticate", StepStatus.SUCCEEDED),
        ("access", StepStatus.SUCCEEDED),
    ]
    assert step(result, "authenticate").message.startswith("Credentials accepted")
    assert step(result, "access").message == (
        "Bucket 'data' listed under prefix 'reports/': read the first 13 bytes of 'reports/2024.csv'"
    )
    assert result.warnings == []
    assert s3_server.secret_key not in messages(result)
    assert s3_server.access_key not in messages(result)


async def test_an_empty_prefix_succeeds_with_an_empty_location_warning(s3_server: S3Server) -> None:
    result = await check(s3_server.config(prefix="no-such-folder/"))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert "no object under prefix 'no-such-folder/'" in step(result, "access").message
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]
    assert result.warnings[0].message == "Bucket 'data' has no object under prefix 'no-such-folder/'"
    assert "prefix" in result.warnings[0].hint


async def test_an_empty_bucket_succeeds_with_an_empty_location_warning(s3_server: S3Server) -> None:
    result = await check(s3_server.config(bucket=s3_server.empty_bucket))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert "no object in the bucket" in step(result, "access").message
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]


async def test_a_folder_marker_is_skipped_and_only_the_first_bytes_are_read(s3_server: S3Server) -> None:
    result = await check(s3_server.config(prefix="folders/"))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "access").message == (
        f"Bucket 'data' listed under prefix 'folders/': read the first {FIRST_BYTES} bytes of 'folders/a/b.csv'"
    )


async def test_an_object_of_zero_bytes_is_read_without_a_range(s3_server: S3Server) -> None:
    result = await check(s3_server.config(prefix="zero/"))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "access").message.endswith("read the first 0 bytes of 'zero/empty.txt'")


async def test_localhost_resolves_and_is_checked_like_the_address(s3_server: S3Server) -> None:
    result = await check(s3_server.config(endpoint_url=f"http://localhost:{s3_server.port}"))
    assert result.status == CheckStatus.SUCCEEDED, result


# --- credentials ---------------------------------------------------------------------------


async def test_a_wrong_secret_is_authentication_failed_and_never_shown(s3_server: S3Server) -> None:
    wrong = s3_server.secret_key[::-1] + "x"
    result = await check(s3_server.config(secret_access_key=wrong))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert "SignatureDoesNotMatch" in result.failure.message
    assert "secret_access_key" in result.failure.hint
    assert result.failure.retryable is False
    assert step(result, "authenticate").status == StepStatus.FAILED
    assert step(result, "access").status == StepStatus.SKIPPED
    assert wrong not in messages(result)
    assert s3_server.access_key not in messages(result)


async def test_an_unknown_access_key_is_authentication_failed(s3_server: S3Server) -> None:
    result = await check(s3_server.config(access_key_id="AKNOSUCHKEY0000"))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "The S3 endpoint does not know this access key ID (InvalidAccessKeyId)"
    assert "GovCloud" in result.failure.hint and "China" in result.failure.hint
    assert result.failure.fields == ["access_key_id", "region"]
    assert "AKNOSUCHKEY0000" not in messages(result)


# --- the bucket ------------------------------------------------------------------------------


async def test_an_unknown_bucket_is_not_found(s3_server: S3Server) -> None:
    result = await check(s3_server.config(bucket="missing"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert result.failure.message == "Bucket 'missing' does not exist at this endpoint"
    assert step(result, "authenticate").status == StepStatus.SUCCEEDED
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_user_who_may_not_list_the_bucket_is_authorization_failed(s3_server: S3Server) -> None:
    result = await check(
        s3_server.config(
            access_key_id=s3_server.nolist_key, secret_access_key=s3_server.nolist_secret, prefix="reports/"
        )
    )
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "Bucket 'data' exists but listing it is denied for these credentials"
    assert result.failure.hint.startswith(
        "The bucket exists but listing is denied: grant s3:ListBucket on arn:aws:s3:::data (prefix 'reports/'"
    )
    assert step(result, "authenticate").status == StepStatus.SUCCEEDED
    assert s3_server.nolist_secret not in messages(result)


async def test_keys_that_may_list_but_not_read_are_authorization_failed_naming_get_object(
    s3_server: S3Server,
) -> None:
    result = await check(
        s3_server.config(
            access_key_id=s3_server.noread_key, secret_access_key=s3_server.noread_secret, prefix="reports/"
        )
    )
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == (
        "The objects under prefix 'reports/' can be listed, but reading 'reports/2024.csv' is denied for these "
        "credentials"
    )
    assert "s3:GetObject on arn:aws:s3:::data/reports/*" in result.failure.hint
    assert "kms:Decrypt" in result.failure.hint
    assert result.failure.fields == ["access_key_id", "bucket", "prefix"]
    assert step(result, "access").status == StepStatus.FAILED
    assert s3_server.noread_secret not in messages(result)


def test_a_denied_read_that_blames_kms_names_kms_decrypt() -> None:
    # SeaweedFS has no KMS: this is AWS's documented answer to a GetObject of an SSE-KMS object.
    body = (
        b"<Error><Code>AccessDenied</Code><Message>User: arn:aws:iam::1:user/r is not authorized to perform: "
        b"kms:Decrypt on resource: arn:aws:kms:us-east-1:1:key/k</Message></Error>"
    )
    assert _answer(403, body).kms
    assert not _answer(403, b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>").kms
    config = S3Config.model_validate({"bucket": "data", "access_key_id": "AK", "secret_access_key": "s"})
    failure = _read_failure(_answer(403, body), config, "in the bucket", "a.csv")
    assert failure.type == FailureType.AUTHORIZATION_FAILED
    assert "encrypted with a KMS key" in failure.message and "arn:aws:kms" not in failure.message
    assert failure.hint.startswith("Allow kms:Decrypt on the bucket's KMS key")
    assert failure.fields == ["access_key_id", "bucket"]


async def test_every_failure_of_the_access_step_names_its_fields(s3_server: S3Server) -> None:
    result = await check(s3_server.config(bucket="missing"))
    assert result.failure is not None and result.failure.fields == ["bucket", "endpoint_url"]
    result = await check(
        s3_server.config(access_key_id=s3_server.nolist_key, secret_access_key=s3_server.nolist_secret)
    )
    assert result.failure is not None and result.failure.fields == ["access_key_id", "bucket"]


# --- assuming a role (a stand-in STS in front of the real store) ------------------------------


async def test_a_role_is_assumed_and_its_credentials_list_the_bucket(
    s3_server: S3Server, sts_server: StsServer
) -> None:
    result = await check(
        s3_server.config(role_arn=ROLE_ARN, external_id=EXTERNAL_ID, sts_endpoint_url=sts_server.endpoint_url)
    )
    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "authenticate").message == (
        f"Assumed role {ROLE_ARN} as arn:aws:sts::000000000000:assumed-role/sourcecheck-reader/sourcecheck"
    )
    assert sts_server.calls[-1]["Action"] == "AssumeRole"
    assert sts_server.calls[-1]["ExternalId"] == EXTERNAL_ID
    # The role's temporary keys are nowhere in the result, though the runner does not know them.
    assert s3_server.role_key not in messages(result) and s3_server.role_secret not in messages(result)


async def test_a_role_the_user_may_not_assume_is_authorization_failed(
    s3_server: S3Server, sts_server: StsServer
) -> None:
    result = await check(s3_server.config(role_arn=ROLE_ARN, sts_endpoint_url=sts_server.endpoint_url))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == f"These credentials are not allowed to assume role {ROLE_ARN}"
    assert "set external_id" in result.failure.hint
    assert step(result, "authenticate").status == StepStatus.FAILED


async def test_a_wrong_secret_when_assuming_a_role_is_authentication_failed(
    s3_server: S3Server, sts_server: StsServer
) -> None:
    result = await check(
        s3_server.config(
            secret_access_key="not-the-secret",
            role_arn=ROLE_ARN,
            external_id=EXTERNAL_ID,
            sts_endpoint_url=sts_server.endpoint_url,
        )
    )
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None and result.failure.message.startswith("STS rejected the request signature")


# --- network --------------------------------------------------------------------------------


async def test_a_closed_port_is_connection_refused(closed_port: int) -> None:
    result = await check(S3Connector.example_config("127.0.0.1", closed_port))
    assert failure_type(result) == FailureType.CONNECTION_REFUSED
    assert [s.status for s in result.steps[2:]] == [StepStatus.SKIPPED] * 3


async def test_a_server_that_never_answers_is_a_timeout_in_the_authenticate_step(hung_server: HostPort) -> None:
    started = time.monotonic()
    result = await check(S3Connector.example_config(hung_server.host, hung_server.port), timeout=1.5)
    assert time.monotonic() - started < 3
    assert failure_type(result) == FailureType.TIMEOUT
    assert step(result, "authenticate").status == StepStatus.FAILED


async def test_a_web_server_that_is_not_s3_is_an_unexpected_response(http_server: HttpServer) -> None:
    result = await check(S3Connector.example_config(http_server.host, http_server.port))
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE
    assert result.failure is not None and "not like an S3 API" in result.failure.message
    assert "endpoint_url" in result.failure.hint


async def test_an_https_endpoint_is_handshaken_with_the_given_ca(https_server: HttpServer) -> None:
    config = S3Connector.example_config(https_server.host, https_server.port)
    config["endpoint_url"] = https_server.base_url
    result = await check({**config, "ca_cert": https_server.ca_pem})
    assert re.fullmatch(r"TLS 1\.[23], certificate valid until \d{4}-\d\d-\d\d", step(result, "tls").message)
    assert step(result, "authenticate").status == StepStatus.FAILED  # the test server is no S3 store

    result = await check(config)
    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None and "unknown authority" in result.failure.message


# --- configuration ----------------------------------------------------------------------------


def test_the_schema_marks_the_secrets_and_nothing_else() -> None:
    schema = get_connector("s3").connection_specification()

    def is_secret(spec: dict[str, Any]) -> bool:
        return bool(spec.get("secret")) or any(branch.get("secret") for branch in spec.get("anyOf", []))

    secret = {name for name, spec in schema["properties"].items() if is_secret(spec)}
    assert secret == {"access_key_id", "secret_access_key", "session_token"}
    assert schema["properties"]["secret_access_key"]["writeOnly"] is True


def test_every_field_has_a_title_a_description_and_examples() -> None:
    schema = get_connector("s3").connection_specification()
    for name, spec in schema["properties"].items():
        assert {"title", "description", "examples"} <= spec.keys(), name


def test_a_dumped_config_masks_the_keys() -> None:
    config = S3Config.model_validate(
        {"bucket": "b-1", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t", "session_token": "tok"}
    )
    masked = config.masked()
    assert masked["access_key_id"] == masked["secret_access_key"] == masked["session_token"] == MASK
    assert config.revealed()["secret_access_key"] == "s3cr3t"


@pytest.mark.parametrize(
    "overrides",
    [
        {"bucket": "Bad_Bucket/x"},
        {"bucket": "ab"},
        {"bucket": "s3://data"},
        {"endpoint_url": "ftp://127.0.0.1/"},
        {"endpoint_url": "http://key:pw-in-url@127.0.0.1:9000"},
        {"endpoint_url": "http://127.0.0.1:9000/?x=1"},
        {"endpoint_url": " http://127.0.0.1:9000"},
        {"external_id": "abc"},  # without role_arn
        {"role_arn": "not-an-arn"},
        {"prefix": "a\nb"},
        {"region": "eu west 1"},
        {"secret_access_key": MASK},
        {"ca_cert": "not a certificate"},
    ],
)
def test_an_invalid_setting_is_rejected(overrides: dict[str, Any]) -> None:
    base = {"bucket": "data", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t"}
    with pytest.raises(InvalidConfiguration) as info:
        get_connector("s3").parse_config({**base, **overrides})
    assert "pw-in-url" not in str(info.value) and "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "url", "host"),
    [
        ({}, "https://acme-data.s3.us-east-1.amazonaws.com/", "acme-data.s3.us-east-1.amazonaws.com"),
        (
            {"region": "eu-west-1"},
            "https://acme-data.s3.eu-west-1.amazonaws.com/",
            "acme-data.s3.eu-west-1.amazonaws.com",
        ),
        ({"bucket": "acme.data"}, "https://s3.us-east-1.amazonaws.com/acme.data", "s3.us-east-1.amazonaws.com"),
        (
            {"region": "cn-north-1"},
            "https://acme-data.s3.cn-north-1.amazonaws.com.cn/",
            "acme-data.s3.cn-north-1.amazonaws.com.cn",
        ),
        ({"endpoint_url": "http://minio.local:9000"}, "http://minio.local:9000/acme-data", "minio.local"),
        ({"endpoint_url": "https://gw.example/s3/"}, "https://gw.example/s3/acme-data", "gw.example"),
        ({"endpoint_url": "http://[::1]:9000"}, "http://[::1]:9000/acme-data", "::1"),
    ],
)
def test_the_bucket_url_is_virtual_hosted_on_aws_and_path_style_elsewhere(
    overrides: dict[str, Any], url: str, host: str
) -> None:
    config = S3Config.model_validate(
        {"bucket": "acme-data", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s", **overrides}
    )
    target = _target(config)
    assert (target.bucket_url, target.host) == (url, host)
