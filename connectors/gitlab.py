"""The ``gitlab`` connector: can this access token read this project's repository?

Steps: ``resolve``, ``tcp``, ``tls`` against the instance (gitlab.com or a self-managed one),
``authenticate`` (``GET /api/v4/personal_access_tokens/self``: the token is live, its scopes and
its expiry) and ``access`` (``GET /api/v4/projects/:id``, then one entry of the repository tree
on the branch, or on the default branch).

GitLab's quirks handled here: the token goes in ``PRIVATE-TOKEN``, a header httpx does not drop
on a redirect to another host, so a request hook sets it for the instance's origin only; a
project the token cannot see is a 404, like one that does not exist; a revoked or expired token
is a 401 with an OAuth ``invalid_token`` body; a scope missing for an endpoint is a 403
``insufficient_scope`` naming the scopes that would do; a rate limit may say when it resets in
``RateLimit-Reset`` (a Unix time) rather than ``Retry-After``.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ClassVar

import httpx
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import EXPIRY_WARNING_DAYS, FailureType, ProbeFailure, WarningCode
from connectors.fields import PemCertificates
from connectors.git import BRANCH_PATTERN, check_branch
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
from connectors.transport import MAX_RETRY_AFTER, retry_after_seconds

API = "/api/v4"

MAX_SCOPES = 30
"""Scopes of a token read from GitLab's answer; a longer list is cut (a hostile server)."""

# A numeric id, or a namespace path: segments of letters, digits, _, - and . (not leading).
_PROJECT = r"^(?:[1-9][0-9]{0,18}|[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)+)$"

_REISSUE_HINT = (
    "The token is wrong, expired or revoked: create a new one (User settings > Access tokens, or the project's "
    "or group's Settings > Access tokens) with the read_api and read_repository scopes, and paste it whole."
)


def _project(value: Any) -> Any:
    """A project URL (``https://gitlab.com/group/sub/project(.git)``, ``.../-/tree/main``) → its path."""
    if isinstance(value, str) and "://" in value:
        path = value.split("://", 1)[1].split("?")[0].split("#")[0].split("/-/")[0]
        value = "/".join(p for p in path.split("/")[1:] if p)
    if isinstance(value, str) and value.endswith(".git"):
        value = value[:-4]
    return value


def _instance_root(value: str) -> str:
    """``https://gitlab.example.com/api/v4`` → ``https://gitlab.example.com``: the API path is added here."""
    return value[: -len(API)] if value.endswith(API) else value


class GitLabConfig(ConnectorConfig):
    """A GitLab access token and the project whose repository it must read."""

    model_config = ConfigDict(title="GitLab")

    base_url: Annotated[BaseUrl, AfterValidator(_instance_root)] = base_url_field(
        "https://gitlab.com",
        provider="GitLab",
        examples=["https://gitlab.com", "https://gitlab.example.com"],
        description=(
            "Root URL of the GitLab instance: https://gitlab.com, or your self-managed one (with its relative "
            "path, if any). The API is under /api/v4 of it."
        ),
    )
    ca_cert: PemCertificates = ca_cert_field()
    token: Secret = Field(
        title="Access token",
        description=(
            "A personal, project or group access token with the read_api (or api) and read_repository scopes; "
            "sent as PRIVATE-TOKEN, never shown."
        ),
        examples=["glpat-example0123456789"],
    )
    project: Annotated[str, BeforeValidator(_project)] = Field(
        max_length=1000,
        pattern=_PROJECT,
        title="Project",
        description="The project: its numeric ID, or its full path (group/subgroup/project), or its URL.",
        examples=["acme/docs/handbook", "278964", "https://gitlab.com/acme/docs/handbook"],
    )
    branch: Annotated[str | None, EmptyIsNone, AfterValidator(check_branch)] = Field(
        None,
        max_length=255,
        pattern=BRANCH_PATTERN,
        title="Branch",
        description="The branch to read; empty for the project's default branch.",
        examples=["main"],
    )


class GitLabConnector(Connector):
    name = "gitlab"
    title = "GitLab"
    category = "saas"
    icon = "gitlab"
    documentation_url = "https://docs.gitlab.com/api/rest/authentication/"
    config_model = GitLabConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {"token": "example-token", "project": "acme/handbook", "base_url": example_base_url(host, port)}

    async def check(self, config: GitLabConfig, probe: Probe) -> None:
        token = config.token.get_secret_value()
        async with open_api(probe, config, "GitLab") as api:
            api.add_secret(token)
            api.http.event_hooks = {"request": [_token_hook(config.base_url, token)]}
            async with probe.step("authenticate") as step:
                step.message = await _authenticate(api)
            async with probe.step("access") as step:
                step.message = await _access(api, config)


