"""The ``sharepoint`` connector: can these credentials read this SharePoint site (and library, folder)?

Through Microsoft Graph. Steps: ``resolve``, ``tcp``, ``tls`` against the Graph host
(graph.microsoft.com), ``token`` (with OAuth credentials: a refresh-token grant, or the
client-credentials grant for an app acting as itself, at Microsoft Entra ID's token
endpoint; not planned for an access token), ``authenticate`` (``GET /v1.0/me``) and
``access`` (the site, the document library, the folder, its first :data:`MAX_LISTED`
children, then the first :data:`~connectors.base.FIRST_BYTES` bytes of its first file with a
ranged ``GET /drives/{id}/items/{id}/content``: Graph answers with a redirect to a
pre-authenticated download URL, which the client follows within the egress policy, without
the token on another origin). A folder without a file is an ``empty_location`` warning: a
source that would sync 0 documents.

Graph's quirks handled here: ``/me`` answers 400 "only valid with delegated authentication
flow" for an app-only token, which is a valid token, not a failure; a missing
``Sites.Read.All`` is a 403 ``accessDenied``; a site, library or folder that does not
exist is a 404 ``itemNotFound``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from connectors.base import FIRST_BYTES, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import Destination, PemCertificates
from connectors.oauth import OAuthCredentials, TokenConnector, client_credentials_step, refresh_step
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

ISSUER = "Microsoft Entra ID"
LOGIN = "https://login.microsoftonline.com"

MAX_LISTED = 20
"""Children of the folder listed (one page) to find a file to read."""

_PERMISSION_HINT = (
    "Grant the app the Microsoft Graph permission Sites.Read.All (Application permission for client credentials, "
    "Delegated for a user's token) and have an administrator grant admin consent; with Sites.Selected instead, "
    "grant the app read access to this site."
)

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
_SITE_ID = re.compile(rf"^{_HOST},[0-9A-Fa-f-]{{36}},[0-9A-Fa-f-]{{36}}$")
_SITE_PATH = re.compile(rf"^({_HOST}):?(/[^?#]*)?$")
_TENANT = r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$"


def _site(value: str) -> str:
    """Any usual way of naming a site → ``host``, ``host:/sites/Name`` or a site id."""
    value = value.strip()
    if re.search(r"[\s\x00-\x1f\x7f-\x9f\\]", value):
        raise ValueError("must not contain whitespace, control characters or backslashes")
    if _SITE_ID.match(value):
        return value
    if "://" in value:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            raise ValueError("is not a valid URL") from None
        host, path = url.raw_host.decode("ascii"), url.path
    else:
        found = _SITE_PATH.match(value)
        if found is None:
            raise ValueError(
                "must be a site URL, hostname:/sites/name (e.g. contoso.sharepoint.com:/sites/Marketing) or a site id"
            )
        host, path = found.group(1), found.group(2) or ""
    if not re.fullmatch(_HOST, host or ""):
        raise ValueError("must name the SharePoint host, e.g. contoso.sharepoint.com")
    segments = [s for s in path.split("/") if s]
    if len(segments) >= 2 and segments[0].lower() in ("sites", "teams", "personal"):
        return f"{host}:/{segments[0]}/{segments[1]}"
    if segments and "://" not in value:
        return f"{host}:/" + "/".join(segments)  # a site at another managed path, given explicitly
    return host  # the root site (a pasted URL to a page of it)


def _folder(value: str | None) -> str | None:
    if value is None:
        return None
    segments = [s for s in value.strip().split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise ValueError("must be a path inside the library, without . or ..")
    return "/".join(segments) or None


class _Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


def _tenant_field() -> Any:
    return Field(
        pattern=_TENANT,
        title="Tenant",
        description="The directory (tenant) id, or a verified domain of the tenant.",
        examples=["contoso.onmicrosoft.com", "72f988bf-86f1-41af-91ab-2d7cd011db47"],
    )


def _client_id_field(description: str) -> Any:
    return Field(
        min_length=1,
        max_length=100,
        title="Client ID",
        description=description,
        examples=["00000000-0000-0000-0000-000000000000"],
    )


def _token_url_field() -> Any:
    return Field(
        None,
        title="Token URL",
        description=f"The token endpoint; empty: {LOGIN}/<tenant>/oauth2/v2.0/token (set it for a national cloud).",
        examples=[f"{LOGIN}/contoso.onmicrosoft.com/oauth2/v2.0/token"],
    )


class GraphAccessToken(_Credentials):
    model_config = ConfigDict(title="Access token")
    type: Literal["token"] = Field(
        title="Type", description="A Microsoft Graph access token (they expire after about an hour)."
    )
    access_token: Secret = Field(
        title="Access token",
        description="A Microsoft Graph access token; never shown.",
        examples=["eyJ0eXAiOiJKV1Qi..."],
    )


class MicrosoftOAuth(OAuthCredentials):
    client_id: str = _client_id_field(
        "The application (client) id of the app registration the refresh token was issued to."
    )
    tenant: Annotated[str, Destination] = _tenant_field()
    token_url: Annotated[BaseUrl | None, EmptyIsNone, Destination] = _token_url_field()


class MicrosoftClientCredentials(_Credentials):
    model_config = ConfigDict(title="App-only (client credentials)")
    type: Literal["client_credentials"] = Field(
        title="Type",
        description="The app signs in as itself with its client secret (application permissions, no user).",
    )
    tenant: Annotated[str, Destination] = _tenant_field()
    client_id: str = _client_id_field("The application (client) id of the app registration.")
    client_secret: Secret = Field(
        title="Client secret",
        description="A client secret of the app registration (Certificates & secrets); never shown.",
        examples=["example-client-secret"],
    )
    token_url: Annotated[BaseUrl | None, EmptyIsNone, Destination] = _token_url_field()


Credentials = Annotated[GraphAccessToken | MicrosoftOAuth | MicrosoftClientCredentials, Field(discriminator="type")]

FolderPath = Annotated[str | None, Field(max_length=2000), AfterValidator(_folder)]
"""A folder inside a drive or library, as a path (None: its top)."""


def graph_base_url_field() -> Any:
    """The ``base_url`` field of a connector that talks to Microsoft Graph."""
    return base_url_field(
        "https://graph.microsoft.com",
        provider="Microsoft Graph",
        examples=["https://graph.microsoft.com", "https://graph.microsoft.us"],
    )


class GraphConnector(TokenConnector):
    """What the Microsoft Graph connectors share: their steps (``token`` not planned for an access token)."""


def graph_unauthorized_hint(credentials: BaseModel) -> str:
    """What to fix when Graph answers 401 to the token of ``credentials``."""
    if isinstance(credentials, GraphAccessToken):
        return (
            "The access token is wrong, expired (they last about an hour) or for another API than Microsoft "
            "Graph: use client credentials or a refresh token so it is renewed."
        )
    return (
        "Microsoft Graph refused the token Entra ID had just issued: check that the app registration is for this "
        "tenant."
    )


class SharePointConfig(ConnectorConfig):
    """Microsoft credentials and the SharePoint site (library, folder) they must read."""

    model_config = ConfigDict(title="SharePoint")

    credentials: Credentials = Field(
        title="Credentials",
        description=(
            "App-only client credentials, a user's refresh token with the app's id and secret, or a short-lived "
            "access token."
        ),
        examples=[
            {
                "type": "client_credentials",
                "tenant": "contoso.onmicrosoft.com",
                "client_id": "00000000-0000-0000-0000-000000000000",
                "client_secret": "example-client-secret",
            }
        ],
    )
    site: Annotated[str, Field(max_length=2000), AfterValidator(_site), Destination] = Field(
        title="Site",
        description="The site's URL, hostname:/sites/name, or its Graph site id (hostname,guid,guid).",
        examples=["https://contoso.sharepoint.com/sites/Marketing", "contoso.sharepoint.com:/sites/Marketing"],
    )
    library: Annotated[str | None, EmptyIsNone] = Field(
        None,
        min_length=1,
        max_length=255,
        title="Document library",
        description="The document library to read, by name; empty: the site's default library (Documents).",
        examples=["Documents", "Policies"],
    )
    folder: FolderPath = Field(
        None,
        title="Folder",
        description="A folder inside the library, as a path; empty: the library's top.",
        examples=["Handbook/2024"],
    )
    base_url: BaseUrl = graph_base_url_field()
    ca_cert: PemCertificates = ca_cert_field()


class SharePointConnector(GraphConnector):
    name = "sharepoint"
    title = "SharePoint"
    category = "saas"
    icon = "sharepoint"
    documentation_url = "https://learn.microsoft.com/en-us/graph/api/resources/sharepoint"
    config_model = SharePointConfig

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "credentials": {"type": "token", "access_token": "example-access-token"},
            "site": "contoso.sharepoint.com:/sites/Marketing",
            "base_url": example_base_url(host, port),
        }

    async def check(self, config: SharePointConfig, probe: Probe) -> None:
        async with open_api(probe, config, "Microsoft Graph") as api:
            await graph_token_step(probe, api, config.credentials, config.base_url)
            fields = graph_credential_fields(config.credentials)
            async with probe.step("authenticate") as step:
                step.message = await _authenticate(api, config, fields)
            async with probe.step("access") as step:
                step.message = await _access(api, config, fields)


def graph_credential_fields(
    credentials: GraphAccessToken | MicrosoftOAuth | MicrosoftClientCredentials,
) -> tuple[str, ...]:
    """The fields a refused token, or one without the permission, is about."""
    if isinstance(credentials, MicrosoftOAuth):
        return ("credentials.refresh_token", "credentials.client_id")
    if isinstance(credentials, MicrosoftClientCredentials):
        return ("credentials.client_id", "credentials.tenant")
    return ("credentials.access_token",)


async def graph_token_step(
    probe: Probe,
    api: ApiClient,
    credentials: GraphAccessToken | MicrosoftOAuth | MicrosoftClientCredentials,
    base_url: str,
) -> None:
    """Step ``token`` for Microsoft Graph at ``base_url`` (none for an access token: see planned_steps)."""
    if isinstance(credentials, GraphAccessToken):
        api.use_bearer(credentials.access_token.get_secret_value())
        return
    token_url = credentials.token_url or f"{LOGIN}/{credentials.tenant}/oauth2/v2.0/token"
    base = httpx.URL(base_url)
    resource = f"{base.scheme}://{base.netloc.decode('ascii')}/.default"  # the Graph of this cloud
    if isinstance(credentials, MicrosoftOAuth):
        await refresh_step(
            probe,
            api,
            issuer=ISSUER,
            token_url=token_url,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret.get_secret_value(),
            refresh_token=credentials.refresh_token.get_secret_value(),
            scope=f"{resource} offline_access",
        )
    else:
        await client_credentials_step(
            probe,
            api,
            issuer=ISSUER,
            token_url=token_url,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret.get_secret_value(),
            scope=resource,
        )


async def _authenticate(api: ApiClient, config: SharePointConfig, fields: tuple[str, ...]) -> str:
    response = await api.call("GET", "/v1.0/me", params={"$select": "displayName,userPrincipalName"})
    if response.status in (404, 405):
        failure = api.wrong_endpoint(response)
        failure.fields = ["base_url"]
        raise failure
    if response.ok:
        user = api.require_json(response)
        name, upn = user.get("displayName"), user.get("userPrincipalName")
        return f"Signed in as {name or upn}" + (f" ({upn})" if name and upn else "")
    if response.status == 400 and "delegated authentication flow" in api.reason(response):
        return "App-only token: the app acts as itself, with its application permissions"
    if response.status == 403:
        return "Token accepted (it may not read the user's profile, which this check does not need)"
    if response.status == 401:
        raise api.failure(
            FailureType.AUTHENTICATION_FAILED,
            api.answered(response),
            hint=graph_unauthorized_hint(config.credentials),
            fields=fields,
        )
    raise _failure(api, response, fields)


def _site_path(site: str) -> str:
    if _SITE_ID.match(site):
        return f"/v1.0/sites/{site}"
    host, _, path = site.partition(":")
    if not path:
        return f"/v1.0/sites/{host}"
    return f"/v1.0/sites/{host}:/" + "/".join(quote(s, safe="") for s in path.split("/") if s)


async def _access(api: ApiClient, config: SharePointConfig, fields: tuple[str, ...]) -> str:
    site = await _get(
        api,
        _site_path(config.site),
        "id,displayName,webUrl",
        missing=f"SharePoint has no site {config.site}",
        hint="Check the site: use its URL as shown in the browser (https://contoso.sharepoint.com/sites/Name).",
        fields=fields,
        missing_fields=("site",),
        reason=True,
    )
    site_id = str(site.get("id") or "")
    if not _SITE_ID.match(site_id):
        raise api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"Microsoft Graph answered the site {config.site} without a site id",
            hint="Check base_url: it must be the root of the Microsoft Graph API.",
            fields=("base_url",),
        )
    title = f"site '{site.get('displayName') or config.site}'"

    drive = await _drive(api, config, site_id, title, fields)
    drive_id = quote(str(drive.get("id") or ""), safe="!")
    where = f"library '{drive.get('name')}' of {title}"
    item_path = f"/v1.0/drives/{drive_id}/root"
    if config.folder:
        item_path += ":/" + "/".join(quote(s, safe="") for s in config.folder.split("/"))
        item = await _get(
            api,
            item_path,
            "id,name,folder",
            missing=f"There is no folder '{config.folder}' in the {where}",
            hint="Check the folder's path inside the library (names as shown in SharePoint, separated by /).",
            fields=fields,
            missing_fields=("folder",),
        )
        if "folder" not in item:
            raise api.failure(
                FailureType.UNEXPECTED_RESPONSE,
                f"'{config.folder}' in the {where} is a file, not a folder",
                hint="Set folder to the folder that holds the documents.",
                fields=("folder",),
            )
        where = f"folder '{config.folder}' in the {where}"
        item_path = f"/v1.0/drives/{drive_id}/items/{quote(str(item.get('id') or ''), safe='!')}"
    return await _read_first(api, f"/v1.0/drives/{drive_id}", item_path, where, fields)


async def _read_first(api: ApiClient, drive: str, item_path: str, where: str, fields: tuple[str, ...]) -> str:
    """List the folder's first children; read the first bytes of the first file among them."""
    listing = await api.call(
        "GET", f"{item_path}/children", params={"$top": MAX_LISTED, "$select": "id,name,file,folder,size"}
    )
    if not listing.ok:
        raise _failure(api, listing, fields)
    items = api.require_json(listing).get("value")
    entries = [i for i in items[:MAX_LISTED] if isinstance(i, dict)] if isinstance(items, list) else []
    first = next((i for i in entries if "file" in i and i.get("id")), None)
    if first is None:
        api.probe.warn(
            WarningCode.EMPTY_LOCATION,
            f"The {where} has no file" + (" at its top (only folders)" if entries else ""),
            hint="Check library and folder: set them to where the documents to sync are. The credentials work.",
        )
        return f"The {where} is readable, but it has no file (0 documents to sync)"
    name = api.clean(str(first.get("name") or first["id"]), 200)
    # A file of zero bytes has no range to read: it is read whole.
    headers = {"Range": f"bytes=0-{FIRST_BYTES - 1}"} if first.get("size") != 0 else {}
    content = f"{drive}/items/{quote(str(first['id']), safe='!')}/content"
    response = await api.call("GET", content, headers={**headers, "Accept": "*/*"})
    if response.status in (200, 206):
        length = response.headers.get("content-length", "")
        count = min(int(length), FIRST_BYTES) if length.isdigit() and len(length) < 20 else FIRST_BYTES
        return f"The {where} is readable: read the first {count} bytes of '{name}'"
    if response.status == 404:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"{api.answered(response)}: the file '{name}' could not be downloaded",
            hint="The file may have been moved or deleted during the check: try again.",
            fields=("folder",),
            retryable=True,
        )
    raise _failure(api, response, fields, reading=name)


