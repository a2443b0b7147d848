"""The ``jira`` connector: can these credentials read this Jira project and its issues?

Steps: ``resolve``, ``tcp``, ``tls`` against the site's host, ``authenticate`` (``GET
/rest/api/{3|2}/myself``) and ``access`` (``GET /rest/api/{3|2}/project/{key}``, then a JQL
search for one issue of the project). Works with Jira Cloud (``https://<site>.atlassian.net``,
the account's email + an API token over HTTP Basic, REST API v3, the enhanced search
``/rest/api/3/search/jql``: Atlassian removed ``/rest/api/3/search``) and Data Center /
Server (the site URL, a personal access token as bearer, REST API v2, ``/rest/api/2/search``).
A project whose search finds no issue is a warning (``empty_location``), not a failure.

Jira's answers handled: its error body ``{"errorMessages": [...], "errors": {...}}``
(read bounded: the first few messages, each cut); 401 (a Cloud login with the account's
password instead of an API token looks the same); a scoped API token without the scope
(401 "scope does not match"); 403 for a missing permission; 404 "No project could be found
with key" (also what a user without Browse Projects on it gets); after too many failed
logins ``X-Seraph-LoginReason: AUTHENTICATION_DENIED`` with ``X-Authentication-Denied-Reason:
CAPTCHA_CHALLENGE`` (a CAPTCHA must be solved in a browser); 429 with Retry-After and 5xx.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import AfterValidator, ConfigDict, Field, model_validator

from connectors.atlassian import AccessToken, EmailAndApiToken, sign_in
from connectors.base import Connector, ConnectorConfig, Probe
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import PemCertificates
from connectors.saas import (
    ApiClient,
    ApiResponse,
    BaseUrl,
    base_url_field,
    ca_cert_field,
    example_base_url,
    may_quote,
    open_api,
)
from connectors.transport import status_text

# Jira's default key pattern is [A-Z][A-Z0-9]+; an admin may allow lower case and "_".
_PROJECT_KEY = r"^[A-Za-z][A-Za-z0-9_]{0,99}$"

_MAX_ERROR_MESSAGES = 3
"""Entries of a Jira error body's ``errorMessages`` (and ``errors``) quoted in a message."""

_MAX_NAME = 120
"""Characters of a name Jira sends (a user's, a project's) kept in a step message."""

_BROWSE_HINT = (
    "The user needs the Browse Projects permission on the project: a Jira admin adds the user (or a group of "
    "theirs) to a role the project's permission scheme grants it (Project settings > Access, or > Permissions)."
)

_SCOPES = "read:jira-work and read:jira-user (classic scopes)"


def _site(value: str) -> str:
    """A Jira Cloud site is its origin: the REST API lives at the root whatever page was pasted
    (``/jira/software/projects/ENG/boards/1``)."""
    url = httpx.URL(value)
    if url.host.endswith(".atlassian.net"):
        return str(url.copy_with(raw_path=b"")).rstrip("/")
    return value


class CloudCredentials(EmailAndApiToken):
    model_config = ConfigDict(title="Jira Cloud: email and API token")
    type: Literal["cloud"] = Field(
        title="Type", description="Jira Cloud: your Atlassian account email and an API token (REST API v3)."
    )


class DataCenterCredentials(AccessToken):
    model_config = ConfigDict(title="Jira Data Center or Server: personal access token")
    type: Literal["data_center"] = Field(
        title="Type", description="Jira Data Center or Server: a personal access token, sent as bearer (REST API v2)."
    )


Credentials = Annotated[CloudCredentials | DataCenterCredentials, Field(discriminator="type")]


