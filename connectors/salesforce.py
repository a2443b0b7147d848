"""The ``salesforce`` connector: can these credentials describe this Salesforce object?

Steps: ``resolve``, ``tcp``, ``tls`` against the org's My Domain URL (``base_url``), ``token``
(the OAuth 2.0 JWT bearer flow: an assertion signed with the connected app's private key for
``username``; or a refresh-token grant; at the login URL), ``authenticate`` (``GET
/services/oauth2/userinfo``) and ``access`` (``GET /services/data/vXX.X/sobjects/{object}/describe``).

Salesforce's documented bodies (``[{"errorCode", "message"}]``) handled: ``INVALID_SESSION_ID``
(401) is authentication_failed; ``API_DISABLED_FOR_ORG`` (403: the org's edition or the user's
profile lacks "API Enabled") authorization_failed; ``REQUEST_LIMIT_EXCEEDED`` (403: the org's
daily API requests are used up) rate_limited; ``NOT_FOUND`` (404) names the ``object``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from connectors.base import ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure
from connectors.fields import Destination, PemCertificates
from connectors.oauth import (
    OAuthCredentials,
    TokenConnector,
    jwt_bearer_step,
    refresh_step,
    rsa_private_key,
    signed_jwt,
    token_url_field,
)
from connectors.saas import ApiClient, ApiResponse, BaseUrl, base_url_field, ca_cert_field, example_base_url, open_api

LOGIN = "https://login.salesforce.com"
JWT_FIELDS = ("credentials.consumer_key", "credentials.username", "credentials.private_key")


def _rsa_key(value: Any) -> Any:
    rsa_private_key(value.get_secret_value())
    return value


class SalesforceJwt(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, title="JWT bearer (connected app)")
    type: Literal["jwt"] = Field(
        title="Type", description="The connected app signs a JWT for the user with its private key (no password)."
    )
    consumer_key: str = Field(
        min_length=1, max_length=300, title="Consumer key", description="The connected app's consumer key."
    )
    username: str = Field(
        min_length=3,
        max_length=200,
        title="Username",
        description="The Salesforce username to act as (pre-authorized for the app).",
        examples=["integration@example.com"],
    )
    private_key: Annotated[Secret, AfterValidator(_rsa_key)] = Field(
        title="Private key",
        description="The PEM RSA private key whose certificate is uploaded to the connected app; never shown.",
    )
    login_url: Annotated[BaseUrl, Destination] = Field(
        LOGIN,
        title="Login URL",
        description="https://login.salesforce.com, https://test.salesforce.com for a sandbox, or the My Domain URL.",
        examples=[LOGIN, "https://test.salesforce.com"],
    )


class SalesforceOAuth(OAuthCredentials):
    token_url: Annotated[BaseUrl, Destination] = token_url_field(f"{LOGIN}/services/oauth2/token", issuer="Salesforce")


Credentials = Annotated[SalesforceJwt | SalesforceOAuth, Field(discriminator="type")]


class SalesforceConfig(ConnectorConfig):
    """Salesforce credentials, the org's URL and the object they must describe."""

    model_config = ConfigDict(title="Salesforce")

    credentials: Credentials = Field(title="Credentials", description="A JWT bearer connected app, or a refresh token.")
    object: str = Field(
        "Account",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$",
        title="Object",
        description="The API name of the object to read (Account, Contact, Invoice__c...).",
        examples=["Account", "Invoice__c"],
    )
    api_version: str = Field(
        "v61.0",
        pattern=r"^v[0-9]{2,3}\.0$",
        title="API version",
        description="The REST API version.",
        examples=["v61.0"],
    )
    base_url: BaseUrl = base_url_field(
        None,
        provider="Salesforce",
        examples=["https://acme.my.salesforce.com"],
        description="The org's My Domain URL (instance URL), where the REST API is.",
    )
    ca_cert: PemCertificates = ca_cert_field()


