"""The ``zendesk`` connector: can these credentials read this Zendesk account's help center?

Steps: ``resolve``, ``tcp``, ``tls`` against ``https://<subdomain>.zendesk.com`` (or ``base_url``),
``authenticate`` (``GET /api/v2/users/me.json``: who the credentials are, and their role) and
``access`` (``GET /api/v2/help_center[/<locale>]/articles.json?per_page=1``).

Zendesk's quirks handled here: ``users/me`` is allowed for anonymous users, so credentials it does
not accept may be answered 200 with the *anonymous* user (``id`` null, role ``end-user``) rather
than 401; an API token is sent as HTTP Basic ``<email>/token:<api_token>``; a subdomain with no
account is a 404 "No help desk at <host>" on every path; an account without a help center answers
404 on the help center API; an end user sees only published articles visible to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import Destination, PemCertificates
from connectors.saas import (
    ApiClient,
    ApiResponse,
    BaseUrl,
    EmptyIsNone,
    ca_cert_field,
    example_base_url,
    open_api,
)

ME = "/api/v2/users/me.json"
ROLES = ("end-user", "agent", "admin")

API_TOKEN_FIELDS = ("credentials.email", "credentials.api_token")
OAUTH_FIELDS = ("credentials.access_token",)

_BASIC_HINT = (
    "Check the email and the API token: the email must be an agent's or admin's (not an end user's), and token "
    "access must be enabled with the token active in Admin Center > Apps and integrations > Zendesk API."
)
_OAUTH_HINT = (
    "The OAuth access token is wrong, expired or revoked: get a new one from the OAuth client "
    "(Admin Center > Apps and integrations > APIs > OAuth clients) with the read scope."
)


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class _Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class ApiToken(_Credentials):
    model_config = ConfigDict(title="Email and API token")
    type: Literal["api_token"] = Field(title="Type", description="An agent's email and a Zendesk API token.")
    email: str = Field(
        min_length=3,
        max_length=254,
        pattern=r"^[^:/\s]+@[^:/\s]+$",
        title="Email",
        description="The email address of the agent (or admin) the requests are made as.",
        examples=["reader@example.com"],
    )
    api_token: Secret = Field(
        title="API token",
        description="A token from Admin Center > Apps and integrations > Zendesk API; never shown.",
        examples=["6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv"],
    )


class OAuthToken(_Credentials):
    model_config = ConfigDict(title="OAuth access token")
    type: Literal["oauth"] = Field(title="Type", description="An OAuth 2.0 access token, sent as a bearer token.")
    access_token: Secret = Field(
        title="Access token",
        description="An OAuth access token with the read scope (hc:read at least); never shown.",
        examples=["gErypPlm4dOVgGRvA1ZzMH5MQ3nLo8bo"],
    )


Credentials = Annotated[ApiToken | OAuthToken, Field(discriminator="type")]


@dataclass(frozen=True)
class _Endpoint:
    """What :func:`open_api` needs: the API root the configuration names, and the CA to trust."""

    base_url: str
    ca_cert: str | None


class ZendeskConfig(ConnectorConfig):
    """A Zendesk account (its subdomain), credentials, and optionally the help center locale."""

    model_config = ConfigDict(title="Zendesk")

    subdomain: Annotated[str | None, EmptyIsNone, BeforeValidator(_lower), Destination] = Field(
        None,
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
        title="Subdomain",
        description="The account's subdomain: acme for https://acme.zendesk.com. Give this or base_url.",
        examples=["acme"],
    )
    base_url: Annotated[BaseUrl | None, EmptyIsNone, Destination] = Field(
        None,
        title="API base URL",
        description=(
            "Root URL of the account, for a proxy or a test server: https://<subdomain>.zendesk.com. Empty: "
            "built from subdomain."
        ),
        examples=["https://acme.zendesk.com"],
        json_schema_extra={"format": "uri"},
    )
    ca_cert: PemCertificates = ca_cert_field()
    credentials: Credentials = Field(
        title="Credentials",
        description="An agent's email and an API token, or an OAuth access token.",
        examples=[{"type": "api_token", "email": "reader@example.com", "api_token": "6wiIBWbGkBMo1mRDMuVwkw1EPsNk"}],
    )
    locale: Annotated[str | None, EmptyIsNone, BeforeValidator(_lower)] = Field(
        None,
        pattern=r"^[a-z]{2,3}(?:-[a-z0-9]{2,8}){0,2}$",
        title="Help center locale",
        description="Read the articles of this locale only (en-us, fr, pt-br); empty for the default locale.",
        examples=["en-us"],
    )

    @model_validator(mode="after")
    def _one_address(self) -> ZendeskConfig:
        if (self.subdomain is None) == (self.base_url is None):
            raise ValueError("set either subdomain or base_url (not both)")
        return self

    def endpoint(self) -> _Endpoint:
        return _Endpoint(self.base_url or f"https://{self.subdomain}.zendesk.com", self.ca_cert)

    def address_field(self) -> str:
        return "subdomain" if self.subdomain is not None else "base_url"

    def credential_fields(self) -> tuple[str, ...]:
        return API_TOKEN_FIELDS if isinstance(self.credentials, ApiToken) else OAUTH_FIELDS

    def login_hint(self) -> str:
        return _BASIC_HINT if isinstance(self.credentials, ApiToken) else _OAUTH_HINT


class ZendeskConnector(Connector):
    name = "zendesk"
    title = "Zendesk"
    category = "saas"
    icon = "zendesk"
    documentation_url = "https://developer.zendesk.com/api-reference/introduction/security-and-auth/"
    config_model = ZendeskConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "base_url": example_base_url(host, port),
            "credentials": {"type": "api_token", "email": "reader@example.com", "api_token": "example-api-token"},
        }

    async def check(self, config: ZendeskConfig, probe: Probe) -> None:
        async with open_api(probe, config.endpoint(), "Zendesk") as api:
            credentials = config.credentials
            if isinstance(credentials, ApiToken):
                api.use_basic(f"{credentials.email}/token", credentials.api_token.get_secret_value())
            else:
                api.use_bearer(credentials.access_token.get_secret_value())
            async with probe.step("authenticate") as step:
                step.message = await _authenticate(api, config)
            async with probe.step("access") as step:
                step.message = await _access(api, config)


# --- authenticate ----------------------------------------------------------------------


def _text(api: ApiClient, value: Any, limit: int = 100) -> str:
    return api.clean(value, limit=limit) if isinstance(value, str) else ""


async def _authenticate(api: ApiClient, config: ZendeskConfig) -> str:
    response = await api.call("GET", ME)
    if not response.ok:
        raise _failure(api, response, config)
    user = api.require_json(response).get("user")
    if not isinstance(user, dict):
        raise api.not_json(response)
    if user.get("id") is None:
        # users/me is allowed for anonymous users: credentials Zendesk did not accept come back as them.
        raise api.failure(
            FailureType.AUTHENTICATION_FAILED,
            "Zendesk did not accept the credentials and answered as the anonymous user",
            hint=config.login_hint(),
            fields=config.credential_fields(),
        )
    role = user.get("role")
    role = role if role in ROLES else _text(api, role, 40) or "unknown"
    who = _text(api, user.get("email"), 254) or _text(api, user.get("name")) or f"user {_text(api, str(user['id']))}"
    if role == "end-user":
        api.probe.warn(
            WarningCode.MISSING_OPTIONAL_SCOPE,
            f"{who} is an end user: Zendesk shows end users only the published articles they may see, not drafts "
            "or articles restricted to agents",
            hint="Use an agent's (or admin's) credentials to read every article, drafts included.",
        )
        return f"Signed in as {who} (role end-user: cannot read drafts)"
    return f"Signed in as {who} (role {role})"


# --- access ----------------------------------------------------------------------------


async def _access(api: ApiClient, config: ZendeskConfig) -> str:
    locale = f"/{config.locale}" if config.locale else ""
    response = await api.call("GET", f"/api/v2/help_center{locale}/articles.json", params={"per_page": 1})
    if response.status == 404 and _no_help_desk(api, response) is None:
        if config.locale:
            raise api.failure(
                FailureType.NOT_FOUND,
                f"Zendesk has no help center articles in the locale {config.locale} ({api.answered(response)})",
                hint="Check the locale (as in the help center's URL: /hc/en-us/), or leave it empty for the default; "
                "the help center must also be enabled (Admin Center > Channels > Help center).",
                fields=("locale",),
            )
        raise api.failure(
            FailureType.NOT_FOUND,
            f"This Zendesk account has no help center ({api.answered(response)})",
            hint="Turn the help center on (Knowledge admin, or Admin Center > Channels > Help center) and publish "
            "it, or check the subdomain.",
            fields=(config.address_field(),),
        )
    if not response.ok:
        raise _failure(
            api,
            response,
            config,
            forbidden_hint="The user may not read the help center: give the agent a role with access to the "
            "knowledge base (Guide), or sign in as a Guide admin.",
        )
    data = api.require_json(response)
    articles = data.get("articles")
    if not isinstance(articles, list):
        raise api.not_json(response)
    count = data.get("count")
    count = count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else len(articles)
    where = f" in the locale {config.locale}" if config.locale else ""
    if count == 0 or not articles:
        api.probe.warn(
            WarningCode.EMPTY_LOCATION,
            f"The Zendesk help center has no articles{where} that these credentials can read: a sync would find "
            "nothing",
            hint="Check the locale, or publish articles first (an end user sees published ones only).",
        )
        return f"The help center is readable; it has no articles{where}"
    return f"The help center is readable: {count} article{'s' if count != 1 else ''}{where}"


# --- failures --------------------------------------------------------------------------


def _no_help_desk(api: ApiClient, response: ApiResponse) -> str | None:
    """The "No help desk at <host>" title of Zendesk's 404 for a subdomain with no account, or None."""
    error = response.get("error")
    title = error.get("title") if isinstance(error, dict) else None
    said = title if isinstance(title, str) else response.text if response.data is None else ""
    if "no help desk at" not in said[:500].lower():
        return None
    return api.clean(said, limit=200)


