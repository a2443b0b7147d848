"""The dropbox connector against the local Dropbox API, content and token endpoint stand-ins."""

from __future__ import annotations

import json
from typing import Any

from connectors.base import CheckStatus, StepStatus
from connectors.errors import FailureType, WarningCode
from tests.helpers import failure_type, step
from tests.servers.saas import SaasServer, assert_no_secret, run
from tests.servers.saas_files import DROPBOX_MEMBER, DROPBOX_TEAM_TOKEN


def config(server: SaasServer, credentials: dict[str, Any] | None = None, **override: Any) -> dict[str, Any]:
    return {
        "credentials": credentials or {"type": "token", "access_token": server.token},
        "base_url": server.url("/dropbox/api"),
        "content_url": server.url("/dropbox/content"),
        "ca_cert": server.ca_pem,
        **override,
    }


def token(value: str) -> dict[str, str]:
    return {"type": "token", "access_token": value}


async def test_the_first_file_is_downloaded_with_a_range(saas_files_server: SaasServer) -> None:
    server = saas_files_server
    before = len(server.requests)
    result = await run("dropbox", config(server, path="Reports/"))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [s.name for s in result.steps] == ["resolve", "tcp", "tls", "authenticate", "access"]
    assert step(result, "authenticate").message == "Signed in as Ada Reader (ada@example.com)"
    assert (
        step(result, "access").message
        == "The folder '/Reports' is readable, and its file 'report.pdf' can be downloaded"
    )
    sent = server.requests[before:]
    download = next(r for r in sent if r.path == "/dropbox/content/2/files/download")
    assert download.headers["range"] == "bytes=0-1023"
    assert json.loads(download.headers["dropbox-api-arg"]) == {"path": "id:01REPORT"}
    assert not result.warnings
    assert_no_secret(result, server)


async def test_a_refresh_token_is_refreshed_at_the_token_step(saas_files_server: SaasServer) -> None:
    server = saas_files_server
    credentials = {
        "type": "oauth",
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "refresh_token": server.refresh_token,
        "token_url": server.url("/dropbox/oauth2/token"),
    }
    result = await run("dropbox", config(server, credentials, path="/Reports"))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "token").status == StepStatus.SUCCEEDED
    result = await run("dropbox", config(server, credentials | {"refresh_token": server.revoked_refresh_token}))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert step(result, "token").status == StepStatus.FAILED
    assert_no_secret(result, server)


async def test_an_invalid_access_token_is_authentication_failed(saas_files_server: SaasServer) -> None:
    result = await run("dropbox", config(saas_files_server, token("sl.wrong")))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None and "invalid_access_token" in result.failure.message
    assert list(result.failure.fields) == ["credentials.access_token"]
    assert step(result, "authenticate").status == StepStatus.FAILED


async def test_a_missing_scope_names_the_required_scope(saas_files_server: SaasServer) -> None:
    result = await run("dropbox", config(saas_files_server, token(saas_files_server.limited_token)))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "The token lacks the Dropbox scope files.metadata.read"
    assert "files.content.read" in (result.failure.hint or "")
    assert list(result.failure.fields) == ["credentials.access_token"]


async def test_a_team_token_needs_the_team_member(saas_files_server: SaasServer) -> None:
    result = await run("dropbox", config(saas_files_server, token(DROPBOX_TEAM_TOKEN)))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None and list(result.failure.fields) == ["team_member_id"]
    result = await run("dropbox", config(saas_files_server, token(DROPBOX_TEAM_TOKEN), team_member_id=DROPBOX_MEMBER))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert saas_files_server.requests[-1].headers["dropbox-api-select-user"] == DROPBOX_MEMBER


async def test_a_missing_folder_is_not_found(saas_files_server: SaasServer) -> None:
    result = await run("dropbox", config(saas_files_server, path="/Nope"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None and list(result.failure.fields) == ["path"]
    assert "path/not_found" in result.failure.message


async def test_an_empty_folder_is_a_warning(saas_files_server: SaasServer) -> None:
    result = await run("dropbox", config(saas_files_server, path="/Empty"))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]


async def test_a_file_that_cannot_be_downloaded_fails(saas_files_server: SaasServer) -> None:
    result = await run("dropbox", config(saas_files_server, path="/Locked"))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None and "salaries.xlsx" in result.failure.message
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_download_ignoring_range_is_bounded(saas_files_server: SaasServer) -> None:
    result = await run("dropbox", config(saas_files_server, path="/Huge"))
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE


async def test_429_and_503_are_the_providers_state(saas_files_server: SaasServer) -> None:
    result = await run("dropbox", config(saas_files_server, path="/Busy"))
    assert failure_type(result) == FailureType.RATE_LIMITED
    assert result.failure is not None and result.failure.retry_after_s == 120
    result = await run("dropbox", config(saas_files_server, path="/Down"))
    assert failure_type(result) == FailureType.PROVIDER_UNAVAILABLE
    assert result.failure is not None and result.failure.retryable
