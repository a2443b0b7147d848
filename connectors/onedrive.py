"""The ``onedrive`` connector: can these credentials read this OneDrive folder, and download its files?

Through Microsoft Graph, with the credentials and token code of :mod:`connectors.sharepoint`.
Steps: ``resolve``, ``tcp``, ``tls`` against the Graph host, ``token`` (a refresh-token grant
at Microsoft Entra ID; not planned for an access token), ``authenticate`` (``GET
/v1.0/me/drive``, or ``/v1.0/drives/{id}``: whose drive the token opens) and ``access`` (the
folder's children by path, ``$top`` bounded, then the first ``FIRST_BYTES`` of the first file
with a ranged ``GET .../content``; Graph answers it with a redirect to a pre-authenticated
download URL, which the client follows within the egress policy, without the token on
another origin). An empty folder is a warning (``empty_location``), not a failure.

Graph's bodies handled: 401 ``InvalidAuthenticationToken``, 403 ``accessDenied`` (no
``Files.Read``), 404 ``itemNotFound`` (a folder, or a drive: a user without a OneDrive
licence has none), 429 with Retry-After and 503 (``ApiClient.status_failure``).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from pydantic import ConfigDict, Field

from connectors.base import FIRST_BYTES, ConnectorConfig, Probe
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import PemCertificates
from connectors.oauth import credential_fields
from connectors.saas import (
    ApiClient,
    ApiResponse,
    BaseUrl,
    EmptyIsNone,
    ca_cert_field,
    open_api,
)
from connectors.sharepoint import (
    FolderPath,
    GraphAccessToken,
    GraphConnector,
    MicrosoftOAuth,
    graph_base_url_field,
    graph_token_step,
    graph_unauthorized_hint,
)

MAX_LISTED = 20
"""Children of the folder asked for in one listing, to find a file among them."""

_PERMISSION_HINT = (
    "Grant the app the Microsoft Graph permission Files.Read (or Files.Read.All for a drive shared with the user), "
    "then sign in again so the token carries it."
)

Credentials = Annotated[GraphAccessToken | MicrosoftOAuth, Field(discriminator="type")]


class OneDriveConfig(ConnectorConfig):
    """Microsoft credentials and the OneDrive folder they must read."""

    model_config = ConfigDict(title="OneDrive")

    credentials: Credentials = Field(
        title="Credentials",
        description="A user's refresh token with the app's id and secret (recommended), or a short-lived access token.",
        examples=[
            {
                "type": "oauth",
                "tenant": "contoso.onmicrosoft.com",
                "client_id": "00000000-0000-0000-0000-000000000000",
                "client_secret": "example-client-secret",
                "refresh_token": "example-refresh-token",
            }
        ],
    )
    drive_id: Annotated[str | None, EmptyIsNone] = Field(
        None,
        pattern=r"^[A-Za-z0-9!_.-]{1,200}$",
        title="Drive ID",
        description="The id of the drive to read; empty: the signed-in user's own OneDrive (/me/drive).",
        examples=["b!t18F8ybsHUq1z3LTz8xvZqP8zaSWjkFNhsME-Fepo75dTf9vQKfeRblBZjoSQrd7"],
    )
    folder: FolderPath = Field(
        None,
        title="Folder",
        description="A folder inside the drive, as a path; empty: the drive's top.",
        examples=["Documents/Reports"],
    )
    base_url: BaseUrl = graph_base_url_field()
    ca_cert: PemCertificates = ca_cert_field()


class OneDriveConnector(GraphConnector):
    name = "onedrive"
    title = "OneDrive"
    category = "saas"
    icon = "onedrive"
    documentation_url = "https://learn.microsoft.com/en-us/graph/api/resources/onedrive"
    config_model = OneDriveConfig

    async def check(self, config: OneDriveConfig, probe: Probe) -> None:
        async with open_api(probe, config, "Microsoft Graph") as api:
            await graph_token_step(probe, api, config.credentials, config.base_url)
            async with probe.step("authenticate") as step:
                drive_id, step.message = await _authenticate(api, config)
            async with probe.step("access") as step:
                step.message = await _access(probe, api, config, drive_id)


async def _authenticate(api: ApiClient, config: OneDriveConfig) -> tuple[str, str]:
    path = f"/v1.0/drives/{quote(config.drive_id, safe='!')}" if config.drive_id else "/v1.0/me/drive"
    response = await api.call("GET", path, params={"$select": "id,name,driveType,owner"})
    if response.status == 404:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"Microsoft Graph has no drive {config.drive_id} these credentials can see"
            if config.drive_id
            else f"The signed-in user has no OneDrive ({api.reason(response) or 'Graph found no drive'})",
            hint="Check drive_id (GET /me/drives lists the user's drives), or leave it empty for the user's own "
            "OneDrive, which needs a licence that includes OneDrive and to have been opened once.",
            fields=("drive_id",),
        )
    if not response.ok:
        raise _failure(api, response, config)
    drive = api.require_json(response)
    drive_id = str(drive.get("id") or "")
    if not drive_id:
        raise api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            "Microsoft Graph answered the drive without its id",
            hint="Check base_url: it must be the root of the Microsoft Graph API.",
            fields=("base_url",),
        )
    owner = drive.get("owner")
    user = owner.get("user") if isinstance(owner, dict) else None
    name = user.get("displayName") if isinstance(user, dict) else None
    kind = api.clean(str(drive.get("driveType") or "drive"), 40)
    return drive_id, f"Opened the {kind} drive '{api.clean(str(drive.get('name') or drive_id), 100)}'" + (
        f" of {api.clean(str(name), 100)}" if name else ""
    )


async def _access(probe: Probe, api: ApiClient, config: OneDriveConfig, drive_id: str) -> str:
    drive = f"/v1.0/drives/{quote(drive_id, safe='!')}"
    where = f"folder '{config.folder}'" if config.folder else "top of the drive"
    children = (
        f"{drive}/root:/{quote(config.folder, safe='/')}:/children" if config.folder else f"{drive}/root/children"
    )
    listing = await api.call("GET", children, params={"$top": MAX_LISTED, "$select": "id,name,file,folder,size"})
    if listing.status == 404:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"There is no {where} in the drive ({api.reason(listing) or 'not found'})",
            hint="Check the folder's path inside the drive (names as shown in OneDrive, separated by /).",
            fields=("folder",),
        )
    if not listing.ok:
        raise _failure(api, listing, config)
    items = api.require_json(listing).get("value")
    entries = [i for i in items[:MAX_LISTED] if isinstance(i, dict)] if isinstance(items, list) else []
    first = next((i for i in entries if "file" in i and i.get("id")), None)
    if first is None:
        probe.warn(
            WarningCode.EMPTY_LOCATION,
            f"The {where} has no file" + (" at its top (only folders)" if entries else ""),
            hint="Check folder: set it to the folder that holds the documents to sync.",
        )
        return f"The {where} is readable (no file to download)"
    name = api.clean(str(first.get("name") or first["id"]), 200)
    content = f"{drive}/items/{quote(str(first['id']), safe='!')}/content"
    response = await api.call("GET", content, headers={"Range": f"bytes=0-{FIRST_BYTES - 1}"})
    if response.status not in (200, 206):
        raise _failure(api, response, config, reading=name)
    return f"The {where} is readable, and its file '{name}' can be downloaded"


def _failure(api: ApiClient, response: ApiResponse, config: OneDriveConfig, *, reading: str = "") -> ProbeFailure:
    fields = credential_fields(config.credentials)
    what = f" (downloading '{reading}')" if reading else ""
    if response.status == 403 or response.get("error", "code") == "accessDenied":
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"{api.answered(response)}{what}: the token lacks the permission Files.Read",
            hint=_PERMISSION_HINT,
            fields=fields,
        )
    if response.status == 401:
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            api.answered(response) + what,
            hint=graph_unauthorized_hint(config.credentials),
            fields=fields,
        )
    if reading and response.status == 404:
        return api.failure(
            FailureType.NOT_FOUND,
            f"{api.answered(response)}: the file '{reading}' could not be downloaded",
            hint="The file may have been moved or deleted during the check: try again.",
            fields=("folder",),
        )
    return api.status_failure(response, credential_fields=fields, resource_fields=("folder",))
