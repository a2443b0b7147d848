"""The ``github`` connector: can this token read this repository?

Steps: ``resolve``, ``tcp``, ``tls`` against the API host (api.github.com, or a GitHub
Enterprise Server's ``/api/v3``), ``authenticate`` (``GET /user``; for a GitHub App
installation token, which has no user, ``GET /installation/repositories``) and ``access``
(``GET /repos/{owner}/{repo}``, then one commit, which needs the Contents permission).

GitHub's quirks handled here: a private repository the token cannot see is a 404, not a
403 (so the hint names the scopes); a used-up rate limit is a 403 with
``X-RateLimit-Remaining: 0`` (retryable, not a permission problem); an organisation with
SAML SSO answers 403 with ``X-GitHub-SSO`` until the token is authorised for it; a
fine-grained token lacking a permission gets 403 naming it in ``X-Accepted-GitHub-Permissions``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import EXPIRY_WARNING_DAYS, FailureType, ProbeFailure, WarningCode
from connectors.fields import PemCertificates
from connectors.saas import ApiClient, ApiResponse, BaseUrl, base_url_field, ca_cert_field, example_base_url, open_api

API_VERSION = "2022-11-28"

_REPOSITORY = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"

_REISSUE_HINT = (
    "The token is wrong, expired or revoked: create a new one (GitHub > Settings > Developer settings > "
    "Personal access tokens) and paste it whole."
)


def _repository(value: Any) -> Any:
    """``https://github.com/owner/repo(.git)`` → ``owner/repo``; anything else is left to the pattern."""
    if isinstance(value, str) and "://" in value:
        path = value.split("://", 1)[1].split("?")[0].split("#")[0]
        parts = [p for p in path.split("/")[1:] if p]
        if len(parts) >= 2:
            value = f"{parts[0]}/{parts[1]}"
    if isinstance(value, str) and value.endswith(".git"):
        value = value[:-4]
    return value


def _not_dots(value: str) -> str:
    if value.split("/")[-1] in (".", ".."):
        raise ValueError("must be owner/name")
    return value


class GitHubConfig(ConnectorConfig):
    """A GitHub token and the repository it must read."""

    model_config = ConfigDict(title="GitHub")

    token: Secret = Field(
        title="Token",
        description=(
            "A personal access token (classic or fine-grained), an OAuth token or a GitHub App installation "
            "token; never shown."
        ),
        examples=["github_pat_11ABCDEFG0123456789_example"],
    )
    repository: Annotated[str, BeforeValidator(_repository), AfterValidator(_not_dots)] = Field(
        pattern=_REPOSITORY,
        title="Repository",
        description="The repository to read, as owner/name (or its URL).",
        examples=["acme/handbook", "https://github.com/acme/handbook"],
    )
    base_url: BaseUrl = base_url_field(
        "https://api.github.com",
        provider="GitHub",
        examples=["https://api.github.com", "https://github.example.com/api/v3"],
        description=(
            "Root URL of the GitHub REST API: https://api.github.com, or https://<host>/api/v3 for GitHub "
            "Enterprise Server."
        ),
    )
    ca_cert: PemCertificates = ca_cert_field()


class GitHubConnector(Connector):
    name = "github"
    title = "GitHub"
    category = "saas"
    icon = "github"
    documentation_url = "https://docs.github.com/en/rest/authentication/authenticating-to-the-rest-api"
    config_model = GitHubConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {"token": "example-token", "repository": "acme/handbook", "base_url": example_base_url(host, port)}

    async def check(self, config: GitHubConfig, probe: Probe) -> None:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
        async with open_api(probe, config, "GitHub", headers=headers) as api:
            api.use_bearer(config.token.get_secret_value())
            async with probe.step("authenticate") as step:
                step.message, scopes = await _authenticate(api, config.token.get_secret_value())
            async with probe.step("access") as step:
                step.message = await _access(api, config.repository, scopes)


async def _authenticate(api: ApiClient, token: str) -> tuple[str, list[str] | None]:
    """The success message, and the classic token's scopes (None when GitHub does not say)."""
    if not token.startswith("ghs_"):
        response = await api.call("GET", "/user")
        if response.status in (404, 405):
            raise api.wrong_endpoint(response)
        if response.ok:
            user = api.require_json(response)
            _warn_expiry(api, response)
            header = response.headers.get("x-oauth-scopes")
            scopes = [s.strip() for s in header.split(",") if s.strip()] if header is not None else None
            said = f" (token scopes: {', '.join(scopes) or 'none'})" if scopes is not None else ""
            return f"Signed in as {user.get('login', 'an unnamed user')}{said}", scopes
        if not (response.status == 403 and "integration" in api.reason(response)):
            raise _failure(api, response)
        # "Resource not accessible by integration": an App's token without the ghs_ prefix.
    response = await api.call("GET", "/installation/repositories", params={"per_page": 1})
    if not response.ok:
        raise _failure(api, response)
    count = api.require_json(response).get("total_count")
    return f"GitHub App installation token with access to {count} repositories", None


