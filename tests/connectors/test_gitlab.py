"""The gitlab connector against the local GitLab REST API stand-in (tests/servers/gitlab.py)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from connectors.base import CheckResult, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.registry import get_connector
from connectors.saas import MAX_REASON
from tests.helpers import failure, step
from tests.servers.gitlab import (
    BUSY_PROJECT,
    DOWN_PROJECT,
    EMPTY_PROJECT,
    GUEST_PROJECT,
    HOSTILE_PROJECT,
    HUGE_PROJECT,
    MOVED_PROJECT,
    PROJECT,
    PROJECT_ID,
    SCOPED_PROJECT,
    GitLabServer,
)
from tests.servers.saas import run


def assert_no_secret(result: CheckResult, server: GitLabServer) -> None:
    text = json.dumps(asdict(result), default=str)
    assert not [s for s in server.all_secrets() if s in text], "a token leaked into the result"


async def test_a_readable_project_by_path_succeeds_naming_the_token_scopes_and_branch(
    gitlab_server: GitLabServer,
) -> None:
    result = await run("gitlab", gitlab_server.config())
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert (
        step(result, "authenticate").message == "Access token 'sourcecheck' with the scopes read_api, read_repository"
    )
    assert (
        step(result, "access").message == f"Project {PROJECT} (private) and its repository on branch main are readable"
    )
    assert result.warnings == []
    project, tree = gitlab_server.requests[-2:]
    # The path is one percent-encoded segment, as GitLab's API wants it; the token goes in PRIVATE-TOKEN only.
    assert project.path == "/gitlab/api/v4/projects/acme%2Fdocs%2Fhandbook"
    assert tree.path == "/gitlab/api/v4/projects/acme%2Fdocs%2Fhandbook/repository/tree?ref=main&per_page=1"
    assert tree.headers["private-token"] == gitlab_server.token and "authorization" not in tree.headers
    assert_no_secret(result, gitlab_server)


async def test_a_project_by_numeric_id_and_a_named_branch_succeeds(gitlab_server: GitLabServer) -> None:
    result = await run("gitlab", gitlab_server.config(project=str(PROJECT_ID), branch="release"))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert (
        step(result, "access").message
        == f"Project {PROJECT} (private) and its repository on branch release are readable"
    )
    assert gitlab_server.requests[-1].path.endswith(f"/projects/{PROJECT_ID}/repository/tree?ref=release&per_page=1")


async def test_a_token_with_the_api_scope_alone_is_enough(gitlab_server: GitLabServer) -> None:
    result = await run("gitlab", gitlab_server.config(token=gitlab_server.api_token))
    assert result.status == CheckStatus.SUCCEEDED, result.failure


async def test_an_instance_url_given_with_its_api_path_is_read_as_the_root(gitlab_server: GitLabServer) -> None:
    result = await run("gitlab", gitlab_server.config(base_url=gitlab_server.url("/gitlab/api/v4")))
    assert result.status == CheckStatus.SUCCEEDED, result.failure


async def test_a_wrong_token_is_authentication_failed(gitlab_server: GitLabServer) -> None:
    wrong = "glpat-" + gitlab_server.token[::-1]
    result = await run("gitlab", gitlab_server.config(token=wrong))
    found = failure(result)
    assert (found.type, found.fields) == (FailureType.AUTHENTICATION_FAILED, ["token"])
    assert found.message == "GitLab refused the access token (401 Unauthorized)"
    assert step(result, "authenticate").status == StepStatus.FAILED
    assert step(result, "access").status == StepStatus.SKIPPED
    assert wrong not in json.dumps(asdict(result), default=str)


@pytest.mark.parametrize(
    ("which", "said"),
    [("revoked_token", "Token was revoked"), ("expired_token", "Token is expired")],
)
async def test_a_revoked_or_expired_token_is_authentication_failed_saying_so(
    gitlab_server: GitLabServer, which: str, said: str
) -> None:
    result = await run("gitlab", gitlab_server.config(token=getattr(gitlab_server, which)))
    found = failure(result)
    assert (found.type, found.fields, found.retryable) == (FailureType.AUTHENTICATION_FAILED, ["token"], False)
    assert said in found.message and "create a new one" in (found.hint or "")
    assert_no_secret(result, gitlab_server)


async def test_a_token_without_the_read_scopes_names_every_missing_scope_at_once(gitlab_server: GitLabServer) -> None:
    result = await run("gitlab", gitlab_server.config(token=gitlab_server.limited_token))
    found = failure(result)
    assert (found.type, found.fields) == (FailureType.AUTHORIZATION_FAILED, ["token"])
    assert found.message == "The GitLab token has the scopes read_user and lacks read_api and read_repository"
    assert "read_api, read_repository" in (found.hint or "")
    assert step(result, "authenticate").status == StepStatus.FAILED
    # Refused before any project call: the scopes were enough to say so.
    assert not any("/projects/" in r.path for r in gitlab_server.requests[-1:])


async def test_a_token_that_expires_within_two_weeks_is_a_warning(gitlab_server: GitLabServer) -> None:
    result = await run("gitlab", gitlab_server.config(token=gitlab_server.expiring_token))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [w.code for w in result.warnings] == [WarningCode.TOKEN_EXPIRING]
    assert "in 2 days" in result.warnings[0].message or "in 3 days" in result.warnings[0].message
    assert ", expires " in (step(result, "authenticate").message or "")


async def test_an_empty_repository_succeeds_with_an_empty_location_warning(gitlab_server: GitLabServer) -> None:
    result = await run("gitlab", gitlab_server.config(project=EMPTY_PROJECT))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]
    assert step(result, "access").message == f"Project {EMPTY_PROJECT} (private) is readable; its repository is empty"


async def test_a_missing_branch_is_not_found_naming_the_branch(gitlab_server: GitLabServer) -> None:
    result = await run("gitlab", gitlab_server.config(branch="no-such-branch"))
    found = failure(result)
    assert (found.type, found.fields) == (FailureType.NOT_FOUND, ["branch"])
    assert "'no-such-branch'" in found.message and "404 Tree Not Found" in found.message


async def test_a_missing_project_is_not_found_saying_it_may_be_hidden(gitlab_server: GitLabServer) -> None:
    result = await run("gitlab", gitlab_server.config(project="acme/nope"))
    found = failure(result)
    assert (found.type, found.fields) == (FailureType.NOT_FOUND, ["project"])
    assert "does not exist, or this token cannot see it" in found.message
    assert "member" in (found.hint or "")


async def test_a_project_whose_repository_the_token_cannot_read_is_authorization_failed(
    gitlab_server: GitLabServer,
) -> None:
    result = await run("gitlab", gitlab_server.config(project=GUEST_PROJECT))
    found = failure(result)
    assert (found.type, found.fields) == (FailureType.AUTHORIZATION_FAILED, ["token"])
    assert "Reporter" in (found.hint or "")


async def test_an_endpoint_refused_for_a_scope_is_authorization_failed_naming_the_scope(
    gitlab_server: GitLabServer,
) -> None:
    found = failure(await run("gitlab", gitlab_server.config(project=SCOPED_PROJECT)))
    assert (found.type, found.fields) == (FailureType.AUTHORIZATION_FAILED, ["token"])
    assert found.message == (
        "GitLab answered 403 Forbidden: The request requires higher privileges than provided by the access token. "
        "(it needs one of the scopes: api)"
    )


async def test_a_rate_limit_with_only_ratelimit_reset_is_rate_limited_saying_when(gitlab_server: GitLabServer) -> None:
    result = await run("gitlab", gitlab_server.config(project=BUSY_PROJECT))
    found = failure(result)
    assert (found.type, found.retryable) == (FailureType.RATE_LIMITED, True)
    assert found.retry_after_s is not None and 590 <= found.retry_after_s <= 600
    assert " until " in found.message


async def test_an_outage_is_provider_unavailable(gitlab_server: GitLabServer) -> None:
    found = failure(await run("gitlab", gitlab_server.config(project=DOWN_PROJECT)))
    assert (found.type, found.retryable) == (FailureType.PROVIDER_UNAVAILABLE, True)
    assert "<html" not in found.message


async def test_a_redirect_to_another_origin_does_not_carry_the_token(gitlab_server: GitLabServer) -> None:
    await run("gitlab", gitlab_server.config(project=MOVED_PROJECT))
    followed = [r for r in gitlab_server.requests if r.headers.get("host", "").startswith("localhost")]
    assert followed, "the redirect was not followed"
    assert all("private-token" not in r.headers for r in followed)


async def test_hostile_texts_in_an_answer_are_cut_in_every_message(gitlab_server: GitLabServer) -> None:
    result = await run("gitlab", gitlab_server.config(project=HOSTILE_PROJECT))
    texts = [s.message or "" for s in result.steps] + [w.message for w in result.warnings]
    if result.failure:
        texts += [result.failure.message, result.failure.hint or ""]
    assert max(len(t) for t in texts) <= 1000
    assert all("A" * (MAX_REASON + 1) not in t for t in texts)


async def test_an_answer_larger_than_the_bound_is_refused_unread(gitlab_server: GitLabServer) -> None:
    found = failure(await run("gitlab", gitlab_server.config(project=HUGE_PROJECT)))
    assert found.type == FailureType.UNEXPECTED_RESPONSE


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("acme/docs/handbook", "acme/docs/handbook"),
        ("278964", "278964"),
        ("https://gitlab.com/acme/docs/handbook", "acme/docs/handbook"),
        ("https://gitlab.com/acme/docs/handbook.git", "acme/docs/handbook"),
        ("https://gitlab.com/acme/docs/handbook/-/tree/main", "acme/docs/handbook"),
    ],
)
def test_a_project_is_accepted_as_an_id_a_path_or_a_url(given: str, expected: str) -> None:
    parsed = get_connector("gitlab").parse_config({"token": "t", "project": given})
    assert parsed.project == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("given", ["handbook", "0", "acme/..", "acme/-x", "acme/hand book", "acme//x", "a/b%2Fc"])
def test_something_that_is_not_a_project_is_rejected(given: str) -> None:
    with pytest.raises(InvalidConfiguration) as info:
        get_connector("gitlab").parse_config({"token": "t", "project": given})
    assert [e.field for e in info.value.errors] == ["project"]


@pytest.mark.parametrize("given", ["ma in", "a..b", "-x", "x.lock", "a~1", "b" * 256])
def test_a_bad_branch_name_is_rejected(given: str) -> None:
    with pytest.raises(InvalidConfiguration) as info:
        get_connector("gitlab").parse_config({"token": "t", "project": PROJECT, "branch": given})
    assert [e.field for e in info.value.errors] == ["branch"]


def test_an_empty_branch_means_the_default_branch() -> None:
    parsed = get_connector("gitlab").parse_config({"token": "t", "project": PROJECT, "branch": ""})
    assert parsed.branch is None  # type: ignore[attr-defined]


async def test_a_hostile_list_of_scopes_is_cut_in_the_message(gitlab_server: GitLabServer) -> None:
    found = failure(await run("gitlab", gitlab_server.config(token=gitlab_server.hostile_token)))
    assert found.type == FailureType.AUTHORIZATION_FAILED
    assert found.message.startswith("The GitLab token has the scopes read_user, ssss")
    assert len(found.message) <= MAX_REASON + 100


async def test_a_base_url_that_is_not_a_gitlab_instance_is_unexpected_naming_base_url(
    gitlab_server: GitLabServer,
) -> None:
    found = failure(await run("gitlab", gitlab_server.config(base_url=gitlab_server.url("/elsewhere"))))
    assert (found.type, found.fields) == (FailureType.UNEXPECTED_RESPONSE, ["base_url"])
    assert "personal_access_tokens/self" in found.message