async def _drive(
    api: ApiClient, config: SharePointConfig, site_id: str, title: str, fields: tuple[str, ...]
) -> dict[str, Any]:
    if config.library is None:
        return await _get(
            api,
            f"/v1.0/sites/{site_id}/drive",
            "id,name,webUrl",
            missing=f"The {title} has no default document library",
            hint="Set library to the name of the document library to read.",
            fields=fields,
            missing_fields=("library",),
        )
    response = await api.call("GET", f"/v1.0/sites/{site_id}/drives", params={"$select": "id,name,webUrl"})
    if not response.ok:
        raise _failure(api, response, fields)
    drives = [d for d in (api.require_json(response).get("value") or []) if isinstance(d, dict)]
    wanted = config.library.strip().lower()
    for drive in drives:
        url_name = str(drive.get("webUrl") or "").rstrip("/").rsplit("/", 1)[-1].replace("%20", " ")
        if wanted in (str(drive.get("name") or "").lower(), url_name.lower()):
            return drive
    names = ", ".join(sorted(str(d.get("name")) for d in drives)) or "none"
    raise api.failure(
        FailureType.NOT_FOUND,
        f"The {title} has no document library '{config.library}' (it has: {names})",
        hint="Set library to one of the names listed, or leave it empty for the default library.",
        fields=("library",),
    )


