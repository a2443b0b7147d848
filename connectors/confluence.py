"""The ``confluence`` connector: can these credentials read this Confluence space?

Steps: ``resolve``, ``tcp``, ``tls`` against the site's host, ``authenticate``
(``GET /rest/api/user/current`` under the site URL) and ``access`` (``GET
/rest/api/space/{key}`` with a ``space_key``; without one, ``GET /rest/api/space?limit=1``:
at least one space must be visible, or there is nothing to read). Works with Confluence Cloud (``https://<site>.atlassian.net/wiki``,
email + API token) and Data Center / Server (the site URL, a personal access token as bearer).

Atlassian's quirks handled here: wrong credentials on a site that allows anonymous
access are not refused but served as the *anonymous* user (so ``user/current`` must say
who we are); a wrong API token is answered "Basic authentication with passwords is
deprecated"; a scoped API token without the needed scope is a 401 "scope does not match"
(a permission problem, not a login problem); a space the user may not view is a 404,
exactly like a space that does not exist; after too many failed logins Data Center
answers 403 with ``X-Authentication-Denied-Reason`` (a CAPTCHA must be solved in a browser).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import AfterValidator, ConfigDict, Field

from connectors.atlassian import AccessToken, EmailAndApiToken, sign_in
from connectors.base import Connector, ConnectorConfig, Probe
from connectors.errors import FailureType, ProbeFailure
from connectors.fields import PemCertificates
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

_SPACE_KEY = r"^~?[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}$"

_SCOPES = "read:confluence-space.summary (classic scopes) or read:space:confluence (granular scopes)"


def _site(value: str) -> str:
    """A Confluence Cloud site given without its ``/wiki`` path gets it: the REST API lives there."""
    url = httpx.URL(value)
    if url.host.endswith(".atlassian.net") and url.path in ("", "/"):
        return value + "/wiki"
    return value


class EmailApiToken(EmailAndApiToken):
    model_config = ConfigDict(title="Email and API token (Cloud)")
    type: Literal["basic"] = Field(
        title="Type", description="Confluence Cloud: your Atlassian account email and an API token."
    )


class BearerToken(AccessToken):
    model_config = ConfigDict(title="Personal access token (Data Center) or OAuth token")
    type: Literal["bearer"] = Field(
        title="Type", description="Confluence Data Center/Server personal access token, or an OAuth 2.0 access token."
    )


Credentials = Annotated[EmailApiToken | BearerToken, Field(discriminator="type")]


class ConfluenceConfig(ConnectorConfig):
    """A Confluence site, credentials, and the space they must read."""

    model_config = ConfigDict(title="Confluence")

    base_url: Annotated[BaseUrl, AfterValidator(_site)] = base_url_field(
        None,
        provider="Confluence",
        examples=["https://acme.atlassian.net/wiki", "https://confluence.example.com"],
        description=(
            "The Confluence site: https://<site>.atlassian.net/wiki for Cloud (/wiki is added when missing), the "
            "site's URL (with its context path, if any) for Data Center or Server."
        ),
    )
    credentials: Credentials = Field(
        title="Credentials",
        description="Email + API token for Cloud; a personal access token for Data Center.",
        examples=[{"type": "basic", "email": "reader@example.com", "api_token": "ATATT3xFfGF0example"}],
    )
    space_key: Annotated[str | None, EmptyIsNone] = Field(
        None,
        pattern=_SPACE_KEY,
        title="Space key",
        description="The key of the space to read, as in the space's URL after /spaces/ (case-sensitive). Empty: "
        "every space the user can view (at least one must be visible).",
        examples=["ENG", "~5b10ac8d82e05b22cc7d4ef5"],
    )
    ca_cert: PemCertificates = ca_cert_field()


class ConfluenceConnector(Connector):
    name = "confluence"
    title = "Confluence"
    category = "saas"
    icon = "confluence"
    documentation_url = "https://developer.atlassian.com/cloud/confluence/basic-auth-for-rest-apis/"
    config_model = ConfluenceConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "base_url": example_base_url(host, port, "/wiki"),
            "credentials": {"type": "basic", "email": "reader@example.com", "api_token": "example-api-token"},
            "space_key": "ENG",
        }

    async def check(self, config: ConfluenceConfig, probe: Probe) -> None:
        async with open_api(probe, config, "Confluence") as api:
            sign_in(api, config.credentials)
            async with probe.step("authenticate") as step:
                step.message = await _authenticate(api, config)
            async with probe.step("access") as step:
                step.message = await _access(api, config)


def _credential_fields(config: ConfluenceConfig) -> tuple[str, ...]:
    return config.credentials.field_paths


def _login_hint(config: ConfluenceConfig) -> str:
    if isinstance(config.credentials, EmailApiToken):
        return (
            "Check the email and the API token (id.atlassian.com > Security > API tokens; a token can expire): "
            "the email must be the one of the account that created the token."
        )
    return "Check the token (Profile > Personal access tokens in Confluence); it may have expired or been revoked."


async def _authenticate(api: ApiClient, config: ConfluenceConfig) -> str:
    response = await api.call("GET", "/rest/api/user/current")
    if response.ok:
        user = api.require_json(response)
        if user.get("type") == "anonymous":
            raise api.failure(
                FailureType.AUTHENTICATION_FAILED,
                "Confluence did not accept the credentials and treated the request as anonymous",
                hint=_login_hint(config),
                fields=_credential_fields(config),
            )
        name = user.get("displayName") or user.get("publicName") or user.get("username") or user.get("accountId")
        return f"Signed in as {name}"
    if response.status in (404, 405):
        raise api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"{api.base_url} does not answer like a Confluence site (no /rest/api/user/current)",
            hint=(
                "Set base_url to the site: https://<site>.atlassian.net/wiki for Cloud, or the Data Center site's "
                "URL with its context path."
            ),
            fields=("base_url",),
        )
    raise _failure(api, response, config)


async def _access(api: ApiClient, config: ConfluenceConfig) -> str:
    space_key = config.space_key
    if space_key is None:
        return await _any_space(api, config)
    response = await api.call("GET", f"/rest/api/space/{quote(space_key, safe='~')}")
    if response.ok:
        space = api.require_json(response)
        name = space.get("name")
        return f"Space {space_key}" + (f" ({name})" if name else "") + " is readable"
    if response.status == 404:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"Confluence has no space with key {space_key} that this user can see",
            hint=(
                "Check the space key (case-sensitive; it is in the space's URL after /spaces/). Confluence answers "
                "the same when the space exists but the user may not view it: add the user (or a group of theirs) "
                "under Space settings > Permissions with View."
            ),
            fields=("space_key",),
        )
    raise _failure(api, response, config)


async def _any_space(api: ApiClient, config: ConfluenceConfig) -> str:
    """Without a space key every visible space is read: at least one must be."""
    response = await api.call("GET", "/rest/api/space", params={"limit": 1})
    if not response.ok:
        raise _failure(api, response, config)
    results = api.require_json(response).get("results")
    first = results[0] if isinstance(results, list) and results and isinstance(results[0], dict) else None
    if first is None:
        raise api.failure(
            FailureType.AUTHORIZATION_FAILED,
            "The account sees no space: with no space_key set there is nothing to read",
            hint=(
                "Give the user (or a group of theirs) View permission on the spaces to read (Space settings > "
                "Permissions), or set space_key to a space they can view."
            ),
            fields=(*_credential_fields(config), "space_key"),
        )
    key = api.clean(str(first.get("key") or "?"), 100)
    name = api.clean(str(first.get("name") or ""), 100)
    return (
        f"Spaces are visible to this user (the first: {key}"
        + (f", {name}" if name else "")
        + ("); no space_key set, so every space the user can view is read")
    )


def _failure(api: ApiClient, response: ApiResponse, config: ConfluenceConfig) -> ProbeFailure:
    reason = api.reason(response)
    if response.status == 401 and "scope does not match" in reason.lower():
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"The token is valid but lacks a scope this call needs ({reason})",
            hint=(
                f"Give the API token or OAuth app the scope {_SCOPES}. A scoped API token must also be used with "
                "base_url https://api.atlassian.com/ex/confluence/<cloud id>/wiki."
            ),
            fields=_credential_fields(config),
        )
    if response.status == 401:
        if "passwords is deprecated" in reason:
            message = (
                "Confluence refused the email and API token (Atlassian says 'basic authentication with passwords is "
                "deprecated' whenever they do not match)"
            )
        else:
            message = api.answered(response)
        return api.failure(
            FailureType.AUTHENTICATION_FAILED, message, hint=_login_hint(config), fields=_credential_fields(config)
        )
    if response.status == 403 and "x-authentication-denied-reason" in response.headers:
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            "Confluence locked the login after failed attempts: it asks for a CAPTCHA "
            f"({api.clean(response.headers['x-authentication-denied-reason'], 120)})",
            hint="Log in once in a browser as this user to clear the CAPTCHA, then check the credentials.",
            fields=_credential_fields(config),
        )
    if response.status == 403:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            api.answered(response),
            hint="The user must be allowed to use Confluence (global permission 'Can use') and to view the space.",
            fields=_credential_fields(config),
        )
    return api.status_failure(response, credential_fields=_credential_fields(config), resource_fields=("space_key",))