class JiraConfig(ConnectorConfig):
    """A Jira site, credentials, and the project they must read."""

    model_config = ConfigDict(title="Jira")

    base_url: Annotated[BaseUrl, AfterValidator(_site)] = base_url_field(
        None,
        provider="Jira",
        examples=["https://acme.atlassian.net", "https://jira.example.com"],
        description=(
            "The Jira site: https://<site>.atlassian.net for Cloud, the site's URL (with its context path, if any) "
            "for Data Center or Server."
        ),
    )
    credentials: Credentials = Field(
        title="Credentials",
        description="Email + API token for Cloud; a personal access token for Data Center or Server.",
        examples=[{"type": "cloud", "email": "reader@example.com", "api_token": "ATATT3xFfGF0example"}],
    )
    project_key: str = Field(
        pattern=_PROJECT_KEY,
        title="Project key",
        description="The key of the project to read: the prefix of its issue keys (ENG in ENG-123).",
        examples=["ENG"],
    )
    ca_cert: PemCertificates = ca_cert_field()

    @model_validator(mode="after")
    def _cloud_site_takes_cloud_credentials(self) -> JiraConfig:
        # Jira Cloud has no personal access tokens: a bearer token there could only be refused.
        if not self.cloud and httpx.URL(self.base_url).host.endswith(".atlassian.net"):
            raise ValueError(
                "a Jira Cloud site (*.atlassian.net) takes the cloud credentials: the account's email and an API token"
            )
        return self

    @property
    def cloud(self) -> bool:
        return isinstance(self.credentials, CloudCredentials)

    @property
    def api(self) -> str:
        """The REST API's root path: v3 on Cloud, v2 on Data Center (which has no v3)."""
        return "/rest/api/3" if self.cloud else "/rest/api/2"

    @property
    def credential_fields(self) -> tuple[str, ...]:
        return self.credentials.field_paths


class JiraConnector(Connector):
    name = "jira"
    title = "Jira"
    category = "saas"
    icon = "jira"
    documentation_url = "https://developer.atlassian.com/cloud/jira/platform/basic-auth-for-rest-apis/"
    config_model = JiraConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "base_url": example_base_url(host, port),
            "credentials": {"type": "cloud", "email": "reader@example.com", "api_token": "example-api-token"},
            "project_key": "ENG",
        }

    async def check(self, config: JiraConfig, probe: Probe) -> None:
        async with open_api(probe, config, "Jira") as api:
            sign_in(api, config.credentials)
            async with probe.step("authenticate") as step:
                step.message = await _authenticate(api, config)
            async with probe.step("access") as step:
                step.message = await _access(api, config)


async def _authenticate(api: ApiClient, config: JiraConfig) -> str:
    response = await api.call("GET", f"{config.api}/myself")
    if response.ok:
        user = api.require_json(response)
        name = next((user[k] for k in ("displayName", "name", "accountId") if isinstance(user.get(k), str)), None)
        return f"Signed in as {api.clean(name, _MAX_NAME)}" if name else "Signed in"
    if response.status in (404, 405):
        raise _not_jira(api, response, config)
    raise _failure(api, response, config)


async def _access(api: ApiClient, config: JiraConfig) -> str:
    key = config.project_key
    response = await api.call("GET", f"{config.api}/project/{key}")
    if response.status == 404:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"Jira has no project with key {key} that this user can see" + _said(api, response),
            hint=(
                "Check the project key (the prefix of its issue keys, ENG in ENG-123). Jira answers the same when the "
                "project exists but the user may not browse it. " + _BROWSE_HINT
            ),
            fields=("project_key",),
        )
    if not response.ok:
        raise _failure(api, response, config)
    project = api.require_json(response)
    name = project.get("name")
    label = f"Project {key}" + (f" ({api.clean(name, _MAX_NAME)})" if isinstance(name, str) and name else "")

    # One issue is enough to prove the issues are readable, not just the project's metadata.
    params: dict[str, str | int] = {"jql": f'project = "{key}"', "maxResults": 1}
    if config.cloud:
        search = await api.call("GET", "/rest/api/3/search/jql", params=params)  # ids only by default
    else:
        search = await api.call("GET", "/rest/api/2/search", params=params | {"fields": "summary"})
    if search.status == 400:
        raise api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"{label} is visible, but Jira refused to search its issues" + _said(api, search),
            hint="The project may be archived (restore it under Settings > Projects > Archived), or the user may "
            "see the project but not its issues. " + _BROWSE_HINT,
            fields=("project_key", *config.credential_fields),
        )
    if not search.ok:
        raise _failure(api, search, config)
    issues = api.require_json(search).get("issues")
    if not isinstance(issues, list):
        raise api.not_json(search)
    if not issues:
        api.probe.warn(
            WarningCode.EMPTY_LOCATION,
            f"Jira shows this user no issue in project {key}: a sync would find nothing",
            hint=(
                "Check that the project has issues, and that its issue security scheme lets this user see them. "
                + _BROWSE_HINT
            ),
        )
        return f"{label} is readable; it has no issue this user can see"
    return f"{label} and its issues are readable"