async def _get(
    api: ApiClient,
    path: str,
    select: str,
    *,
    missing: str,
    hint: str,
    fields: tuple[str, ...],
    missing_fields: tuple[str, ...],
    reason: bool = False,
) -> dict[str, Any]:
    """The JSON object Graph answers for ``path`` (fields ``select``); a 404 fails as ``missing``
    about ``missing_fields`` (followed by Graph's reason with ``reason``), any other error as
    :func:`_failure` says (about the credentials' ``fields``)."""
    response = await api.call("GET", path, params={"$select": select})
    if response.status == 404:
        said = f" ({api.reason(response)})" if reason else ""
        raise api.failure(FailureType.NOT_FOUND, missing + said, hint=hint, fields=missing_fields)
    if not response.ok:
        raise _failure(api, response, fields)
    return api.require_json(response)


def _failure(api: ApiClient, response: ApiResponse, fields: tuple[str, ...], *, reading: str = "") -> ProbeFailure:
    code = response.get("error", "code")
    what = f" (downloading '{reading}')" if reading else ""
    if response.status == 403 or code in ("accessDenied", "Authorization_RequestDenied"):
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"{api.answered(response)}{what}: the app lacks the permission Sites.Read.All"
            + (
                ", or the file is protected from download (a sensitivity label or a block-download policy)"
                if reading
                else ""
            ),
            hint=_PERMISSION_HINT,
            fields=fields,
        )
    if response.status == 401:
        return api.failure(FailureType.AUTHENTICATION_FAILED, api.answered(response) + what, fields=fields)
    return api.status_failure(response, credential_fields=fields, resource_fields=("site", "library", "folder"))
