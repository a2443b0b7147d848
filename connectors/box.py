"""The ``box`` connector: can these credentials read this Box folder, and download its files?

Steps: ``resolve``, ``tcp``, ``tls`` against the API host (api.box.com), ``token`` (with
client credentials: Box's client-credentials grant for the app's service account or a user,
``box_subject_type``/``box_subject_id``; not planned for a developer or OAuth access token),
``authenticate`` (``GET /2.0/users/me``) and ``access`` (``GET /2.0/folders/{id}/items``,
``limit`` 1, then the first ``FIRST_BYTES`` of the first file, ``GET /2.0/files/{id}/content``
with ``Range``: Box answers with a redirect to its download host, which the client follows,
at most five times, within the egress policy, without the token on another origin). An
empty folder is a warning (``empty_location``), not a failure.

Box's documented answers handled: the token endpoint's 400 ``unauthorized_client`` and the
API's 403 ``access_denied_insufficient_permissions`` (the app is not authorized in the
enterprise's Admin Console, or lacks the scope), 401 ``invalid_token``, 404 ``not_found``,
429 ``rate_limit_exceeded`` with Retry-After and 5xx.
"""

from __future__ import annotations

from typing import Annotated, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from connectors.base import FIRST_BYTES, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import Destination, PemCertificates
from connectors.oauth import TokenConnector, token_from_response, token_url_field
from connectors.saas import ApiClient, ApiResponse, BaseUrl, base_url_field, ca_cert_field, open_api

_AUTHORIZE_HINT = (
    "A Box admin must authorize the app: Admin Console > Integrations > Platform Apps Manager > Server Authentication "
    "Apps > Add App, with its client id; after changing the app's scopes (it needs 'Read all files and folders "
    "stored in Box'), reauthorize it there."
)


class BoxToken(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, title="Access token")
    type: Literal["token"] = Field(
        title="Type", description="A developer token (valid 60 minutes) or an OAuth 2.0 access token."
    )
    access_token: Secret = Field(title="Access token", description="A Box access token; never shown.")


class BoxClientCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, title="Client credentials")
    type: Literal["client_credentials"] = Field(
        title="Type", description="A server-authentication app signs in with its client id and secret (CCG)."
    )
    client_id: str = Field(min_length=1, max_length=200, title="Client ID", description="The app's client id.")
    client_secret: Secret = Field(title="Client secret", description="The app's client secret; never shown.")
    subject_type: Literal["enterprise", "user"] = Field(
        "enterprise",
        title="Subject type",
        description="enterprise: act as the app's service account; user: act as the user of subject_id.",
    )
    subject_id: str = Field(
        pattern=r"^[0-9]{1,20}$",
        title="Subject ID",
        description="The enterprise id (Admin Console > Account & Billing), or the user id.",
        examples=["123456789"],
    )
    token_url: Annotated[BaseUrl, Destination] = token_url_field("https://api.box.com/oauth2/token", issuer="Box")


Credentials = Annotated[BoxToken | BoxClientCredentials, Field(discriminator="type")]


class BoxConfig(ConnectorConfig):
    """Box credentials and the folder they must read."""

    model_config = ConfigDict(title="Box")

    credentials: Credentials = Field(title="Credentials", description="Client credentials, or an access token.")
    folder_id: str = Field(
        "0",
        pattern=r"^[0-9]{1,20}$",
        title="Folder ID",
        description="The folder's id (in its URL after /folder/); 0: the top of All Files.",
        examples=["0", "123456789012"],
    )
    base_url: BaseUrl = base_url_field("https://api.box.com", provider="Box", examples=["https://api.box.com"])
    ca_cert: PemCertificates = ca_cert_field()


