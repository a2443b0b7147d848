"""The github connector against the local GitHub REST API stand-in (tests/servers/saas.py)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from connectors.base import CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.registry import get_connector
from tests.helpers import failure_type, step
from tests.servers.saas import (
    GITHUB_EMPTY_REPO,
    GITHUB_RATE_LIMITED_REPO,
    GITHUB_REPO,
    GITHUB_SSO_REPO,
    SaasServer,
    assert_no_secret,
    run,
)


def config(server: SaasServer, **override: Any) -> dict[str, Any]:
    return {
        "token": server.token,
        "repository": GITHUB_REPO,
        "base_url": server.url("/github"),
        "ca_cert": server.ca_pem,
        **override,
    }


async def test_a_readable_repository_succeeds_and_names_the_user_and_scopes(saas_server: SaasServer) -> None:
    result = await run("github", config(saas_server))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "authenticate").message == "Signed in as octo-reader (token scopes: repo, read:org)"
    assert step(result, "access").message == f"Repository {GITHUB_REPO} (private) and its contents are readable"
    sent = saas_server.requests[-1]
    assert sent.path == f"/github/repos/{GITHUB_REPO}/commits?per_page=1"
    assert sent.headers["accept"] == "application/vnd.github+json"
    assert sent.headers["x-github-api-version"] == "2022-11-28"
    assert_no_secret(result, saas_server)


async def test_an_installation_token_is_checked_without_a_user(saas_server: SaasServer) -> None:
    result = await run("github", config(saas_server, token=saas_server.installation_token))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "authenticate").message == "GitHub App installation token with access to 2 repositories"
    assert all(r.path != "/github/user" for r in saas_server.requests)


async def test_an_empty_repository_is_readable_and_said_to_be_empty(saas_server: SaasServer) -> None:
    result = await run("github", config(saas_server, repository=GITHUB_EMPTY_REPO))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert (step(result, "access").message or "").endswith("it is empty")


async def test_bad_credentials_are_authentication_failed(saas_server: SaasServer) -> None:
    wrong = "ghp_" + saas_server.token[::-1]
    result = await run("github", config(saas_server, token=wrong))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "GitHub answered 401 Unauthorized: Bad credentials"
    assert step(result, "authenticate").status == StepStatus.FAILED
    assert wrong not in str(asdict(result))


async def test_a_token_without_the_contents_permission_is_authorization_failed_naming_it(
    saas_server: SaasServer,
) -> None:
    result = await run("github", config(saas_server, token=saas_server.limited_token))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == (
        "GitHub answered 403 Forbidden: Resource not accessible by personal access token "
        "(it needs the permission contents=read)"
    )
    assert "Contents: Read-only" in result.failure.hint
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_missing_repository_is_not_found_with_a_hint_about_the_repo_scope(saas_server: SaasServer) -> None:
    result = await run("github", config(saas_server, repository="acme/nope"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert result.failure.message == (
        "GitHub cannot find the repository acme/nope: it does not exist, or it is private and this token cannot see it"
    )
    assert "`repo` scope" in result.failure.hint
    assert result.failure.fields == ["repository", "token"]


async def test_a_private_repository_seen_with_a_public_repo_token_names_the_missing_scope(
    saas_server: SaasServer,
) -> None:
    result = await run("github", config(saas_server, token=saas_server.public_token))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert "has the scopes public_repo and lacks `repo`" in result.failure.hint


async def test_a_used_up_rate_limit_is_retryable_not_a_permission_problem(saas_server: SaasServer) -> None:
    result = await run("github", config(saas_server, repository=GITHUB_RATE_LIMITED_REPO))
    assert failure_type(result) == FailureType.RATE_LIMITED
    assert result.failure is not None and result.failure.retryable
    assert result.failure.retry_after_s is not None and 0 <= result.failure.retry_after_s <= 3600
    assert result.failure.message.startswith("GitHub's API rate limit for these credentials is used up until ")


async def test_an_organisation_with_saml_sso_says_to_authorise_the_token(saas_server: SaasServer) -> None:
    result = await run("github", config(saas_server, repository=GITHUB_SSO_REPO))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None and "Configure SSO" in result.failure.hint


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("acme/handbook", "acme/handbook"),
        ("https://github.com/acme/handbook", "acme/handbook"),
        ("https://github.com/acme/handbook.git", "acme/handbook"),
        ("https://github.com/acme/handbook/tree/main/docs", "acme/handbook"),
    ],
)
def test_a_repository_is_accepted_as_owner_name_or_url(given: str, expected: str) -> None:
    parsed = get_connector("github").parse_config({"token": "t", "repository": given})
    assert parsed.repository == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("given", ["handbook", "acme/handbook/extra", "acme/..", "-acme/x", "acme/hand book"])
def test_something_that_is_not_owner_name_is_rejected(given: str) -> None:
    with pytest.raises(InvalidConfiguration) as info:
        get_connector("github").parse_config({"token": "t", "repository": given})
    assert [e.field for e in info.value.errors] == ["repository"]


async def test_a_token_that_expires_within_two_weeks_is_a_warning(saas_server: SaasServer) -> None:
    result = await run("github", config(saas_server, token=saas_server.public_token))
    assert [w.code for w in result.warnings] == [WarningCode.TOKEN_EXPIRING], result
    assert "in 3 days" in result.warnings[0].message


async def test_a_token_without_an_expiration_is_not_warned_about(saas_server: SaasServer) -> None:
    result = await run("github", config(saas_server))
    assert result.status == CheckStatus.SUCCEEDED and result.warnings == []