def _token_hook(base_url: str, token: str) -> Callable[[httpx.Request], Awaitable[None]]:
    """A hook run before every request, redirects included: the token for the instance's origin
    only (httpx drops Authorization on a redirect elsewhere, but not PRIVATE-TOKEN)."""
    origin = httpx.URL(base_url)

    async def hook(request: httpx.Request) -> None:
        same = (request.url.scheme, request.url.raw_host.lower(), request.url.port) == (
            origin.scheme,
            origin.raw_host.lower(),
            origin.port,
        )
        if same:
            request.headers["PRIVATE-TOKEN"] = token
        else:
            request.headers.pop("PRIVATE-TOKEN", None)

    return hook


# --- authenticate ----------------------------------------------------------------------


async def _authenticate(api: ApiClient) -> str:
    response = await api.call("GET", f"{API}/personal_access_tokens/self")
    if response.status in (404, 405):
        raise api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"GitLab answered {response.status} for {API}/personal_access_tokens/self, which every GitLab from 15.5 "
            "has: base_url does not point at a GitLab instance (or it is older than 15.5)",
            hint="Check base_url: it must be the root of the GitLab instance (https://gitlab.com), not a project URL.",
            fields=("base_url",),
        )
    if not response.ok:
        raise _failure(api, response)
    data = api.require_json(response)
    if data.get("revoked") is True or data.get("active") is False:
        raise api.failure(
            FailureType.AUTHENTICATION_FAILED,
            "GitLab says this access token is revoked or no longer active",
            hint=_REISSUE_HINT,
            fields=("token",),
        )
    raw = data.get("scopes")
    scopes = [api.clean(s, limit=40) for s in raw[:MAX_SCOPES] if isinstance(s, str)] if isinstance(raw, list) else []
    said = api.clean(", ".join(scopes)) or "(none)"
    missing = _missing_scopes(scopes)
    if missing:
        raise api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"The GitLab token has the scopes {said} and lacks {' and '.join(missing)}",
            hint=(
                f"Create a token with the scopes {', '.join(missing)} (or api): read_api reads the project through "
                "the API, read_repository its files."
            ),
            fields=("token",),
        )
    expires = _warn_expiry(api, data.get("expires_at"))
    name = api.clean(data.get("name") if isinstance(data.get("name"), str) else "", limit=100)
    return f"Access token {name!r} with the scopes {said}" + (f", expires {expires}" if expires else "")


def _missing_scopes(scopes: list[str]) -> list[str]:
    """The scopes to add, all at once: ``api`` alone does both reads."""
    if "api" in scopes:
        return []
    return [scope for scope in ("read_api", "read_repository") if scope not in scopes]


def _warn_expiry(api: ApiClient, value: Any) -> str | None:
    """The expiry date as GitLab says it (``2026-12-10``), and a TOKEN_EXPIRING warning when it is near."""
    if not isinstance(value, str):
        return None
    try:
        day = dt.date.fromisoformat(value[:10])
    except ValueError:
        return None
    # GitLab's token is no longer valid from 00:00 UTC of its expiry date.
    left = dt.datetime.combine(day, dt.time(), dt.UTC) - dt.datetime.now(dt.UTC)
    if left <= dt.timedelta(days=EXPIRY_WARNING_DAYS):
        api.probe.warn(
            WarningCode.TOKEN_EXPIRING,
            f"The GitLab access token expires on {day:%Y-%m-%d} (in {max(left.days, 0)} days)",
            hint="Rotate the token (or create a new one) in GitLab's access token settings before then, and update "
            "this source.",
        )
    return f"{day:%Y-%m-%d}"


# --- access ----------------------------------------------------------------------------