def _failure(
    api: ApiClient, response: ApiResponse, config: ZendeskConfig, *, forbidden_hint: str | None = None
) -> ProbeFailure:
    """Zendesk's own error bodies first, then the generic meaning of the status."""
    if response.status == 404 and (said := _no_help_desk(api, response)) is not None:
        return api.failure(
            FailureType.NOT_FOUND,
            f"Zendesk answered 404: {said}: no Zendesk account has this subdomain",
            hint="Check the subdomain: it is the first part of the account's address (acme in acme.zendesk.com).",
            fields=(config.address_field(),),
        )
    if response.status == 404 and response.url.path.endswith(ME):
        return api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"Zendesk answered 404 for {ME}, which every Zendesk account has: this is not a Zendesk account's address",
            hint="Check base_url: it must be https://<subdomain>.zendesk.com, without a path.",
            fields=(config.address_field(),),
        )
    if response.status == 401:
        reason = api.reason(response)
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            "Zendesk refused the credentials (401 Unauthorized)" + (f": {reason}" if reason else ""),
            hint=config.login_hint(),
            fields=config.credential_fields(),
        )
    return api.status_failure(
        response,
        forbidden_hint=forbidden_hint or "The user may not make this request: check its role in Zendesk.",
        credential_fields=config.credential_fields(),
        resource_fields=(config.address_field(),),
    )