class BoxConnector(TokenConnector):
    name = "box"
    title = "Box"
    category = "saas"
    icon = "box"
    documentation_url = "https://developer.box.com/guides/authentication/client-credentials/"
    config_model = BoxConfig

    async def check(self, config: BoxConfig, probe: Probe) -> None:
        async with open_api(probe, config, "Box") as api:
            credentials = config.credentials
            if isinstance(credentials, BoxClientCredentials):
                await _token(probe, api, credentials)
            else:
                api.use_bearer(credentials.access_token.get_secret_value())
            fields = (
                ("credentials.access_token",)
                if isinstance(credentials, BoxToken)
                else ("credentials.client_id", "credentials.subject_id")
            )
            async with probe.step("authenticate") as step:
                response = await api.call("GET", "/2.0/users/me", params={"fields": "name,login"})
                if response.status in (404, 405):
                    raise api.wrong_endpoint(response)
                if not response.ok:
                    raise _failure(api, response, fields)
                user = api.require_json(response)
                step.message = f"Signed in as {api.clean(str(user.get('name') or user.get('login')), 200)}" + (
                    f" ({api.clean(str(user['login']), 200)})" if user.get("name") and user.get("login") else ""
                )
            async with probe.step("access") as step:
                step.message = await _access(probe, api, config, fields)


async def _token(probe: Probe, api: ApiClient, credentials: BoxClientCredentials) -> None:
    secret = credentials.client_secret.get_secret_value()
    api.add_secret(secret)
    form = {
        "grant_type": "client_credentials",
        "client_id": credentials.client_id,
        "client_secret": secret,
        "box_subject_type": credentials.subject_type,
        "box_subject_id": credentials.subject_id,
    }
    url = httpx.URL(credentials.token_url)
    async with probe.step("token") as step:
        response = await api.call("POST", url, data=form, credentials=False)
        if response.get("error") == "unauthorized_client":
            raise api.failure(
                FailureType.AUTHORIZATION_FAILED,
                f"Box refused the client credentials: the app is not authorized in this enterprise "
                f"({api.clean(str(response.get('error_description') or ''), 200)})",
                hint=_AUTHORIZE_HINT,
                fields=("credentials.client_id", "credentials.subject_id"),
            )
        token = token_from_response(api, "Box", response, what="the client credentials")
        api.use_bearer(token.value)
        step.message = f"Box issued an access token at {url.host}{token.lifetime()}"


async def _access(probe: Probe, api: ApiClient, config: BoxConfig, fields: tuple[str, ...]) -> str:
    listing = await api.call(
        "GET", f"/2.0/folders/{config.folder_id}/items", params={"limit": 1, "fields": "id,name,type"}
    )
    if not listing.ok:
        raise _failure(api, listing, fields)
    entries = api.require_json(listing).get("entries")
    first = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else None
    where = f"folder {config.folder_id}" if config.folder_id != "0" else "top of All Files"
    if first is None:
        probe.warn(
            WarningCode.EMPTY_LOCATION,
            f"The {where} is empty",
            hint="Check folder_id: set it to the folder that holds the documents to sync.",
        )
        return f"The {where} is readable (empty)"
    name = api.clean(str(first.get("name") or first.get("id")), 200)
    file_id = str(first.get("id") or "")
    if first.get("type") != "file" or not file_id.isdigit():
        return f"The {where} is readable (its first entry, '{name}', is a folder: no file downloaded)"
    response = await api.call("GET", f"/2.0/files/{file_id}/content", headers={"Range": f"bytes=0-{FIRST_BYTES - 1}"})
    if response.status not in (200, 206):
        raise _failure(api, response, fields, reading=name)
    return f"The {where} is readable, and its file '{name}' can be downloaded"


def _failure(api: ApiClient, response: ApiResponse, fields: tuple[str, ...], *, reading: str = "") -> ProbeFailure:
    code = response.get("code")
    what = f" (downloading '{reading}')" if reading else ""
    if response.status == 403 or code == "access_denied_insufficient_permissions":
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"{api.answered(response)}{what}: the app is not authorized by the enterprise's admin, or lacks the scope "
            "or the folder's collaboration",
            hint=_AUTHORIZE_HINT + " Then invite the app's service account (or the user) to the folder as Viewer.",
            fields=fields,
        )
    if response.status == 401:
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            f"Box refused the token{what} (it is invalid or expired: developer tokens last 60 minutes)",
            hint="Use client credentials so the token is renewed, or generate a new token.",
            fields=fields,
        )
    return api.status_failure(response, credential_fields=fields, resource_fields=("folder_id",))
