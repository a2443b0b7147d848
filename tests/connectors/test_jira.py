"""The jira connector against the local Jira Cloud and Data Center stand-in (tests/servers/jira.py)."""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.base import CheckResult, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.registry import get_connector
from connectors.text import MASK
from tests.helpers import check, failure, messages, step
from tests.servers import jira
from tests.servers.jira import EMAIL, JiraServer


def cloud(server: JiraServer, *, api_token: str | None = None, email: str = EMAIL, **override: Any) -> dict[str, Any]:
    return {
        "base_url": server.url("/cloud"),
        "credentials": {"type": "cloud", "email": email, "api_token": api_token or server.api_token},
        "project_key": jira.PROJECT,
        "ca_cert": server.ca_pem,
        **override,
    }


def data_center(server: JiraServer, *, token: str | None = None, **override: Any) -> dict[str, Any]:
    return {
        "base_url": server.url("/dc"),
        "credentials": {"type": "data_center", "token": token or server.pat},
        "project_key": jira.PROJECT,
        "ca_cert": server.ca_pem,
        **override,
    }


def assert_no_secret(result: CheckResult, server: JiraServer) -> None:
    text = messages(result)
    for secret in server.all_secrets():
        assert secret not in text, "a secret leaked into the result"


async def test_a_readable_cloud_project_succeeds_with_the_enhanced_search(jira_server: JiraServer) -> None:
    seen = len(jira_server.requests)
    result = await check("jira", cloud(jira_server))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [s.name for s in result.steps] == ["resolve", "tcp", "tls", "authenticate", "access"]
    assert step(result, "authenticate").message == "Signed in as Ada Reader"
    assert step(result, "access").message == "Project ENG (Engineering) and its issues are readable"
    assert result.warnings == []
    sent = jira_server.requests[seen:]
    assert [urlsplit(r.path).path for r in sent] == [
        "/cloud/rest/api/3/myself",
        "/cloud/rest/api/3/project/ENG",
        "/cloud/rest/api/3/search/jql",
    ]
    assert parse_qs(urlsplit(sent[-1].path).query) == {"jql": ['project = "ENG"'], "maxResults": ["1"]}
    pair = base64.b64encode(f"{EMAIL}:{jira_server.api_token}".encode()).decode()
    assert all(r.headers["authorization"] == f"Basic {pair}" for r in sent)
    assert_no_secret(result, jira_server)
    assert pair not in messages(result)


async def test_a_data_center_personal_access_token_is_sent_as_bearer_to_rest_api_2(jira_server: JiraServer) -> None:
    seen = len(jira_server.requests)
    result = await check("jira", data_center(jira_server))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "authenticate").message == "Signed in as Ada Reader"
    assert step(result, "access").message == "Project ENG (Engineering) and its issues are readable"
    sent = jira_server.requests[seen:]
    assert [urlsplit(r.path).path for r in sent] == [
        "/dc/rest/api/2/myself",
        "/dc/rest/api/2/project/ENG",
        "/dc/rest/api/2/search",
    ]
    assert all(r.headers["authorization"] == f"Bearer {jira_server.pat}" for r in sent)
    assert_no_secret(result, jira_server)


async def test_a_wrong_cloud_api_token_is_authentication_failed_asking_for_an_api_token(
    jira_server: JiraServer,
) -> None:
    wrong = "my-account-password-" + jira_server.api_token[::-1]
    result = await check("jira", cloud(jira_server, api_token=wrong))
    found = failure(result)
    assert found.type == FailureType.AUTHENTICATION_FAILED
    assert found.message == (
        "Jira answered 401 Unauthorized: You are not authenticated. Authentication required to perform this operation."
    )
    assert found.hint is not None and "id.atlassian.com" in found.hint and "not the account's password" in found.hint
    assert list(found.fields) == ["credentials.email", "credentials.api_token"]
    assert step(result, "authenticate").status == StepStatus.FAILED
    assert step(result, "access").status == StepStatus.SKIPPED
    assert wrong not in messages(result)


