"""The onedrive connector against the local Microsoft Graph (drive endpoints) and Entra ID stand-ins."""

from __future__ import annotations

from typing import Any

from connectors.base import CheckStatus, StepStatus
from connectors.errors import FailureType, WarningCode
from tests.helpers import failure_type, step
from tests.servers.saas import SaasServer, assert_no_secret, run
from tests.servers.saas_files import ONEDRIVE_ID, ONEDRIVE_MISSING_ID, entra_oauth


def config(server: SaasServer, credentials: dict[str, Any] | None = None, **override: Any) -> dict[str, Any]:
    return {
        "credentials": credentials or {"type": "token", "access_token": server.token},
        "base_url": server.url("/onedrive"),
        "ca_cert": server.ca_pem,
        **override,
    }


async def test_the_first_file_of_the_users_drive_is_read_with_a_ranged_get(saas_files_server: SaasServer) -> None:
    server = saas_files_server
    before = len(server.requests)
    result = await run("onedrive", config(server))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [s.name for s in result.steps] == ["resolve", "tcp", "tls", "authenticate", "access"]
    assert step(result, "authenticate").message == "Opened the business drive 'OneDrive' of Ada Reader"
    assert step(result, "access").message == (
        "The top of the drive is readable, and its file 'Welcome.docx' can be downloaded"
    )
    assert not result.warnings
    sent = server.requests[before:]
    assert sent[0].path.startswith("/onedrive/v1.0/me/drive?")
    downloads = [r for r in sent if r.path.startswith("/onedrive-download/01WELCOME")]
    assert len(downloads) == 1 and downloads[0].headers["range"] == "bytes=0-1023"
    assert_no_secret(result, server)


async def test_a_refresh_token_a_drive_id_and_a_folder(saas_files_server: SaasServer) -> None:
    result = await run(
        "onedrive", config(saas_files_server, entra_oauth(saas_files_server), drive_id=ONEDRIVE_ID, folder="/Reports/")
    )
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "token").status == StepStatus.SUCCEEDED
    assert (
        step(result, "access").message
        == "The folder 'Reports' is readable, and its file 'report.pdf' can be downloaded"
    )
    assert_no_secret(result, saas_files_server)


async def test_a_revoked_refresh_token_fails_at_the_token_step(saas_files_server: SaasServer) -> None:
    credentials = entra_oauth(saas_files_server, refresh_token=saas_files_server.revoked_refresh_token)
    result = await run("onedrive", config(saas_files_server, credentials))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert step(result, "token").status == StepStatus.FAILED
    assert_no_secret(result, saas_files_server)


async def test_a_bad_token_is_authentication_failed_naming_the_field(saas_files_server: SaasServer) -> None:
    result = await run("onedrive", config(saas_files_server, {"type": "token", "access_token": "not-a-jwt"}))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message.startswith("Microsoft Graph answered 401 Unauthorized: IDX14100")
    assert list(result.failure.fields) == ["credentials.access_token"]
    assert step(result, "authenticate").status == StepStatus.FAILED


async def test_a_missing_permission_is_authorization_failed_naming_files_read(saas_files_server: SaasServer) -> None:
    token = {"type": "token", "access_token": saas_files_server.limited_token}
    result = await run("onedrive", config(saas_files_server, token))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None and "Files.Read" in result.failure.message
    assert list(result.failure.fields) == ["credentials.access_token"]
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_missing_drive_and_a_missing_folder_are_not_found(saas_files_server: SaasServer) -> None:
    result = await run("onedrive", config(saas_files_server, drive_id=ONEDRIVE_MISSING_ID))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None and list(result.failure.fields) == ["drive_id"]
    result = await run("onedrive", config(saas_files_server, folder="Nope/Deeper"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None and list(result.failure.fields) == ["folder"]
    assert "folder 'Nope/Deeper'" in result.failure.message


async def test_an_empty_folder_and_one_with_only_folders_are_warnings(saas_files_server: SaasServer) -> None:
    for folder, said in (("Empty", "The folder 'Empty' has no file"), ("OnlyFolders", "(only folders)")):
        result = await run("onedrive", config(saas_files_server, folder=folder))
        assert result.status == CheckStatus.SUCCEEDED, result.failure
        assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]
        assert said in result.warnings[0].message and result.warnings[0].hint


async def test_a_file_that_cannot_be_downloaded_fails_the_access_step(saas_files_server: SaasServer) -> None:
    result = await run("onedrive", config(saas_files_server, folder="Locked"))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None and "downloading 'salaries.xlsx'" in result.failure.message
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_download_ignoring_range_is_bounded(saas_files_server: SaasServer) -> None:
    result = await run("onedrive", config(saas_files_server, folder="Huge"))
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE
    assert step(result, "access").status == StepStatus.FAILED


async def test_429_and_503_are_the_providers_state(saas_files_server: SaasServer) -> None:
    result = await run("onedrive", config(saas_files_server, folder="Busy"))
    assert failure_type(result) == FailureType.RATE_LIMITED
    assert result.failure is not None and result.failure.retry_after_s == 120 and result.failure.retryable
    result = await run("onedrive", config(saas_files_server, folder="Down"))
    assert failure_type(result) == FailureType.PROVIDER_UNAVAILABLE
    assert result.failure is not None and result.failure.retryable
    result = await run("onedrive", config(saas_files_server, folder="Flaky"))  # Retry-After 1, waited out once
    assert result.status == CheckStatus.SUCCEEDED, result.failure