class SalesforceConnector(TokenConnector):
    name = "salesforce"
    title = "Salesforce"
    category = "saas"
    icon = "salesforce"
    documentation_url = "https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_jwt_flow.htm"
    config_model = SalesforceConfig

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "credentials": {
                "type": "oauth",
                "client_id": "3MVG9example",
                "client_secret": "example-client-secret",
                "refresh_token": "example-refresh-token",
                "token_url": example_base_url(host, port, "/services/oauth2/token"),
            },
            "base_url": example_base_url(host, port),
        }

    async def check(self, config: SalesforceConfig, probe: Probe) -> None:
        async with open_api(probe, config, "Salesforce") as api:
            credentials = config.credentials
            if isinstance(credentials, SalesforceJwt):
                await _jwt_step(probe, api, credentials)
                fields: tuple[str, ...] = JWT_FIELDS
            else:
                await refresh_step(
                    probe,
                    api,
                    issuer="Salesforce",
                    token_url=credentials.token_url,
                    client_id=credentials.client_id,
                    client_secret=credentials.client_secret.get_secret_value(),
                    refresh_token=credentials.refresh_token.get_secret_value(),
                )
                fields = ("credentials.refresh_token",)
            async with probe.step("authenticate") as step:
                response = await api.call("GET", "/services/oauth2/userinfo")
                if not response.ok:
                    raise _failure(api, response, config, fields)
                user = api.require_json(response)
                who = user.get("preferred_username") or user.get("name") or "an unnamed user"
                step.message = f"Signed in as {api.clean(str(who), 200)}"
            async with probe.step("access") as step:
                path = f"/services/data/{config.api_version}/sobjects/{config.object}/describe"
                response = await api.call("GET", path)
                if not response.ok:
                    raise _failure(api, response, config, fields)
                described = api.require_json(response)
                count = len(described["fields"]) if isinstance(described.get("fields"), list) else 0
                label = api.clean(str(described.get("label") or config.object), 100)
                if described.get("queryable") is False:
                    raise api.failure(
                        FailureType.AUTHORIZATION_FAILED,
                        f"The object {config.object} is not queryable by this user",
                        hint="Give the user's profile or a permission set Read access on the object.",
                        fields=("object",),
                    )
                step.message = f"The object {label} ({config.object}) is readable, with {count} fields"


def assertion(credentials: SalesforceJwt, now: float | None = None) -> str:
    """The RS256 JWT the bearer flow posts: iss the consumer key, sub the user, aud the login URL."""
    issued = int(now if now is not None else time.time())
    claims = {"iss": credentials.consumer_key, "sub": credentials.username, "aud": credentials.login_url}
    return signed_jwt(credentials.private_key.get_secret_value(), claims | {"exp": issued + 180})


async def _jwt_step(probe: Probe, api: ApiClient, credentials: SalesforceJwt) -> None:
    await jwt_bearer_step(
        probe,
        api,
        issuer="Salesforce",
        token_url=credentials.login_url + "/services/oauth2/token",
        assertion=assertion(credentials),
        fields=JWT_FIELDS,
        hint=(
            "Check the consumer key, that the connected app has the certificate of this private key, and "
            "that the user is pre-authorized (Permitted Users: Admin approved users are pre-authorized, "
            "with the user's profile or a permission set added)."
        ),
    )


def _codes(response: ApiResponse) -> set[str]:
    data = response.data if isinstance(response.data, list) else [response.data]
    return {str(e["errorCode"]) for e in data if isinstance(e, dict) and isinstance(e.get("errorCode"), str)}


def _said(api: ApiClient, response: ApiResponse) -> str:
    first = response.get(0, "message")
    return api.clean(first, 200) if isinstance(first, str) else api.reason(response)


def _failure(api: ApiClient, response: ApiResponse, config: SalesforceConfig, fields: tuple[str, ...]) -> ProbeFailure:
    codes = _codes(response)
    said = _said(api, response)
    if "REQUEST_LIMIT_EXCEEDED" in codes:
        limited = api.rate_limited(response)
        limited.message = f"The org's API request limit is used up ({said})"
        limited.hint = "Wait for the 24-hour window to free requests, or ask Salesforce for a higher API limit."
        return limited
    if "API_DISABLED_FOR_ORG" in codes:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"Salesforce refused API access ({said})",
            hint="The org's edition must include API access, and the user's profile or a permission set must have "
            "the permission API Enabled.",
            fields=fields,
        )
    if "INVALID_SESSION_ID" in codes or response.status == 401:
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            f"Salesforce refused the session ({said or 'invalid session'})",
            hint="Check base_url: it must be the org's My Domain URL, where the token was issued.",
            fields=("base_url", *fields),
        )
    if "NOT_FOUND" in codes or response.status == 404:
        return api.failure(
            FailureType.NOT_FOUND,
            f"Salesforce has no object {config.object} this user can see ({said or 'not found'})",
            hint="Check object: its API name (custom objects end in __c), and the user's Read access on it.",
            fields=("object",),
        )
    return api.status_failure(response, credential_fields=fields, resource_fields=("object",))