def _reason(api: ApiClient, response: ApiResponse) -> str:
    """Jira's own words: the first entries of ``errorMessages`` and ``errors``, cleaned; else
    what :meth:`ApiClient.reason` finds ("" when the body may not be quoted)."""
    data = response.data
    if not may_quote(response) or not isinstance(data, dict):
        return api.reason(response)
    texts: list[str] = []
    messages = data.get("errorMessages")
    if isinstance(messages, list):
        texts += [m for m in messages[:_MAX_ERROR_MESSAGES] if isinstance(m, str)]
    errors = data.get("errors")
    if isinstance(errors, dict):
        pairs = itertools.islice(errors.items(), _MAX_ERROR_MESSAGES)
        texts += [f"{field}: {text}" for field, text in pairs if isinstance(text, str)]
    return api.clean("; ".join(texts)) if texts else api.reason(response)


def _said(api: ApiClient, response: ApiResponse) -> str:
    reason = _reason(api, response)
    return f" ({reason})" if reason else ""


def _answered(api: ApiClient, response: ApiResponse) -> str:
    reason = _reason(api, response)
    return f"Jira answered {status_text(response.status)}" + (f": {reason}" if reason else "")


def _login_hint(config: JiraConfig) -> str:
    if config.cloud:
        return (
            "Jira Cloud needs the email of the Atlassian account and an API token of that account "
            "(id.atlassian.com > Security > API tokens; a token can expire), not the account's password."
        )
    return (
        "Check the personal access token (Profile > Personal Access Tokens in Jira); it may have expired or been "
        "revoked."
    )


def _not_jira(api: ApiClient, response: ApiResponse, config: JiraConfig) -> ProbeFailure:
    if config.cloud:
        hint = (
            "Set base_url to the site, https://<site>.atlassian.net. For Jira Data Center or Server (no REST API v3), "
            "choose the data_center credentials with a personal access token."
        )
    else:
        hint = "Set base_url to the Jira site's URL, with its context path if it has one (https://host/jira)."
    return api.failure(
        FailureType.UNEXPECTED_RESPONSE,
        f"{api.base_url} does not answer like a Jira site: {status_text(response.status)} for {config.api}/myself",
        hint=hint,
        fields=("base_url", "credentials.type"),
    )


def _captcha(response: ApiResponse) -> bool:
    """Jira's login lock after failed attempts: the request was refused without checking the password."""
    reason = response.headers.get("x-seraph-loginreason", "")[:100].upper()
    denied = response.headers.get("x-authentication-denied-reason", "")[:200].upper()
    return "AUTHENTICATION_DENIED" in reason or "CAPTCHA" in denied


def _failure(api: ApiClient, response: ApiResponse, config: JiraConfig) -> ProbeFailure:
    fields = config.credential_fields
    if response.status in (401, 403) and _captcha(response):
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            "Jira locked this user's login after failed attempts and asks for a CAPTCHA: it refused the request "
            "without checking the credentials",
            hint=(
                "Log in once to Jira in a browser as this user and answer the CAPTCHA (or ask an admin to reset the "
                "failed login count), then check the credentials: wrong ones lock it again."
            ),
            fields=fields,
        )
    if response.status == 401 and "scope does not match" in _reason(api, response).lower():
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"The token is valid but lacks a scope this call needs{_said(api, response)}",
            hint=(
                f"Give the API token or OAuth app the scopes {_SCOPES}. A scoped API token must also be used with "
                "base_url https://api.atlassian.com/ex/jira/<cloud id>."
            ),
            fields=fields,
        )
    if response.status == 401:
        return api.failure(
            FailureType.AUTHENTICATION_FAILED, _answered(api, response), hint=_login_hint(config), fields=fields
        )
    if response.status == 403:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            _answered(api, response),
            hint="The user must be allowed to use Jira (an application access group) and to browse the project. "
            + _BROWSE_HINT,
            fields=fields,
        )
    if response.status in (404, 410):
        return api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            _answered(api, response) + f" for {response.url.path}",
            hint="Check base_url: it must be the Jira site's root (with its context path, if any).",
            fields=("base_url",),
        )
    return api.status_failure(response, credential_fields=fields, resource_fields=("project_key",))
