"""The sharepoint connector against the local Microsoft Graph and Entra ID token endpoint stand-ins."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import FIRST_BYTES, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.registry import get_connector
from tests.helpers import failure_type, step
from tests.servers.saas import (
    SHAREPOINT_ELSEWHERE_FOLDER,
    SHAREPOINT_EMPTY_FOLDER,
    SHAREPOINT_FOLDER,
    SHAREPOINT_LOCKED_FOLDER,
    SHAREPOINT_ONLY_FOLDERS,
    SHAREPOINT_SITE,
    SHAREPOINT_SITE_ID,
    TENANT,
    SaasServer,
    assert_no_secret,
    dump,
    run,
)


def config(server: SaasServer, credentials: dict[str, Any] | None = None, **override: Any) -> dict[str, Any]:
    return {
        "credentials": credentials or {"type": "token", "access_token": server.token},
        "site": SHAREPOINT_SITE,
        "base_url": server.url("/graph"),
        "ca_cert": server.ca_pem,
        **override,
    }


def entra(server: SaasServer, kind: str = "oauth", **override: Any) -> dict[str, Any]:
    credentials = {
        "type": kind,
        "tenant": TENANT,
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "token_url": server.url(f"/login/{override.pop('tenant', TENANT)}/oauth2/v2.0/token"),
        **override,
    }
    if kind == "oauth":
        credentials.setdefault("refresh_token", server.refresh_token)
    return credentials


# --- access token ---------------------------------------------------------------------


async def test_the_default_library_of_a_site_is_readable(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert "token" not in [s.name for s in result.steps]  # an access token: no token step is planned
    assert step(result, "authenticate").message == "Signed in as Ada Reader (ada@contoso.com)"
    assert step(result, "access").message == (
        f"The library 'Documents' of site 'Marketing' is readable: read the first {FIRST_BYTES} bytes of 'Welcome.docx'"
    )
    assert result.warnings == []
    assert saas_server.requests[1].path.startswith("/graph/v1.0/sites/contoso.sharepoint.com:/sites/Marketing?")
    assert_no_secret(result, saas_server)


async def test_a_folder_in_a_named_library_of_a_site_given_by_url_is_readable(saas_server: SaasServer) -> None:
    site = "https://contoso.sharepoint.com/sites/Marketing/Shared%20Documents/Forms/AllItems.aspx"
    result = await run(
        "sharepoint", config(saas_server, site=site, library="Shared Documents", folder=f"/{SHAREPOINT_FOLDER}/")
    )
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "access").message == (
        f"The folder '{SHAREPOINT_FOLDER}' in the library 'Documents' of site 'Marketing' is readable: read the "
        f"first {FIRST_BYTES} bytes of 'report.pdf'"
    )
    # The subfolder listed first is passed over; the file's content is a redirect to its download URL.
    listing, content, download = saas_server.requests[-3:]
    assert listing.path.startswith("/graph/v1.0/drives/b!documents/items/01FOLDER/children?")
    assert content.path == "/graph/v1.0/drives/b!documents/items/01REPORT/content"
    assert download.path.startswith("/graph-download/01REPORT?")
    assert download.headers["range"] == f"bytes=0-{FIRST_BYTES - 1}"


async def test_an_empty_folder_succeeds_with_an_empty_location_warning(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, folder=SHAREPOINT_EMPTY_FOLDER))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "access").message.endswith("is readable, but it has no file (0 documents to sync)")
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]
    assert result.warnings[0].message == (
        f"The folder '{SHAREPOINT_EMPTY_FOLDER}' in the library 'Documents' of site 'Marketing' has no file"
    )


async def test_a_folder_of_only_subfolders_warns_too(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, folder=SHAREPOINT_ONLY_FOLDERS))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert result.warnings[0].message.endswith("has no file at its top (only folders)")


async def test_a_file_whose_download_is_denied_is_authorization_failed(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, folder=SHAREPOINT_LOCKED_FOLDER))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message.startswith(
        "Microsoft Graph answered 403 Forbidden: Access denied (downloading 'salaries.xlsx'): the app lacks"
    )
    assert result.failure.fields == ["credentials.access_token"]


async def test_a_download_redirect_to_a_forbidden_address_is_egress_blocked(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, folder=SHAREPOINT_ELSEWHERE_FOLDER))
    assert failure_type(result) == FailureType.EGRESS_BLOCKED
    assert step(result, "access").status == StepStatus.FAILED
    assert not any(r.path.startswith("/latest") for r in saas_server.requests)


async def test_an_invalid_access_token_is_authentication_failed_with_graphs_reason(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, {"type": "token", "access_token": "not-a-jwt"}))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message.startswith(
        "Microsoft Graph answered 401 Unauthorized: IDX14100: JWT is not well formed"
    )
    assert len(result.failure.message) < 400
    assert step(result, "authenticate").status == StepStatus.FAILED


async def test_access_denied_is_authorization_failed_naming_sites_read_all(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, {"type": "token", "access_token": saas_server.limited_token}))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == (
        "Microsoft Graph answered 403 Forbidden: Access denied: the app lacks the permission Sites.Read.All"
    )
    assert "Sites.Read.All" in result.failure.hint and "admin consent" in result.failure.hint
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_missing_site_is_not_found(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, site="contoso.sharepoint.com:/sites/Nope"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert result.failure.message == (
        "SharePoint has no site contoso.sharepoint.com:/sites/Nope (Requested site could not be found)"
    )


async def test_a_missing_library_is_not_found_listing_the_libraries(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, library="Archive"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert (
        result.failure.message == "The site 'Marketing' has no document library 'Archive' (it has: Documents, Policies)"
    )
    assert result.failure.fields == ["library"]


async def test_a_missing_folder_is_not_found(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, folder="Handbook/1999"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert result.failure.message == "There is no folder 'Handbook/1999' in the library 'Documents' of site 'Marketing'"
    assert result.failure.fields == ["folder"]


async def test_a_file_instead_of_a_folder_is_unexpected_response(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, folder="Handbook/readme.docx"))
    assert failure_type(result) == FailureType.UNEXPECTED_RESPONSE


async def test_a_site_id_is_used_as_is(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, site=SHAREPOINT_SITE_ID))
    assert result.status == CheckStatus.SUCCEEDED, result.failure


# --- OAuth: refresh token and client credentials ---------------------------------------


async def test_a_refresh_token_is_refreshed_at_the_tenants_token_endpoint(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, entra(saas_server)))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "token").message == "Microsoft Entra ID issued an access token at 127.0.0.1 (valid for 70 min)"
    grant = saas_server.requests[0]
    assert grant.path == f"/login/{TENANT}/oauth2/v2.0/token"
    assert grant.form["grant_type"] == "refresh_token"
    assert grant.form["scope"] == f"https://127.0.0.1:{saas_server.port}/.default offline_access"
    assert step(result, "authenticate").message == "Signed in as Ada Reader (ada@contoso.com)"
    assert_no_secret(result, saas_server)


async def test_client_credentials_give_an_app_only_token_that_graph_accepts(saas_server: SaasServer) -> None:
    result = await run("sharepoint", config(saas_server, entra(saas_server, "client_credentials")))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert saas_server.requests[0].form["grant_type"] == "client_credentials"
    assert (step(result, "authenticate").message or "").startswith("App-only token")
    assert_no_secret(result, saas_server)


async def test_an_expired_refresh_token_is_authentication_failed_with_microsofts_reason(
    saas_server: SaasServer,
) -> None:
    credentials = entra(saas_server, refresh_token=saas_server.revoked_refresh_token)
    result = await run("sharepoint", config(saas_server, credentials))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message == (
        "Microsoft Entra ID refused the refresh token: AADSTS70008: The provided authorization code or refresh "
        "token has expired due to inactivity. Send a new interactive authorization request for this user and resource."
    )
    assert step(result, "token").status == StepStatus.FAILED
    assert_no_secret(result, saas_server)


async def test_a_wrong_client_secret_is_authentication_failed_saying_so(saas_server: SaasServer) -> None:
    credentials = entra(saas_server, "client_credentials", client_secret="wrong-client-secret")
    result = await run("sharepoint", config(saas_server, credentials))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message.startswith(
        "Microsoft Entra ID refused the OAuth client: client id or secret is wrong (AADSTS7000215: Invalid client "
        "secret provided."
    )
    assert "wrong-client-secret" not in dump(result)


async def test_an_unknown_tenant_is_not_found(saas_server: SaasServer) -> None:
    credentials = entra(saas_server, "client_credentials", tenant="fabrikam.onmicrosoft.com")
    result = await run("sharepoint", config(saas_server, credentials))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert result.failure.message.startswith("Microsoft Entra ID does not know the tenant (AADSTS90002: Tenant ")


def test_the_token_url_defaults_to_the_tenants_endpoint() -> None:
    parsed = get_connector("sharepoint").parse_config(
        {
            "credentials": {"type": "client_credentials", "tenant": TENANT, "client_id": "x", "client_secret": "y"},
            "site": SHAREPOINT_SITE,
        }
    )
    assert parsed.credentials.token_url is None  # type: ignore[attr-defined]


# --- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://contoso.sharepoint.com/sites/Marketing", "contoso.sharepoint.com:/sites/Marketing"),
        ("https://contoso.sharepoint.com/teams/Eng/SitePages/Home.aspx", "contoso.sharepoint.com:/teams/Eng"),
        ("https://contoso.sharepoint.com/", "contoso.sharepoint.com"),
        ("contoso.sharepoint.com:/sites/Marketing", "contoso.sharepoint.com:/sites/Marketing"),
        ("contoso.sharepoint.com", "contoso.sharepoint.com"),
        (SHAREPOINT_SITE_ID, SHAREPOINT_SITE_ID),
    ],
)
def test_a_site_is_accepted_in_the_usual_forms(given: str, expected: str) -> None:
    parsed = get_connector("sharepoint").parse_config(
        {"credentials": {"type": "token", "access_token": "t"}, "site": given}
    )
    assert parsed.site == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("config", [{"site": "not a site"}, {"site": SHAREPOINT_SITE, "folder": "a/../b"}])
def test_a_bad_site_or_folder_is_rejected(config: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfiguration):
        get_connector("sharepoint").parse_config({"credentials": {"type": "token", "access_token": "t"}, **config})