async def _access(api: ApiClient, config: GitLabConfig) -> str:
    project_id = urllib.parse.quote(config.project, safe="")
    response = await api.call("GET", f"{API}/projects/{project_id}")
    if response.status == 404:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"GitLab cannot find the project {config.project}: it does not exist, or this token cannot see it "
            "(GitLab answers 404 for both)",
            hint=(
                "Check the project's full path (group/subgroup/project) or numeric ID. If it is private or internal, "
                "the token's user (or the project or group token's bot) must be a member of it, with the Reporter "
                "role or higher."
            ),
            fields=("project",),
        )
    if not response.ok:
        raise _failure(api, response, fields=("project",))
    project = api.require_json(response)
    name = api.clean(project.get("path_with_namespace") if isinstance(project.get("path_with_namespace"), str) else "")
    name = name or config.project
    visibility = api.clean(project.get("visibility") if isinstance(project.get("visibility"), str) else "", limit=20)
    about = f"Project {name}" + (f" ({visibility})" if visibility else "")
    default = project.get("default_branch")
    branch = config.branch or (api.clean(default, limit=255) if isinstance(default, str) else "")
    if project.get("empty_repo") is True or not branch:
        _warn_empty(api, name)
        return f"{about} is readable; its repository is empty"
    tree = await api.call("GET", f"{API}/projects/{project_id}/repository/tree", params={"ref": branch, "per_page": 1})
    if tree.status == 404:
        said = "the branch" if config.branch else "the default branch"
        raise api.failure(
            FailureType.NOT_FOUND,
            f"GitLab cannot find {said} {branch!r} in the project {name} ({api.answered(tree)})",
            hint="Check the branch name (it is case-sensitive), or leave branch empty for the default branch.",
            fields=("branch",) if config.branch else ("project",),
        )
    if not tree.ok:
        raise _failure(
            api,
            tree,
            forbidden_hint=(
                "The token can see the project but not its repository: give its user the Reporter role or higher, "
                "and check that the repository is not disabled (Settings > General > Visibility)."
            ),
            fields=("project",),
        )
    if isinstance(tree.data, list) and not tree.data:
        _warn_empty(api, f"{name} (branch {branch})")
        return f"{about} is readable; branch {branch} has no files"
    if not isinstance(tree.data, list):
        raise api.not_json(tree)
    return f"{about} and its repository on branch {branch} are readable"


def _warn_empty(api: ApiClient, what: str) -> None:
    api.probe.warn(
        WarningCode.EMPTY_LOCATION,
        f"The GitLab repository of {what} is empty: a sync would find nothing",
        hint="Check the project and branch, or push the content first.",
    )


# --- failures --------------------------------------------------------------------------


def _failure(
    api: ApiClient, response: ApiResponse, *, forbidden_hint: str | None = None, fields: tuple[str, ...] = ()
) -> ProbeFailure:
    """GitLab's own error bodies first, then the generic meaning of the status."""
    data = response.data if isinstance(response.data, dict) else {}
    if response.status == 401:
        reason = api.reason(response)
        # A wrong token's body is just "401 Unauthorized"; a revoked or expired one's says which.
        said = f": {reason}" if reason and not reason.startswith("401") else ""
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            f"GitLab refused the access token (401 Unauthorized){said}",
            hint=_REISSUE_HINT,
            fields=("token",),
        )
    if response.status == 403 and data.get("error") == "insufficient_scope":
        wanted = data.get("scope")
        wanted = api.clean(wanted, limit=200) if isinstance(wanted, str) else ""
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            api.answered(response) + (f" (it needs one of the scopes: {', '.join(wanted.split())})" if wanted else ""),
            hint="Create a token with the read_api (or api) and read_repository scopes.",
            fields=("token",),
        )
    if response.status == 429:
        return _rate_limited(api, response)
    return api.status_failure(
        response, forbidden_hint=forbidden_hint, credential_fields=("token",), resource_fields=fields
    )


def _rate_limited(api: ApiClient, response: ApiResponse) -> ProbeFailure:
    """A 429: Retry-After when GitLab sent it, else its ``RateLimit-Reset`` Unix time."""
    if retry_after_seconds(response.headers) is not None:
        return api.rate_limited(response)
    reset = response.headers.get("ratelimit-reset", "")[:16].strip()
    wait = None
    if re.fullmatch(r"\d{1,12}", reset):
        wait = min(max(0.0, int(reset) - dt.datetime.now(dt.UTC).timestamp()), MAX_RETRY_AFTER)
    return api.failure(
        FailureType.RATE_LIMITED,
        "GitLab is rate limiting these credentials (429 Too Many Requests)"
        + (f" until {dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wait):%H:%M:%S} UTC" if wait is not None else ""),
        hint="Try again after the reset; if it persists, other clients may be using up the same token's quota.",
        retry_after_s=wait,
    )
