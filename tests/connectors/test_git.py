"""The git connector against Debian git's real ``git http-backend`` behind an HTTPS server with
basic auth (tests/servers/git.py): the refs advertisement, the credentials, the branch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connectors import get_connector, run_check
from connectors.base import CheckResult, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from tests.helpers import failed_at
from tests.servers.git import GitServer

STEPS = ["resolve", "tcp", "tls", "authenticate", "access"]
WRONG = "Wrong-Secret-7d41c9"


def _check(config: dict[str, Any], timeout: float = 10) -> CheckResult:
    git = get_connector("git")
    return asyncio.run(run_check(git, git.parse_config(config), timeout=timeout))


def _failed(result: CheckResult, type: FailureType, step: str, fields: set[str]) -> str:
    assert [s.name for s in result.steps] == STEPS
    return failed_at(result, type, step, fields)


def _access(result: CheckResult) -> str:
    assert result.status == "succeeded", result
    assert [s.name for s in result.steps] == STEPS
    assert "git/" in str(result.steps[3].message)  # the server's agent, from the advertisement
    return str(result.steps[4].message)


def test_basic_credentials_read_the_advertisement_and_find_the_branch(git_server: GitServer) -> None:
    assert _access(_check(git_server.config())).startswith("Branch 'main' is at ")
    assert "/docs.git/info/refs?service=git-upload-pack" in git_server.requests


def test_a_token_reads_another_branch(git_server: GitServer) -> None:
    config = git_server.config(auth={"type": "token", "token": git_server.token}, branch="refs/heads/release")
    assert _access(_check(config)).startswith("Branch 'release' is at ")


def test_without_a_branch_the_default_branch_head_points_at_is_checked(git_server: GitServer) -> None:
    assert "'main' (the default branch)" in _access(_check(git_server.config(branch=None)))


def test_a_missing_branch_is_not_found_naming_branch_and_listing_the_branches(git_server: GitServer) -> None:
    result = _check(git_server.config(branch="develop"))
    assert "'develop'" in _failed(result, FailureType.NOT_FOUND, "access", {"branch"})
    assert result.failure is not None and "main, release" in result.failure.hint


def test_a_wrong_password_fails_naming_the_credentials(git_server: GitServer) -> None:
    result = _check(git_server.config(auth={"type": "basic", "username": git_server.user, "password": WRONG}))
    message = _failed(result, FailureType.AUTHENTICATION_FAILED, "authenticate", {"auth.username", "auth.password"})
    assert "401" in message and WRONG not in repr(result)


def test_a_wrong_token_fails_naming_the_token(git_server: GitServer) -> None:
    result = _check(git_server.config(auth={"type": "token", "token": WRONG}))
    _failed(result, FailureType.AUTHENTICATION_FAILED, "authenticate", {"auth.token", "auth.username"})
    assert WRONG not in repr(result)


def test_no_credentials_for_a_private_repository_fail_naming_auth(git_server: GitServer) -> None:
    _failed(
        _check(git_server.config(auth={"type": "none"})), FailureType.AUTHENTICATION_FAILED, "authenticate", {"auth"}
    )


def test_a_repository_the_credentials_may_not_read_is_authorization_failed(git_server: GitServer) -> None:
    result = _check(git_server.config(url=git_server.url("secret.git")))
    assert "403" in _failed(
        result, FailureType.AUTHORIZATION_FAILED, "authenticate", {"auth.username", "auth.password"}
    )


def test_a_missing_repository_is_not_found_naming_url(git_server: GitServer) -> None:
    result = _check(git_server.config(url=git_server.url("no-such.git")))
    assert "404" in _failed(result, FailureType.NOT_FOUND, "authenticate", {"url"})


def test_an_empty_repository_has_no_branch(git_server: GitServer) -> None:
    result = _check(git_server.config(url=git_server.url("empty.git")))
    assert "empty" in _failed(result, FailureType.NOT_FOUND, "access", {"branch", "url"})


def test_a_web_page_is_not_a_repository(git_server: GitServer) -> None:
    result = _check(git_server.config(url=git_server.url("page.git")))
    assert "not a Git repository" in _failed(result, FailureType.NOT_FOUND, "authenticate", {"url"})


def test_an_untrusted_certificate_fails_the_tls_step_naming_ca_cert(git_server: GitServer) -> None:
    _failed(_check(git_server.config(ca_cert=None)), FailureType.TLS_ERROR, "tls", {"ca_cert"})


def test_an_endless_advertisement_is_bounded(git_server: GitServer) -> None:
    result = _check(git_server.config(url=git_server.url("flood.git"), branch="x"), timeout=5)
    assert "too large" in _failed(result, FailureType.UNEXPECTED_RESPONSE, "access", {"url"})
    assert result.duration_ms < 4000


@pytest.mark.parametrize("branch", ["a..b", "-x", "x.lock", "with space", "a//b", "x/"])
def test_an_invalid_branch_name_is_refused_at_parse_time(git_server: GitServer, branch: str) -> None:
    with pytest.raises(InvalidConfiguration):
        get_connector("git").parse_config(git_server.config(branch=branch))


def test_a_url_with_credentials_or_ssh_is_refused_at_parse_time(git_server: GitServer) -> None:
    for url in (f"https://u:p@{git_server.host}/docs.git", "ssh://git@example.com/docs.git", "git@example.com:d.git"):
        with pytest.raises(InvalidConfiguration):
            get_connector("git").parse_config(git_server.config(url=url))


def test_credentials_over_plain_http_succeed_with_a_weak_authentication_warning(git_server: GitServer) -> None:
    result = _check(git_server.config(url=git_server.url(plain=True)))
    assert result.status == "succeeded", result
    assert result.steps[2].status == StepStatus.SKIPPED
    assert [w.code for w in result.warnings] == [WarningCode.WEAK_AUTHENTICATION]