async def test_a_wrong_personal_access_token_is_authentication_failed(jira_server: JiraServer) -> None:
    result = await check("jira", data_center(jira_server, token="revoked-token-0123"))
    found = failure(result)
    assert found.type == FailureType.AUTHENTICATION_FAILED
    assert found.hint is not None and "Personal Access Tokens" in found.hint
    assert list(found.fields) == ["credentials.token"]


@pytest.mark.parametrize("deployment", [cloud, data_center])
async def test_a_missing_project_is_not_found_naming_project_key(jira_server: JiraServer, deployment: Any) -> None:
    result = await check("jira", deployment(jira_server, project_key="NOPE"))
    found = failure(result)
    assert found.type == FailureType.NOT_FOUND
    assert found.message == (
        "Jira has no project with key NOPE that this user can see (No project could be found with key 'NOPE'.)"
    )
    assert list(found.fields) == ["project_key"]
    assert found.hint is not None and "Browse Projects" in found.hint
    assert step(result, "access").status == StepStatus.FAILED


@pytest.mark.parametrize("deployment", [cloud, data_center])
async def test_no_permission_on_the_project_is_authorization_failed_naming_browse_projects(
    jira_server: JiraServer, deployment: Any
) -> None:
    config = (
        cloud(jira_server, api_token=jira_server.limited_token)
        if deployment is cloud
        else data_center(jira_server, token=jira_server.limited_token)
    )
    result = await check("jira", config)
    found = failure(result)
    assert found.type == FailureType.AUTHORIZATION_FAILED
    assert found.message == "Jira answered 403 Forbidden: You do not have the permission to see the specified project."
    assert found.hint is not None and "Browse Projects" in found.hint
    assert step(result, "authenticate").status == StepStatus.SUCCEEDED
    assert_no_secret(result, jira_server)


@pytest.mark.parametrize("deployment", [cloud, data_center])
async def test_a_project_without_issues_succeeds_with_an_empty_location_warning(
    jira_server: JiraServer, deployment: Any
) -> None:
    result = await check("jira", deployment(jira_server, project_key=jira.EMPTY_PROJECT))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "access").message == "Project EMPTY (Empty) is readable; it has no issue this user can see"
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]
    assert "EMPTY" in result.warnings[0].message and result.warnings[0].hint


async def test_a_project_whose_issues_cannot_be_searched_is_authorization_failed(jira_server: JiraServer) -> None:
    found = failure(await check("jira", cloud(jira_server, project_key=jira.ARCHIVED)))
    assert found.type == FailureType.AUTHORIZATION_FAILED
    assert found.message == (
        "Project ARCH (Archived) is visible, but Jira refused to search its issues "
        "(The value 'ARCH' does not exist for the field 'project'.)"
    )
    assert found.hint is not None and "archived" in found.hint


async def test_a_login_locked_behind_a_captcha_says_to_log_in_in_a_browser(jira_server: JiraServer) -> None:
    result = await check("jira", cloud(jira_server, email=jira.LOCKED_EMAIL))
    found = failure(result)
    assert found.type == FailureType.AUTHENTICATION_FAILED
    assert "CAPTCHA" in found.message
    assert found.hint is not None and "in a browser" in found.hint
    assert step(result, "authenticate").status == StepStatus.FAILED


async def test_a_scoped_api_token_without_the_jira_scopes_is_authorization_failed(jira_server: JiraServer) -> None:
    found = failure(await check("jira", cloud(jira_server, api_token=jira_server.scoped_token)))
    assert found.type == FailureType.AUTHORIZATION_FAILED
    assert found.message == "The token is valid but lacks a scope this call needs (Unauthorized; scope does not match)"
    assert found.hint is not None and "read:jira-work" in found.hint


async def test_a_long_rate_limit_is_rate_limited_at_once(jira_server: JiraServer) -> None:
    started = time.perf_counter()
    found = failure(await check("jira", cloud(jira_server, project_key=jira.BUSY)))
    assert time.perf_counter() - started < 3
    assert (found.type, found.retryable, found.retry_after_s) == (FailureType.RATE_LIMITED, True, 120)


