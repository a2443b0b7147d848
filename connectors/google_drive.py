"""The ``google_drive`` connector: can these credentials read this Google Drive folder?

Steps: ``resolve``, ``tcp``, ``tls`` against the API host (www.googleapis.com), ``token``
(an OAuth refresh at Google's token endpoint, see :mod:`connectors.oauth`, or a service
account's JWT bearer grant, for a Workspace user with ``subject``, see
:mod:`connectors.google_keys`; not planned for an access token), ``authenticate`` (``GET
/drive/v3/about?fields=user``: whose token is it) and ``access`` (``files.get`` on the
folder, shared drives included; ``files.list`` of its first :data:`MAX_LISTED` files, then
the first :data:`~connectors.base.FIRST_BYTES` bytes of the first one that can be downloaded,
``files.get?alt=media`` with a ``Range`` header). Google Docs, Sheets, Slides and other
Google-native files have no content to download (only an export, which has no ranged read):
they are skipped, and a folder holding nothing else is reported as such, without a read. A
folder without files is an ``empty_location`` warning.

Google's quirks handled here: Drive answers 404 for a file that exists but is not shared
with the account (so the hint names the account to share with); a token without a Drive
scope, a project where the Drive API is disabled, and a used-up quota are all 403s,
told apart by the ``reason`` in the error body; a download the owner turned off for
viewers is a 403 ``cannotDownloadFile``; a service account asking for a user's token
without domain-wide delegation gets ``unauthorized_client`` from the token endpoint.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from connectors.base import FIRST_BYTES, Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import Destination, PemCertificates
from connectors.google_keys import KEY_FIELDS, GoogleServiceAccount, service_account_step
from connectors.oauth import OAuthCredentials, credential_fields, refresh_step
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
NATIVE = "application/vnd.google-apps."  # Docs, Sheets, Slides, shortcuts...: exported, never downloaded
READ_SCOPE = "https://www.googleapis.com/auth/drive.readonly"

MAX_LISTED = 20
"""Files of the folder listed (one page) to find one to download."""

_SCOPE_REASONS = {"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}
_DISABLED_REASONS = {"accessNotConfigured", "SERVICE_DISABLED"}
_QUOTA_REASONS = {"userRateLimitExceeded", "rateLimitExceeded", "RATE_LIMIT_EXCEEDED", "dailyLimitExceeded"}
_DOWNLOAD_REASONS = {"cannotDownloadFile", "cannotDownloadAbusiveFile"}
_APP_REASONS = {"appNotAuthorizedToFile"}


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


class GoogleDriveServiceAccount(GoogleServiceAccount):
    subject: str | None = Field(
        None,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+$",
        title="Subject (user to impersonate)",
        description=(
            "A Workspace user's email to read as (domain-wide delegation: an administrator must grant the service "
            "account's client ID the drive.readonly scope). Empty: the service account reads as itself, so the "
            "folder must be shared with its email."
        ),
        examples=["ada@example.com"],
    )


Credentials = Annotated[GoogleAccessToken | GoogleOAuth | GoogleDriveServiceAccount, Field(discriminator="type")]


class GoogleDriveConfig(ConnectorConfig):
    """Google credentials and the Drive folder they must read."""

    model_config = ConfigDict(title="Google Drive")

    credentials: Credentials = Field(
        title="Credentials",
        description="A refresh token with the OAuth client's id and secret, a service account's JSON key "
        "(optionally with a user to impersonate), or a short-lived access token.",
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
        if not isinstance(config.credentials, GoogleAccessToken):
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
            elif isinstance(credentials, GoogleDriveServiceAccount):
                await service_account_step(probe, api, credentials, READ_SCOPE, subject=credentials.subject)
            else:  # no token step (see planned_steps)
                api.use_bearer(credentials.access_token.get_secret_value())
            fields = _credential_fields(config)
            async with probe.step("authenticate") as step:
                email = await _authenticate(api, config, fields)
                step.message = f"Signed in as {email}"
            async with probe.step("access") as step:
                step.message = await _access(api, config.folder_id, email, fields)


def _credential_fields(config: GoogleDriveConfig) -> tuple[str, ...]:
    """The fields a refused or insufficient token is about."""
    credentials = config.credentials
    if isinstance(credentials, GoogleDriveServiceAccount):
        return (*KEY_FIELDS, "credentials.subject") if credentials.subject else KEY_FIELDS
    return credential_fields(credentials)


async def _authenticate(api: ApiClient, config: GoogleDriveConfig, fields: tuple[str, ...]) -> str:
    response = await api.call("GET", "/drive/v3/about", params={"fields": "user"})
    if response.status in (404, 405):
        failure = api.wrong_endpoint(response)
        failure.fields = ["base_url"]
        raise failure
    if response.status == 401:
        expired = isinstance(config.credentials, GoogleAccessToken)
        raise api.failure(
            FailureType.AUTHENTICATION_FAILED,
            api.answered(response),
            hint=(
                "The access token is wrong or expired (they last about an hour): use oauth credentials with a "
                "refresh token so it is renewed."
                if expired
                else "Google refused the access token it had just issued: try again, and check the credentials."
            ),
            fields=fields,
        )
    if not response.ok:
        raise _failure(api, response, fields)
    data = api.require_json(response)
    found = data.get("user")
    user: dict[str, Any] = found if isinstance(found, dict) else {}
    return str(user.get("emailAddress") or user.get("displayName") or "an unnamed account")


async def _access(api: ApiClient, folder_id: str, email: str, fields: tuple[str, ...]) -> str:
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
            fields=("folder_id",),
        )
    if not response.ok:
        raise _failure(api, response, fields)
    item = api.require_json(response)
    name = api.clean(str(item.get("name") or folder_id), 200)
    if item.get("trashed"):
        raise api.failure(
            FailureType.NOT_FOUND,
            f"The folder '{name}' is in the trash",
            hint="Restore it from the trash in Google Drive, or use another folder.",
            fields=("folder_id",),
        )
    if item.get("mimeType") != FOLDER:
        raise api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"'{name}' is a file ({api.clean(str(item.get('mimeType')), 80)}), not a folder",
            hint="Use the id of the folder that holds the documents.",
            fields=("folder_id",),
        )
    capabilities = item.get("capabilities")
    if isinstance(capabilities, dict) and capabilities.get("canListChildren") is False:
        raise api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"{email} can see the folder '{name}' but may not list what is in it",
            hint=f"Share the folder with {email} as Viewer (or more).",
            fields=("folder_id", *fields),
        )
    return await _read_first(api, folder_id, name, email, fields)


async def _read_first(api: ApiClient, folder_id: str, name: str, email: str, fields: tuple[str, ...]) -> str:
    """List the folder's first files; read the first bytes of the first one with content to download."""
    listing = await api.call(
        "GET",
        "/drive/v3/files",
        params={
            "q": f"'{folder_id}' in parents and trashed = false and mimeType != '{FOLDER}'",
            "pageSize": MAX_LISTED,
            "orderBy": "name",
            "fields": "files(id,name,mimeType,size)",
            "supportsAllDrives": "true",
            "includeItemsFromAllDrives": "true",
        },
    )
    if not listing.ok:
        raise _failure(api, listing, fields)
    found = api.require_json(listing).get("files")
    files = [f for f in found[:MAX_LISTED] if isinstance(f, dict)] if isinstance(found, list) else []
    if not files:
        api.probe.warn(
            WarningCode.EMPTY_LOCATION,
            f"The folder '{name}' has no file (subfolders are not looked into)",
            hint=f"Check folder_id if you expected documents there, and that they are shared with {email}.",
        )
        return f"Folder '{name}' is readable, but it has no file"
    first = next((f for f in files if not str(f.get("mimeType", "")).startswith(NATIVE) and f.get("id")), None)
    if first is None:
        return (
            f"Folder '{name}' is readable; its first {len(files)} files are Google Docs, Sheets or Slides, which are "
            "exported rather than downloaded (no content read)"
        )
    shown = api.clean(str(first.get("name") or first["id"]), 200)
    size = str(first.get("size", ""))
    # A file of zero bytes has no range to read (Google answers 416): it is read whole.
    headers = {"Range": f"bytes=0-{FIRST_BYTES - 1}"} if size != "0" else {}
    read = await api.call(
        "GET",
        f"/drive/v3/files/{quote(str(first['id']), safe='')}",
        params={"alt": "media", "supportsAllDrives": "true"},
        headers={**headers, "Accept": "*/*"},
    )
    if read.status in (200, 206):
        length = read.headers.get("content-length", "")
        count = min(int(length), FIRST_BYTES) if length.isdigit() and len(length) < 20 else FIRST_BYTES
        return f"Folder '{name}' is readable: read the first {count} bytes of '{shown}'"
    reasons = error_reasons(read)
    if read.status == 403 and reasons & _DOWNLOAD_REASONS:
        raise api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"{email} can list the folder '{name}' but may not download '{shown}' ({api.reason(read)})",
            hint=(
                "Its owner turned off downloading for viewers and commenters: give the account Editor access "
                "(Share > the account > Editor), or let viewers download (Share > settings > Viewers and commenters "
                "can see the option to download)."
            ),
            fields=("folder_id", *fields),
        )
    if read.status == 403 and reasons & _APP_REASONS:
        raise api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"The app may not read '{shown}' in the folder '{name}' ({api.reason(read)})",
            hint=f"Authorize the app with the scope {READ_SCOPE}: with drive.file it reads only files it opened.",
            fields=fields,
        )
    if read.status == 404:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"The file '{shown}' listed in the folder '{name}' could not be downloaded (404 Not Found)",
            hint="The folder may be changing: try again.",
            fields=("folder_id",),
            retryable=True,
        )
    raise _failure(api, read, fields)


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


def _failure(api: ApiClient, response: ApiResponse, fields: tuple[str, ...]) -> ProbeFailure:
    reasons = error_reasons(response)
    if response.status in (403, 429) and reasons & _QUOTA_REASONS:
        return api.rate_limited(response)
    if response.status == 403 and reasons & _SCOPE_REASONS:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"The token lacks a Google Drive scope ({api.reason(response)})",
            hint=(
                f"Authorize the app with the scope {READ_SCOPE} (or https://www.googleapis.com/auth/drive), then "
                "get a new token."
            ),
            fields=fields,
        )
    if response.status == 403 and reasons & _DISABLED_REASONS:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            "The Google Drive API is not enabled in the credentials' Google Cloud project",
            hint=(
                "Enable it (APIs & Services > Library > Google Drive API), then try again. Google said: "
                f"{api.reason(response)}"
            ),
            fields=fields,
        )
    if response.status == 403:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            api.answered(response),
            hint="Share the folder with the account as Viewer, and authorize the app with a Drive scope.",
            fields=("folder_id", *fields),
        )
    return api.status_failure(response, credential_fields=fields, resource_fields=("folder_id",))
