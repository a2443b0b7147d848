"""The ``dropbox`` connector: can these credentials read this Dropbox folder, and download its files?

Steps: ``resolve``, ``tcp``, ``tls`` against the API host (api.dropboxapi.com), ``token``
(with a refresh token: the real refresh at Dropbox's token endpoint, see
:mod:`connectors.oauth`; Dropbox's refresh tokens are long-lived and not rotated; not planned
for an access token), ``authenticate`` (``POST /2/users/get_current_account``) and
``access`` (``POST /2/files/list_folder`` with ``limit`` 1, then the first ``FIRST_BYTES`` of
the first file from the content host, ``POST /2/files/download`` with ``Range``). An empty
folder is a warning (``empty_location``), not a failure.

Dropbox's documented bodies handled: 401 ``invalid_access_token`` / ``expired_access_token``,
401 ``missing_scope`` (with ``required_scope``), 409 ``path/not_found``, 429
``too_many_requests`` (Retry-After), 5xx; and the plain-text 400 a team token gets without
the ``Dropbox-API-Select-User`` header (set ``team_member_id``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from connectors.base import FIRST_BYTES, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import Destination, PemCertificates
from connectors.oauth import OAuthCredentials, TokenConnector, credential_fields, refresh_step, token_url_field
from connectors.saas import (
    ApiClient,
    ApiResponse,
    BaseUrl,
    EmptyIsNone,
    base_url_field,
    ca_cert_field,
    example_base_url,
    open_api,
)

_TEAM_ANSWER = "entire Dropbox Business team"  # the 400 a team token gets without Dropbox-API-Select-User
_SCOPES_HINT = (
    "Enable the scopes files.metadata.read and files.content.read on the app's Permissions tab in the Dropbox App "
    "Console, then authorize the app again to get a token that carries them."
)


def _path(value: str | None) -> str:
    """A folder path as Dropbox wants it: "" for the root, else ``/a/b``."""
    segments = [s for s in (value or "").strip().split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise ValueError("must be a folder path, without . or ..")
    return "".join("/" + s for s in segments)


class DropboxAccessToken(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, title="Access token")
    type: Literal["token"] = Field(
        title="Type", description="A Dropbox access token (short-lived ones expire after about four hours)."
    )
    access_token: Secret = Field(
        title="Access token", description="A Dropbox access token; never shown.", examples=["sl.example"]
    )


class DropboxOAuth(OAuthCredentials):
    token_url: Annotated[BaseUrl, Destination] = token_url_field(
        "https://api.dropboxapi.com/oauth2/token", issuer="Dropbox"
    )


Credentials = Annotated[DropboxAccessToken | DropboxOAuth, Field(discriminator="type")]


class DropboxConfig(ConnectorConfig):
    """Dropbox credentials and the folder they must read."""

    model_config = ConfigDict(title="Dropbox")

    credentials: Credentials = Field(
        title="Credentials",
        description="A refresh token with the app key and secret (recommended), or an access token.",
        examples=[
            {
                "type": "oauth",
                "client_id": "abcdefghijklmno",
                "client_secret": "example-app-secret",
                "refresh_token": "example-refresh-token",
            }
        ],
    )
    path: Annotated[str, Field(max_length=2000), AfterValidator(_path)] = Field(
        "",
        title="Folder",
        description="The folder to read, as a path (/Reports/2024); empty: the top of the Dropbox.",
        examples=["/Reports/2024"],
    )
    team_member_id: Annotated[str | None, EmptyIsNone] = Field(
        None,
        pattern=r"^dbmid:[A-Za-z0-9_-]{1,200}$",
        title="Team member ID",
        description="With a team token: the member whose Dropbox to read (sent as Dropbox-API-Select-User).",
        examples=["dbmid:AAHhy7WsR0x-u4ZCqiDl5Fz5zvuL3kmspwU"],
    )
    base_url: BaseUrl = base_url_field(
        "https://api.dropboxapi.com", provider="Dropbox", examples=["https://api.dropboxapi.com"]
    )
    content_url: Annotated[BaseUrl, Destination] = Field(
        "https://content.dropboxapi.com",
        title="Content URL",
        description="Root URL of Dropbox's content (download) API. Keep the default unless you use a test server.",
        examples=["https://content.dropboxapi.com"],
    )
    ca_cert: PemCertificates = ca_cert_field()


class DropboxConnector(TokenConnector):
    name = "dropbox"
    title = "Dropbox"
    category = "saas"
    icon = "dropbox"
    documentation_url = "https://www.dropbox.com/developers/documentation/http/documentation"
    config_model = DropboxConfig

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return super().example_config(host, port) | {"content_url": example_base_url(host, port)}

    async def check(self, config: DropboxConfig, probe: Probe) -> None:
        headers = {"Dropbox-API-Select-User": config.team_member_id} if config.team_member_id else None
        async with open_api(probe, config, "Dropbox", headers=headers) as api:
            credentials = config.credentials
            if isinstance(credentials, DropboxOAuth):
                token = (
                    await refresh_step(
                        probe,
                        api,
                        issuer="Dropbox",
                        token_url=credentials.token_url,
                        client_id=credentials.client_id,
                        client_secret=credentials.client_secret.get_secret_value(),
                        refresh_token=credentials.refresh_token.get_secret_value(),
                    )
                ).value
            else:  # no token step (see planned_steps)
                token = credentials.access_token.get_secret_value()
                api.use_bearer(token)
            async with probe.step("authenticate") as step:
                step.message = await _authenticate(api, config)
            async with probe.step("access") as step:
                step.message = await _access(probe, api, config, token)


async def _authenticate(api: ApiClient, config: DropboxConfig) -> str:
    response = await api.call("POST", "/2/users/get_current_account")
    if response.status in (404, 405):
        raise api.wrong_endpoint(response)
    if not response.ok:
        raise _failure(api, response, config)
    account = api.require_json(response)
    name = account.get("name")
    display = name.get("display_name") if isinstance(name, dict) else None
    email = account.get("email")
    who = api.clean(str(display or email or account.get("account_id") or "an unnamed account"), 200)
    return f"Signed in as {who}" + (f" ({api.clean(str(email), 200)})" if display and email else "")


async def _access(probe: Probe, api: ApiClient, config: DropboxConfig, token: str) -> str:
    where = f"folder '{config.path}'" if config.path else "top of the Dropbox"
    listing = await api.call(
        "POST", "/2/files/list_folder", json={"path": config.path, "limit": 1, "include_deleted": False}
    )
    if not listing.ok:
        raise _failure(api, listing, config)
    entries = api.require_json(listing).get("entries")
    first = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else None
    if first is None:
        probe.warn(
            WarningCode.EMPTY_LOCATION,
            f"The {where} is empty",
            hint="Check path: set it to the folder that holds the documents to sync.",
        )
        return f"The {where} is readable (empty)"
    name = api.clean(str(first.get("name") or first.get("id")), 200)
    if first.get(".tag") != "file" or not isinstance(first.get("id"), str):
        return f"The {where} is readable (its first entry, '{name}', is a folder: no file downloaded)"
    download = httpx.URL(config.content_url + "/2/files/download")
    headers = {
        "Authorization": f"Bearer {token}",
        "Dropbox-API-Arg": json.dumps({"path": first["id"]}, ensure_ascii=True),
        "Range": f"bytes=0-{FIRST_BYTES - 1}",
    }
    response = await api.call("POST", download, headers=headers, credentials=False)
    if response.status not in (200, 206):
        raise _failure(api, response, config, reading=name)
    return f"The {where} is readable, and its file '{name}' can be downloaded"


def _summary(response: ApiResponse) -> str:
    summary = response.get("error_summary")
    return summary if isinstance(summary, str) else ""


def _failure(api: ApiClient, response: ApiResponse, config: DropboxConfig, *, reading: str = "") -> ProbeFailure:
    fields = credential_fields(config.credentials)
    tag = response.get("error", ".tag")
    said = api.clean(_summary(response), 200)
    what = f" (downloading '{reading}')" if reading else ""
    if response.status == 400 and _TEAM_ANSWER in response.text:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            "Dropbox refused the call: the token is a team token, which must name the team member to act as",
            hint="Set team_member_id to the member's id (dbmid:..., from /2/team/members/list).",
            fields=("team_member_id",),
        )
    if tag == "missing_scope":
        scope = api.clean(str(response.get("error", "required_scope") or "?"), 80)
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"The token lacks the Dropbox scope {scope}{what}",
            hint=_SCOPES_HINT,
            fields=fields,
        )
    if response.status == 401:
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            f"Dropbox refused the token ({said or tag or 'unauthorized'})",
            hint=(
                "The access token is wrong, expired or revoked: use a refresh token with the app key and secret."
                if isinstance(config.credentials, DropboxAccessToken)
                else "Dropbox refused the token it had just issued: try again, and check the app key."
            ),
            fields=fields,
        )
    if response.status == 409 and tag == "path":
        reason = response.get("error", "path", ".tag")
        missing = f"the file '{reading}'" if reading else f"the folder '{config.path}'"
        return api.failure(
            FailureType.NOT_FOUND if reason in ("not_found", "not_folder") else FailureType.AUTHORIZATION_FAILED,
            f"Dropbox cannot read {missing} ({said or 'path error'})",
            hint="Check path: a folder of this Dropbox (an app-folder app sees only its own folder).",
            fields=("path",),
        )
    if response.status == 403:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED, f"Dropbox denied access{what} ({said})", fields=fields, hint=_SCOPES_HINT
        )
    return api.status_failure(response, credential_fields=fields, resource_fields=("path",))