async def test_a_short_rate_limit_is_waited_out(jira_server: JiraServer) -> None:
    result = await check("jira", data_center(jira_server, project_key=jira.FLAKY))
    assert result.status == CheckStatus.SUCCEEDED, result.failure


async def test_an_outage_is_provider_unavailable(jira_server: JiraServer) -> None:
    found = failure(await check("jira", cloud(jira_server, project_key=jira.DOWN)))
    assert (found.type, found.retryable, found.retry_after_s) == (FailureType.PROVIDER_UNAVAILABLE, True, 30)


async def test_a_base_url_that_is_not_jira_is_unexpected_response_naming_base_url(jira_server: JiraServer) -> None:
    found = failure(await check("jira", cloud(jira_server, base_url=jira_server.url("/wiki"))))
    assert found.type == FailureType.UNEXPECTED_RESPONSE
    assert "does not answer like a Jira site" in found.message
    assert "base_url" in found.fields


# --- hostile answers ---------------------------------------------------------------------


async def test_an_error_echoing_the_authorization_header_is_masked(jira_server: JiraServer) -> None:
    result = await check("jira", cloud(jira_server, project_key=jira.ECHO))
    found = failure(result)
    assert found.type == FailureType.NOT_FOUND
    assert "Authorization: Basic " + MASK in found.message
    pair = base64.b64encode(f"{EMAIL}:{jira_server.api_token}".encode()).decode()
    assert pair not in messages(result)
    assert_no_secret(result, jira_server)


async def test_a_flood_of_error_messages_is_quoted_bounded(jira_server: JiraServer) -> None:
    found = failure(await check("jira", cloud(jira_server, project_key=jira.FLOOD)))
    assert found.type == FailureType.NOT_FOUND
    assert "(copy 2)" in found.message and "(copy 3)" not in found.message
    assert len(found.message) < 400


async def test_a_huge_project_name_is_cut_in_the_step_message(jira_server: JiraServer) -> None:
    result = await check("jira", cloud(jira_server, project_key=jira.LONG_NAME))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    message = step(result, "access").message
    assert message is not None and len(message) < 200 and message.startswith("Project LONG (nnn")


async def test_a_body_past_the_transports_bound_is_unexpected_response(jira_server: JiraServer) -> None:
    found = failure(await check("jira", cloud(jira_server, project_key=jira.HUGE)))
    assert found.type == FailureType.UNEXPECTED_RESPONSE


# --- the configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://acme.atlassian.net/jira/software/projects/ENG/boards/1", "https://acme.atlassian.net"),
        ("https://acme.atlassian.net/", "https://acme.atlassian.net"),
        ("https://jira.example.com/jira/", "https://jira.example.com/jira"),
    ],
)
def test_a_cloud_site_is_its_origin_and_a_data_center_keeps_its_context_path(given: str, expected: str) -> None:
    credentials = {"type": "cloud", "email": EMAIL, "api_token": "t"}
    parsed = get_connector("jira").parse_config({"base_url": given, "credentials": credentials, "project_key": "ENG"})
    assert parsed.base_url == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", ['ENG" OR project != "X', "ENG/../x", "1ENG", "", "E" * 101, "ENG&maxResults=100"])
def test_a_project_key_that_could_change_the_query_or_path_is_refused(key: str) -> None:
    with pytest.raises(InvalidConfiguration) as refused:
        get_connector("jira").parse_config(
            {
                "base_url": "https://jira.example.com",
                "credentials": {"type": "data_center", "token": "t"},
                "project_key": key,
            }
        )
    assert "project_key" in str(refused.value)


def test_a_personal_access_token_for_a_cloud_site_is_refused_at_parse_time() -> None:
    with pytest.raises(InvalidConfiguration) as refused:
        get_connector("jira").parse_config(
            {
                "base_url": "https://acme.atlassian.net",
                "credentials": {"type": "data_center", "token": "a-secret-token"},
                "project_key": "ENG",
            }
        )
    assert "cloud credentials" in str(refused.value)
    assert "a-secret-token" not in str(refused.value)
