"""The google_drive connector against the local Drive API and Google token endpoint stand-ins."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from connectors.base import FIRST_BYTES, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.registry import get_connector
from tests.helpers import failure_type, step
from tests.servers.saas import (
    DRIVE_DOC_ID,
    DRIVE_DOCS_FOLDER_ID,
    DRIVE_EMAIL,
    DRIVE_EMPTY_FOLDER_ID,
    DRIVE_FILE_ID,
    DRIVE_FOLDER_ID,
    DRIVE_LOCKED_FOLDER_ID,
    DRIVE_UNDELEGATED_ACCOUNT,
    SaasServer,
    assert_no_secret,
    drive_service_account_json,
    dump,
    run,
)


def config(server: SaasServer, credentials: dict[str, Any] | None = None, **override: Any) -> dict[str, Any]:
    return {
        "credentials": credentials or {"type": "token", "access_token": server.token},
        "folder_id": DRIVE_FOLDER_ID,
        "base_url": server.url("/google"),
        "ca_cert": server.ca_pem,
        **override,
    }


def oauth(server: SaasServer, **override: Any) -> dict[str, Any]:
    return {
        "type": "oauth",
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "refresh_token": server.refresh_token,
        "token_url": server.url("/google-oauth/token"),
        **override,
    }


# --- access token ---------------------------------------------------------------------


async def test_a_readable_folder_succeeds_with_an_access_token(saas_server: SaasServer) -> None:
    result = await run("google_drive", config(saas_server))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [(s.name, s.status) for s in result.steps] == [
        ("resolve", StepStatus.SUCCEEDED),
        ("tcp", StepStatus.SUCCEEDED),
        ("tls", StepStatus.SUCCEEDED),
        ("authenticate", StepStatus.SUCCEEDED),  # no token step: an access token is not refreshed
        ("access", StepStatus.SUCCEEDED),
    ]
    assert step(result, "authenticate").message == f"Signed in as {DRIVE_EMAIL}"
    # The Google Doc listed first (no content, only an export) is skipped for the PDF after it.
    assert step(result, "access").message == (
        f"Folder 'Handbook' is readable: read the first {FIRST_BYTES} bytes of 'Handbook.pdf'"
    )
    assert result.warnings == []
    assert saas_server.requests[0].path == "/google/drive/v3/about?fields=user"
    assert saas_server.requests[1].path.startswith(f"/google/drive/v3/files/{DRIVE_FOLDER_ID}?")
    listing, read = saas_server.requests[2], saas_server.requests[3]
    assert listing.path.startswith("/google/drive/v3/files?q=")
    assert read.path.startswith(f"/google/drive/v3/files/{DRIVE_FILE_ID}?alt=media")
    assert read.headers["range"] == f"bytes=0-{FIRST_BYTES - 1}"
    assert_no_secret(result, saas_server)


async def test_an_invalid_access_token_is_authentication_failed_with_googles_reason(saas_server: SaasServer) -> None:
    result = await run("google_drive", config(saas_server, {"type": "token", "access_token": "ya29.expired"}))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message.startswith(
        "Google Drive answered 401 Unauthorized: Request had invalid authentication credentials."
    )
    assert "refresh token" in result.failure.hint
    assert "ya29.expired" not in dump(result)


async def test_a_token_without_a_drive_scope_is_authorization_failed_naming_the_scope(
    saas_server: SaasServer,
) -> None:
    result = await run(
        "google_drive", config(saas_server, {"type": "token", "access_token": saas_server.limited_token})
    )
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == (
        "The token lacks a Google Drive scope (Request had insufficient authentication scopes.)"
    )
    assert "https://www.googleapis.com/auth/drive.readonly" in result.failure.hint


async def test_a_folder_not_shared_with_the_account_is_not_found_naming_whom_to_share_with(
    saas_server: SaasServer,
) -> None:
    result = await run("google_drive", config(saas_server, folder_id="1NotSharedNotSharedNotShared0000"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert (
        result.failure.message
        == f"Google Drive has no folder 1NotSharedNotSharedNotShared0000 that {DRIVE_EMAIL} can see"
    )
    assert f"share the folder with {DRIVE_EMAIL}" in result.failure.hint


async def test_a_document_instead_of_a_folder_is_unexpected_response(saas_server: SaasServer) -> None:
    result = await run("google_drive", config(saas_server, folder_id=DRIVE_DOC_ID))
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE
    assert result.failure is not None
    assert result.failure.message == "'Onboarding' is a file (application/vnd.google-apps.document), not a folder"


async def test_an_empty_folder_succeeds_with_an_empty_location_warning(saas_server: SaasServer) -> None:
    result = await run("google_drive", config(saas_server, folder_id=DRIVE_EMPTY_FOLDER_ID))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "access").message == "Folder 'Empty' is readable, but it has no file"
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]
    assert "folder_id" in result.warnings[0].hint


async def test_a_file_whose_download_is_turned_off_is_authorization_failed_with_what_to_change(
    saas_server: SaasServer,
) -> None:
    result = await run("google_drive", config(saas_server, folder_id=DRIVE_LOCKED_FOLDER_ID))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == (
        f"{DRIVE_EMAIL} can list the folder 'Payroll' but may not download 'Salaries.xlsx' "
        "(The user does not have permission to download this file.)"
    )
    assert "Viewers and commenters can see the option to download" in result.failure.hint
    assert result.failure.fields == ["folder_id", "credentials.access_token"]
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_folder_of_only_google_docs_succeeds_without_a_read(saas_server: SaasServer) -> None:
    result = await run("google_drive", config(saas_server, folder_id=DRIVE_DOCS_FOLDER_ID))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert "Google Docs, Sheets or Slides, which are exported rather than downloaded" in step(result, "access").message
    assert not any("alt=media" in r.path for r in saas_server.requests)
    assert result.warnings == []


def test_a_folder_link_is_accepted() -> None:
    link = f"https://drive.google.com/drive/folders/{DRIVE_FOLDER_ID}?usp=sharing"
    parsed = get_connector("google_drive").parse_config(
        {"credentials": {"type": "token", "access_token": "t"}, "folder_id": link}
    )
    assert parsed.folder_id == DRIVE_FOLDER_ID  # type: ignore[attr-defined]


# --- OAuth refresh --------------------------------------------------------------------


async def test_a_refresh_token_is_refreshed_and_the_new_access_token_used(saas_server: SaasServer) -> None:
    result = await run("google_drive", config(saas_server, oauth(saas_server)))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "token").status == StepStatus.SUCCEEDED
    assert step(result, "token").message == "Google issued an access token at 127.0.0.1 (valid for 59 min)"
    grant = saas_server.requests[0]
    assert (grant.method, grant.path) == ("POST", "/google-oauth/token")
    assert grant.form == {
        "grant_type": "refresh_token",
        "refresh_token": saas_server.refresh_token,
        "client_id": saas_server.client_id,
        "client_secret": saas_server.client_secret,
    }
    assert "authorization" not in grant.headers
    (issued,) = saas_server.issued
    assert saas_server.requests[1].headers["authorization"] == f"Bearer {issued}"
    assert_no_secret(result, saas_server)


async def test_an_expired_or_revoked_refresh_token_is_authentication_failed_with_googles_reason(
    saas_server: SaasServer,
) -> None:
    result = await run(
        "google_drive", config(saas_server, oauth(saas_server, refresh_token=saas_server.revoked_refresh_token))
    )
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "Google refused the refresh token: Token has been expired or revoked."
    assert "Sign in again" in result.failure.hint
    assert step(result, "token").status == StepStatus.FAILED
    assert step(result, "authenticate").status == StepStatus.SKIPPED
    assert_no_secret(result, saas_server)


async def test_a_wrong_client_secret_is_authentication_failed_saying_so(saas_server: SaasServer) -> None:
    result = await run("google_drive", config(saas_server, oauth(saas_server, client_secret="wrong-client-secret")))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "Google refused the OAuth client: client id or secret is wrong (Unauthorized)"
    assert "wrong-client-secret" not in dump(result)


async def test_an_unreachable_token_endpoint_fails_the_token_step(saas_server: SaasServer, closed_port: int) -> None:
    token_url = f"https://127.0.0.1:{closed_port}/token"
    result = await run("google_drive", config(saas_server, oauth(saas_server, token_url=token_url)))
    assert failure_type(result) == FailureType.CONNECTION_REFUSED
    assert step(result, "token").status == StepStatus.FAILED


async def test_a_token_endpoint_that_never_answers_times_out_in_the_token_step(saas_server: SaasServer) -> None:
    started = time.monotonic()
    result = await run(
        "google_drive", config(saas_server, oauth(saas_server, token_url=saas_server.url("/hang/token"))), timeout=1.5
    )
    assert time.monotonic() - started < 3
    assert failure_type(result) == FailureType.TIMEOUT
    assert step(result, "token").status == StepStatus.FAILED


# --- service account -------------------------------------------------------------------


def service_account(server: SaasServer, **override: Any) -> dict[str, Any]:
    return {
        "type": "service_account",
        "service_account_json": drive_service_account_json(server.url("/google-sa-token")),
        **override,
    }


async def test_a_service_account_reads_the_folder_as_itself(saas_server: SaasServer) -> None:
    result = await run("google_drive", config(saas_server, service_account(saas_server)))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "token").message == "Google issued an access token at 127.0.0.1 (valid for 59 min)"
    assert "sub" not in _claims(saas_server.requests[0].form["assertion"])
    assert_no_secret(result, saas_server)


async def test_a_service_account_with_delegation_reads_as_the_subject(saas_server: SaasServer) -> None:
    result = await run("google_drive", config(saas_server, service_account(saas_server, subject=DRIVE_EMAIL)))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    claims = _claims(saas_server.requests[0].form["assertion"])
    assert claims["sub"] == DRIVE_EMAIL and claims["scope"] == "https://www.googleapis.com/auth/drive.readonly"


async def test_a_subject_without_domain_wide_delegation_says_what_the_admin_must_grant(
    saas_server: SaasServer,
) -> None:
    credentials = service_account(
        saas_server,
        service_account_json=drive_service_account_json(saas_server.url("/google-sa-token"), DRIVE_UNDELEGATED_ACCOUNT),
        subject=DRIVE_EMAIL,
    )
    result = await run("google_drive", config(saas_server, credentials))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == (
        f"Google refused a token for {DRIVE_EMAIL}: domain-wide delegation is not granted to the client ID "
        f"118000000000000000002 of {DRIVE_UNDELEGATED_ACCOUNT} for the scope "
        "https://www.googleapis.com/auth/drive.readonly"
    )
    assert "Admin console > Security > Access and data control > API controls > Manage Domain Wide Delegation" in (
        result.failure.hint
    )
    assert "client ID 118000000000000000002" in result.failure.hint
    assert result.failure.fields == ["credentials.subject", "credentials.service_account_json"]
    assert step(result, "token").status == StepStatus.FAILED
    assert "PRIVATE KEY" not in dump(result)


async def test_without_a_subject_the_same_account_is_not_asked_about_delegation(saas_server: SaasServer) -> None:
    key = drive_service_account_json(saas_server.url("/google-sa-token"), DRIVE_UNDELEGATED_ACCOUNT)
    result = await run("google_drive", config(saas_server, service_account(saas_server, service_account_json=key)))
    assert result.status == CheckStatus.SUCCEEDED, result.failure


def test_a_subject_must_be_an_email_address() -> None:
    with pytest.raises(InvalidConfiguration):
        get_connector("google_drive").parse_config(
            {
                "credentials": {"type": "service_account", "service_account_json": "{}", "subject": "ada"},
                "folder_id": "root",
            }
        )


def _claims(assertion: str) -> dict[str, Any]:
    body = assertion.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


@pytest.mark.parametrize("field", ["client_secret", "refresh_token"])
def test_oauth_secrets_are_masked(field: str) -> None:
    parsed = get_connector("google_drive").parse_config(
        {
            "credentials": {
                "type": "oauth",
                "client_id": "id",
                "client_secret": "cs-value",
                "refresh_token": "rt-value",
            },
            "folder_id": "root",
        }
    )
    assert parsed.masked()["credentials"][field] == "**********"
    assert "cs-value" not in repr(parsed) and "rt-value" not in repr(parsed)