async def _access(api: ApiClient, repository: str, scopes: list[str] | None) -> str:
    response = await api.call("GET", f"/repos/{repository}")
    if response.status == 404:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"GitHub cannot find the repository {repository}: it does not exist, or it is private and this token "
            "cannot see it",
            hint=_not_found_hint(scopes),
            fields=("repository", "token"),
        )
    if not response.ok:
        raise _failure(api, response, forbidden_hint="Give the token read access to this repository.")
    repo = api.require_json(response)
    name = repo.get("full_name") or repository
    visibility = "private" if repo.get("private") else "public"
    commits = await api.call("GET", f"/repos/{repository}/commits", params={"per_page": 1})
    if commits.status == 409:  # "Git Repository is empty."
        return f"Repository {name} ({visibility}) is readable; it is empty"
    if not commits.ok:
        raise _failure(
            api,
            commits,
            forbidden_hint=(
                "Give the token read access to the repository's contents: for a fine-grained token, Repository "
                "permissions > Contents: Read-only; for a GitHub App, the Contents permission, accepted by the "
                "installation."
            ),
        )
    return f"Repository {name} ({visibility}) and its contents are readable"


def _not_found_hint(scopes: list[str] | None) -> str:
    base = "Check the owner and name. If the repository is private, the token must be able to see it: "
    if scopes is not None and "repo" not in scopes:
        return (
            base + f"this classic token has the scopes {', '.join(scopes) or '(none)'} and lacks `repo`, which private "
            "repositories need. Add the `repo` scope (Settings > Developer settings > Personal access tokens)."
        )
    return base + (
        "a classic token needs the `repo` scope; a fine-grained token must list the repository under Repository "
        "access (and be approved by the organisation); a GitHub App must be installed on it."
    )


def _failure(api: ApiClient, response: ApiResponse, *, forbidden_hint: str | None = None) -> ProbeFailure:
    status = response.status
    headers = response.headers
    if status in (403, 429) and (
        headers.get("x-ratelimit-remaining") == "0" or "rate limit" in api.reason(response).lower()
    ):
        return api.failure(
            FailureType.RATE_LIMITED,
            f"GitHub's API rate limit for these credentials is used up{_reset(headers.get('x-ratelimit-reset'))}",
            hint=(
                "Try again after the reset, or use a token of an account (or App) that is not shared with other "
                "clients."
            ),
            retry_after_s=_seconds_to(headers.get("x-ratelimit-reset")),
        )
    if status == 401:
        return api.failure(
            FailureType.AUTHENTICATION_FAILED, api.answered(response), hint=_REISSUE_HINT, fields=("token",)
        )
    if status == 403 and "x-github-sso" in headers:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"{api.answered(response)}",
            hint=(
                "The organisation uses SAML single sign-on: authorise the token for it (Settings > Developer settings "
                "> Personal access tokens > Configure SSO > Authorize)."
            ),
            fields=("token",),
        )
    if status == 403:
        needed = headers.get("x-accepted-github-permissions")
        message = api.answered(response) + (f" (it needs the permission {needed})" if needed else "")
        return api.failure(FailureType.AUTHORIZATION_FAILED, message, hint=forbidden_hint, fields=("token",))
    return api.status_failure(response, credential_fields=("token",), resource_fields=("repository",))


# "2026-12-10 09:00:00 UTC" or "2026-12-10 09:00:00 -0800", as GitHub sends it.
_EXPIRATION_FORMATS = ("%Y-%m-%d %H:%M:%S %Z", "%Y-%m-%d %H:%M:%S %z")


def _warn_expiry(api: ApiClient, response: ApiResponse) -> None:
    """A TOKEN_EXPIRING warning from GitHub's ``github-authentication-token-expiration`` header."""
    value = response.headers.get("github-authentication-token-expiration", "")[:64].strip()
    for form in _EXPIRATION_FORMATS:
        try:
            when = dt.datetime.strptime(value, form)
        except ValueError:
            continue
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        left = when - dt.datetime.now(dt.UTC)
        if left <= dt.timedelta(days=EXPIRY_WARNING_DAYS):
            api.probe.warn(
                WarningCode.TOKEN_EXPIRING,
                f"The GitHub token expires on {when.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
                f" (in {max(left.days, 0)} days)",
                hint="Make a new token (or extend it) in GitHub's developer settings before then, and update this "
                "source.",
            )
        return


def _seconds_to(reset: str | None) -> float | None:
    if not reset or not re.fullmatch(r"\d{1,12}", reset):
        return None
    return max(0.0, int(reset) - dt.datetime.now(dt.UTC).timestamp())


def _reset(value: str | None) -> str:
    if not value or not re.fullmatch(r"\d{1,12}", value):
        return ""
    return f" until {dt.datetime.fromtimestamp(int(value), dt.UTC):%H:%M} UTC"
