"""The box connector against the local Box API and token endpoint stand-ins."""

from __future__ import annotations

from typing import Any

from connectors.base import CheckStatus, StepStatus
from connectors.errors import FailureType, WarningCode
from tests.helpers import failure_type, step
from tests.servers.saas import SaasServer, assert_no_secret, run
from tests.servers.saas_files import BOX_ENTERPRISE, BOX_UNAUTHORIZED_CLIENT


def config(server: SaasServer, credentials: dict[str, Any] | None = None, **override: Any) -> dict[str, Any]:
    return {
        "credentials": credentials or {"type": "token", "access_token": server.token},
        "base_url": server.url("/box/api"),
        "ca_cert": server.ca_pem,
        **override,
    }


def ccg(server: SaasServer, **override: Any) -> dict[str, Any]:
    return {
        "type": "client_credentials",
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "subject_id": BOX_ENTERPRISE,
        "token_url": server.url("/box/oauth2/token"),
        **override,
    }


async def test_client_credentials_and_the_first_file_downloaded_through_a_redirect(
    saas_files_server: SaasServer,
) -> None:
    server = saas_files_server
    before = len(server.requests)
    result = await run("box", config(server, ccg(server), folder_id="8000001"))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [s.name for s in result.steps] == ["resolve", "tcp", "tls", "token", "authenticate", "access"]
    assert step(result, "authenticate").message == "Signed in as Ada Reader (ada@example.com)"
    assert step(result, "access").message == (
        "The folder 8000001 is readable, and its file 'report.pdf' can be downloaded"
    )
    sent = server.requests[before:]
    token = next(r for r in sent if r.path == "/box/oauth2/token")
    assert token.form["box_subject_type"] == "enterprise" and token.form["box_subject_id"] == BOX_ENTERPRISE
    download = next(r for r in sent if r.path.startswith("/onedrive-download/9000000"))
    assert download.headers["range"] == "bytes=0-1023"
    assert_no_secret(result, server)


async def test_an_access_token_and_the_root_folder(saas_files_server: SaasServer) -> None:
    result = await run("box", config(saas_files_server))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert "token" not in [s.name for s in result.steps]
    assert step(result, "access").message == (
        "The top of All Files is readable (its first entry, 'Reports', is a folder: no file downloaded)"
    )


async def test_an_app_the_admin_has_not_authorized_is_told_to_the_admin(saas_files_server: SaasServer) -> None:
    result = await run("box", config(saas_files_server, ccg(saas_files_server, client_id=BOX_UNAUTHORIZED_CLIENT)))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None and "not authorized" in result.failure.message
    assert "Platform Apps Manager" in (result.failure.hint or "")
    assert step(result, "token").status == StepStatus.FAILED


async def test_a_wrong_client_secret_is_authentication_failed(saas_files_server: SaasServer) -> None:
    result = await run("box", config(saas_files_server, ccg(saas_files_server, client_secret="wrong")))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None and result.failure.fields
    assert_no_secret(result, saas_files_server)


async def test_a_bad_token_is_authentication_failed(saas_files_server: SaasServer) -> None:
    result = await run("box", config(saas_files_server, {"type": "token", "access_token": "nope"}))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None and list(result.failure.fields) == ["credentials.access_token"]


async def test_insufficient_permissions_is_authorization_failed(saas_files_server: SaasServer) -> None:
    token = {"type": "token", "access_token": saas_files_server.limited_token}
    result = await run("box", config(saas_files_server, token))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None and "Platform Apps Manager" in (result.failure.hint or "")
    assert list(result.failure.fields) == ["credentials.access_token"]


async def test_a_missing_folder_is_not_found(saas_files_server: SaasServer) -> None:
    result = await run("box", config(saas_files_server, folder_id="7777"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None and list(result.failure.fields) == ["folder_id"]


async def test_an_empty_folder_is_a_warning(saas_files_server: SaasServer) -> None:
    result = await run("box", config(saas_files_server, folder_id="8000002"))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]


async def test_a_file_that_cannot_be_downloaded_fails(saas_files_server: SaasServer) -> None:
    result = await run("box", config(saas_files_server, folder_id="8000003"))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None and "salaries.xlsx" in result.failure.message


async def test_a_redirect_loop_is_bounded(saas_files_server: SaasServer) -> None:
    result = await run("box", config(saas_files_server, folder_id="8000004"))
    assert result.status == CheckStatus.FAILED
    assert step(result, "access").status == StepStatus.FAILED
    assert result.duration_s < 5 if hasattr(result, "duration_s") else True


async def test_429_and_503_are_the_providers_state(saas_files_server: SaasServer) -> None:
    result = await run("box", config(saas_files_server, folder_id="8000005"))
    assert failure_type(result) == FailureType.RATE_LIMITED
    assert result.failure is not None and result.failure.retry_after_s == 120
    result = await run("box", config(saas_files_server, folder_id="8000006"))
    assert failure_type(result) == FailureType.PROVIDER_UNAVAILABLE
