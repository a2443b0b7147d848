"""The ``google_drive`` connector: can these credentials read this Google Drive folder?

Steps: ``resolve``, ``tcp``, ``tls`` against the API host (www.googleapis.com), ``token``
(with OAuth credentials only: the real refresh at Google's token endpoint, see
:mod:`connectors.oauth`; not planned for an access token), ``authenticate`` (``GET
/drive/v3/about?fields=user``: whose token is it) and ``access`` (``files.get`` on the
folder, shared drives included).

Google's quirks handled here: Drive answers 404 for a file that exists but is not shared
with the account (so the hint names the account to share with); a token without a Drive
scope, a project where the Drive API is disabled, and a used-up quota are all 403s,
told apart by the ``reason`` in the error body.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure
from connectors.fields import Destination, PemCertificates
from connectors.oauth import OAuthCredentials, refresh_step
from connectors.saas import (
    ApiClient,
    ApiResponse,
    BaseUrl,
    base_url_field,
    ca_cert_field,
    example_base_url,
    open_api,
)

FOLDER = "application/vnd.google-apps.folder"
READ_SCOPE = "https://www.googleapis.com/auth/drive.readonly"

_SCOPE_REASONS = {"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}
_DISABLED_REASONS = {"accessNotConfigured", "SERVICE_DISABLED"}
_QUOTA_REASONS = {"userRateLimitExceeded", "rateLimitExceeded", "RATE_LIMIT_EXCEEDED", "dailyLimitExceeded"}


def _folder_id(value: Any) -> Any:
    """A folder link (``…/folders/<id>?usp=sharing`` or ``…?id=<id>``) → its id."""
    if isinstance(value, str) and "://" in value:
        found = re.search(r"/folders/([A-Za-z0-9_-]+)", value) or re.search(r"[?&]id=([A-Za-z0-9_-]+)", value)
        if found is not None:
            return found.group(1)
    return value


class _Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class GoogleAccessToken(_Credentials):
    model_config = ConfigDict(title="Access token")
    type: Literal["token"] = Field(
        title="Type",
        description="An OAuth 2.0 access token (they expire after about an hour: use oauth for a lasting source).",
    )
    access_token: Secret = Field(
        title="Access token", description="A Google OAuth 2.0 access token; never shown.", examples=["ya29.example"]
    )


class GoogleOAuth(OAuthCredentials):
    token_url: Annotated[BaseUrl, Destination] = Field(
        "https://oauth2.googleapis.com/token",
        title="Token URL",
        description="Google's OAuth 2.0 token endpoint. Keep the default unless you test against another server.",
        examples=["https://oauth2.googleapis.com/token"],
    )


Credentials = Annotated[GoogleAccessToken | GoogleOAuth, Field(discriminator="type")]


class GoogleDriveConfig(ConnectorConfig):
    """Google credentials and the Drive folder they must read."""

    model_config = ConfigDict(title="Google Drive")

    credentials: Credentials = Field(
        title="Credentials",
        description="A refresh token with the OAuth client's id and secret (recommended), "
        "or a short-lived access token.",
        examples=[
            {
                "type": "oauth",
                "client_id": "1234567890-abc.apps.googleusercontent.com",
                "client_secret": "example-client-secret",
                "refresh_token": "example-refresh-token",
            }
        ],
    )
    folder_id: Annotated[str, BeforeValidator(_folder_id)] = Field(
        pattern=r"^[A-Za-z0-9_-]{4,200}$",
        title="Folder",
        description="The id of the folder to read (in its URL after /folders/), its link, or root for My Drive.",
        examples=[
            "1AbCdEfGhIjKlMnOpQrStUvWxYz012345",
            "https://drive.google.com/drive/folders/1AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        ],
    )
    base_url: BaseUrl = base_url_field(
        "https://www.googleapis.com", provider="Google Drive", examples=["https://www.googleapis.com"]
    )
    ca_cert: PemCertificates = ca_cert_field()


class GoogleDriveConnector(Connector):
    name = "google_drive"
    title = "Google Drive"
    category = "saas"
    icon = "google_drive"
    documentation_url = "https://developers.google.com/workspace/drive/api/guides/api-specific-auth"
    config_model = GoogleDriveConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "token", "authenticate", "access")

    def planned_steps(self, config: GoogleDriveConfig) -> tuple[str, ...]:
        if isinstance(config.credentials, GoogleOAuth):
            return self.steps
        return tuple(s for s in self.steps if s != "token")  # an access token: nothing to refresh

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "credentials": {"type": "token", "access_token": "example-access-token"},
            "folder_id": "1AbCdEfGhIjKlMnOpQrStUvWxYz012345",
            "base_url": example_base_url(host, port),
        }

    async def check(self, config: GoogleDriveConfig, probe: Probe) -> None:
        async with open_api(probe, config, "Google Drive") as api:
            credentials = config.credentials
            if isinstance(credentials, GoogleOAuth):
                await refresh_step(
                    probe,
                    api,
                    issuer="Google",
                    token_url=credentials.token_url,
                    client_id=credentials.client_id,
                    client_secret=credentials.client_secret.get_secret_value(),
                    refresh_token=credentials.refresh_token.get_secret_value(),
                )
            else:  # no token step (see planned_steps)
                api.use_bearer(credentials.access_token.get_secret_value())
            async with probe.step("authenticate") as step:
                email = await _authenticate(api, config)
                step.message = f"Signed in as {email}"
            async with probe.step("access") as step:
                step.message = await _access(api, config.folder_id, email)


async def _authenticate(api: ApiClient, config: GoogleDriveConfig) -> str:
    response = await api.call("GET", "/drive/v3/about", params={"fields": "user"})
    if response.status in (404, 405):
        raise api.wrong_endpoint(response)
    if response.status == 401:
        expired = isinstance(config.credentials, GoogleAccessToken)
        raise api.failure(
            FailureType.AUTHENTICATION_FAILED,
            api.answered(response),
            hint=(
                "The access token is wrong or expired (they last about an hour): use oauth credentials with a "
                "refresh token so it is renewed."
                if expired
                else "Google refused the access token it had just issued: try again, and check the OAuth client."
            ),
        )
    if not response.ok:
        raise _failure(api, response)
    data = api.require_json(response)
    found = data.get("user")
    user: dict[str, Any] = found if isinstance(found, dict) else {}
    return str(user.get("emailAddress") or user.get("displayName") or "an unnamed account")


async def _access(api: ApiClient, folder_id: str, email: str) -> str:
    response = await api.call(
        "GET",
        f"/drive/v3/files/{quote(folder_id, safe='')}",
        params={"fields": "id,name,mimeType,trashed,capabilities/canListChildren", "supportsAllDrives": "true"},
    )
    if response.status == 404:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"Google Drive has no folder {folder_id} that {email} can see",
            hint=(
                f"Check the folder id (in the folder's URL after /folders/) and share the folder with {email}. "
                "An app with only the drive.file scope sees only files it created or opened: ask for drive.readonly."
            ),
        )
    if not response.ok:
        raise _failure(api, response)
    item = api.require_json(response)
    name = item.get("name") or folder_id
    if item.get("trashed"):
        raise api.failure(
            FailureType.NOT_FOUND,
            f"The folder '{name}' is in the trash",
            hint="Restore it from the trash in Google Drive, or use another folder.",
        )
    if item.get("mimeType") != FOLDER:
        raise api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"'{name}' is a file ({api.clean(str(item.get('mimeType')), 80)}), not a folder",
            hint="Use the id of the folder that holds the documents.",
        )
    capabilities = item.get("capabilities")
    if isinstance(capabilities, dict) and capabilities.get("canListChildren") is False:
        raise api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"{email} can see the folder '{name}' but may not list what is in it",
            hint=f"Share the folder with {email} as Viewer (or more).",
        )
    return f"Folder '{name}' is readable"


def error_reasons(response: ApiResponse) -> set[str]:
    """The ``reason`` codes of a Google error body (``errors[].reason`` and ``details[].reason``)."""
    found: set[str] = set()
    for key in ("errors", "details"):
        items = response.get("error", key)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("reason"), str):
                found.add(item["reason"])
    status = response.get("error", "status")
    if isinstance(status, str):
        found.add(status)
    return found


def _failure(api: ApiClient, response: ApiResponse) -> ProbeFailure:
    reasons = error_reasons(response)
    if response.status in (403, 429) and reasons & _QUOTA_REASONS:
        return api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"Google Drive's quota for these credentials is used up ({api.reason(response)})",
            hint="Try again in a minute; if it persists, raise the quota of the Drive API in the Google Cloud project.",
            retryable=True,
        )
    if response.status == 403 and reasons & _SCOPE_REASONS:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"The token lacks a Google Drive scope ({api.reason(response)})",
            hint=(
                f"Authorize the app with the scope {READ_SCOPE} (or https://www.googleapis.com/auth/drive), then "
                "get a new token."
            ),
        )
    if response.status == 403 and reasons & _DISABLED_REASONS:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            "The Google Drive API is not enabled in the OAuth client's Google Cloud project",
            hint=(
                "Enable it (APIs & Services > Library > Google Drive API), then try again. Google said: "
                f"{api.reason(response)}"
            ),
        )
    if response.status == 403:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            api.answered(response),
            hint="Share the folder with the account as Viewer, and authorize the app with a Drive scope.",
        )
    return api.status_failure(response)
