"""The zendesk connector against the local Zendesk API stand-in (tests/servers/zendesk.py)."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict

import pytest

from connectors.base import CheckResult, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.registry import get_connector
from connectors.saas import MAX_REASON
from tests.helpers import failure, step
from tests.servers.saas import run
from tests.servers.zendesk import (
    AGENT_EMAIL,
    BUSY_ACCOUNT,
    DOWN_ACCOUNT,
    EMPTY_ACCOUNT,
    END_USER_EMAIL,
    HOSTILE_ACCOUNT,
    HUGE_ACCOUNT,
    NO_HC_ACCOUNT,
    RESTRICTED_EMAIL,
    ZendeskServer,
)

API_TOKEN_FIELDS = ["credentials.email", "credentials.api_token"]


def assert_no_secret(result: CheckResult, server: ZendeskServer) -> None:
    text = json.dumps(asdict(result), default=str)
    assert not [s for s in server.all_secrets() if s in text], "a token leaked into the result"


def api_token(email: str, token: str) -> dict[str, str]:
    return {"type": "api_token", "email": email, "api_token": token}


def texts(result: CheckResult) -> list[str]:
    found = [s.message or "" for s in result.steps] + [w.message for w in result.warnings]
    found += [w.hint for w in result.warnings]
    if result.failure:
        found += [result.failure.message, result.failure.hint or ""]
    return found


async def test_an_agents_api_token_reads_the_help_center(zendesk_server: ZendeskServer) -> None:
    result = await run("zendesk", zendesk_server.config())
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "authenticate").message == f"Signed in as {AGENT_EMAIL} (role agent)"
    assert step(result, "access").message == "The help center is readable: 3 articles"
    assert result.warnings == []
    me, articles = zendesk_server.requests[-2:]
    assert me.path == "/acme/api/v2/users/me.json"
    assert articles.path == "/acme/api/v2/help_center/articles.json?per_page=1"
    # HTTP Basic with the documented "<email>/token:<api_token>" pair.
    expected = base64.b64encode(f"{AGENT_EMAIL}/token:{zendesk_server.api_token}".encode()).decode()
    assert articles.headers["authorization"] == f"Basic {expected}"
    assert_no_secret(result, zendesk_server)


async def test_an_oauth_access_token_reads_the_help_center_as_a_bearer(zendesk_server: ZendeskServer) -> None:
    credentials = {"type": "oauth", "access_token": zendesk_server.oauth_token}
    result = await run("zendesk", zendesk_server.config(credentials=credentials))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "authenticate").message == "Signed in as admin@example.com (role admin)"
    assert zendesk_server.requests[-1].headers["authorization"] == f"Bearer {zendesk_server.oauth_token}"
    assert_no_secret(result, zendesk_server)


async def test_a_locale_reads_that_locales_articles(zendesk_server: ZendeskServer) -> None:
    result = await run("zendesk", zendesk_server.config(locale="EN-US"))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "access").message == "The help center is readable: 3 articles in the locale en-us"
    assert zendesk_server.requests[-1].path == "/acme/api/v2/help_center/en-us/articles.json?per_page=1"


async def test_a_locale_the_help_center_lacks_is_not_found_naming_locale(zendesk_server: ZendeskServer) -> None:
    found = failure(await run("zendesk", zendesk_server.config(locale="de")))
    assert (found.type, found.fields) == (FailureType.NOT_FOUND, ["locale"])
    assert "locale de" in found.message


async def test_an_api_token_zendesk_answers_as_the_anonymous_user_is_authentication_failed(
    zendesk_server: ZendeskServer,
) -> None:
    wrong = zendesk_server.api_token[::-1]
    result = await run("zendesk", zendesk_server.config(credentials=api_token(AGENT_EMAIL, wrong)))
    found = failure(result)
    assert (found.type, found.fields) == (FailureType.AUTHENTICATION_FAILED, API_TOKEN_FIELDS)
    assert found.message == "Zendesk did not accept the credentials and answered as the anonymous user"
    assert "Admin Center > Apps and integrations > Zendesk API" in (found.hint or "")
    assert "agent" in (found.hint or "")
    assert step(result, "access").status == StepStatus.SKIPPED
    assert wrong not in json.dumps(asdict(result), default=str)


async def test_a_wrong_oauth_token_is_authentication_failed_on_its_401(zendesk_server: ZendeskServer) -> None:
    wrong = "0" * 64
    result = await run("zendesk", zendesk_server.config(credentials={"type": "oauth", "access_token": wrong}))
    found = failure(result)
    assert (found.type, found.fields) == (FailureType.AUTHENTICATION_FAILED, ["credentials.access_token"])
    assert found.message.startswith("Zendesk refused the credentials (401 Unauthorized): The access token provided")
    assert "OAuth" in (found.hint or "")
    assert step(result, "authenticate").status == StepStatus.FAILED
    assert wrong not in json.dumps(asdict(result), default=str)


async def test_an_end_user_succeeds_saying_drafts_are_out_of_reach(zendesk_server: ZendeskServer) -> None:
    credentials = api_token(END_USER_EMAIL, zendesk_server.end_user_token)
    result = await run("zendesk", zendesk_server.config(credentials=credentials))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "authenticate").message == f"Signed in as {END_USER_EMAIL} (role end-user: cannot read drafts)"
    assert [w.code for w in result.warnings] == [WarningCode.MISSING_OPTIONAL_SCOPE]
    assert "not drafts" in result.warnings[0].message


async def test_an_account_without_a_help_center_is_not_found_saying_so(zendesk_server: ZendeskServer) -> None:
    result = await run("zendesk", zendesk_server.config(NO_HC_ACCOUNT))
    found = failure(result)
    assert (found.type, found.fields) == (FailureType.NOT_FOUND, ["base_url"])
    assert found.message.startswith("This Zendesk account has no help center")
    assert "Help center" in (found.hint or "")
    assert step(result, "authenticate").status == StepStatus.SUCCEEDED


async def test_an_empty_help_center_succeeds_with_an_empty_location_warning(zendesk_server: ZendeskServer) -> None:
    result = await run("zendesk", zendesk_server.config(EMPTY_ACCOUNT))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]
    assert step(result, "access").message == "The help center is readable; it has no articles"


async def test_a_locale_without_articles_warns_naming_the_locale(zendesk_server: ZendeskServer) -> None:
    result = await run("zendesk", zendesk_server.config(locale="fr"))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]
    assert "in the locale fr" in result.warnings[0].message


async def test_an_agent_without_help_center_access_is_authorization_failed(zendesk_server: ZendeskServer) -> None:
    credentials = api_token(RESTRICTED_EMAIL, zendesk_server.restricted_token)
    found = failure(await run("zendesk", zendesk_server.config(credentials=credentials)))
    assert (found.type, found.fields) == (FailureType.AUTHORIZATION_FAILED, API_TOKEN_FIELDS)
    assert found.message.startswith("Zendesk answered 403 Forbidden: Forbidden")
    assert "knowledge base" in (found.hint or "")


async def test_a_subdomain_without_an_account_is_not_found(zendesk_server: ZendeskServer) -> None:
    result = await run("zendesk", zendesk_server.config("nosuchaccount"))
    found = failure(result)
    assert (found.type, found.fields) == (FailureType.NOT_FOUND, ["base_url"])
    assert "No help desk at nosuchaccount.zendesk.com" in found.message
    assert step(result, "authenticate").status == StepStatus.FAILED


async def test_a_rate_limit_longer_than_the_deadline_is_rate_limited(zendesk_server: ZendeskServer) -> None:
    found = failure(await run("zendesk", zendesk_server.config(BUSY_ACCOUNT)))
    assert (found.type, found.retryable, found.retry_after_s) == (FailureType.RATE_LIMITED, True, 600)


async def test_an_outage_is_provider_unavailable(zendesk_server: ZendeskServer) -> None:
    found = failure(await run("zendesk", zendesk_server.config(DOWN_ACCOUNT)))
    assert (found.type, found.retryable) == (FailureType.PROVIDER_UNAVAILABLE, True)
    assert "<html" not in found.message


async def test_hostile_texts_in_an_answer_are_cut_in_every_message(zendesk_server: ZendeskServer) -> None:
    result = await run("zendesk", zendesk_server.config(HOSTILE_ACCOUNT))
    # users/me's 200 KB name, email and role, then the articles' 200 KB 403 description.
    assert step(result, "authenticate").status == StepStatus.SUCCEEDED
    assert failure(result).type == FailureType.AUTHORIZATION_FAILED
    assert max(len(t) for t in texts(result)) <= 1000
    assert all("A" * (MAX_REASON + 1) not in t for t in texts(result))


async def test_an_answer_larger_than_the_bound_is_refused_unread(zendesk_server: ZendeskServer) -> None:
    found = failure(await run("zendesk", zendesk_server.config(HUGE_ACCOUNT)))
    assert found.type == FailureType.UNEXPECTED_RESPONSE


def test_a_subdomain_makes_the_zendesk_address() -> None:
    parsed = get_connector("zendesk").parse_config({"subdomain": " Acme ", "credentials": api_token(AGENT_EMAIL, "t")})
    assert parsed.endpoint().base_url == "https://acme.zendesk.com"  # type: ignore[attr-defined]
    assert parsed.address_field() == "subdomain"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "address",
    [
        {},
        {"subdomain": "acme", "base_url": "https://acme.zendesk.com"},
        {"subdomain": "acme.zendesk.com"},
        {"subdomain": "-acme"},
        {"subdomain": "a" * 64},
    ],
)
def test_one_valid_subdomain_or_base_url_is_required(address: dict[str, str]) -> None:
    with pytest.raises(InvalidConfiguration):
        get_connector("zendesk").parse_config({**address, "credentials": api_token(AGENT_EMAIL, "t")})


@pytest.mark.parametrize("email", ["agent", "agent@example.com/token", "a b@example.com", "x" * 300 + "@e.com"])
def test_an_email_that_cannot_go_in_the_basic_pair_is_rejected(email: str) -> None:
    with pytest.raises(InvalidConfiguration) as info:
        get_connector("zendesk").parse_config({"subdomain": "acme", "credentials": api_token(email, "t")})
    assert [e.field for e in info.value.errors] == ["credentials.api_token.email"]


@pytest.mark.parametrize("locale", ["english", "en_us", "en-", "../x"])
def test_a_bad_locale_is_rejected(locale: str) -> None:
    with pytest.raises(InvalidConfiguration) as info:
        get_connector("zendesk").parse_config(
            {"subdomain": "acme", "locale": locale, "credentials": api_token(AGENT_EMAIL, "t")}
        )
    assert [e.field for e in info.value.errors] == ["locale"]


def test_subdomain_and_base_url_are_destinations_so_moving_them_needs_the_secrets_again() -> None:
    properties = get_connector("zendesk").connection_specification()["properties"]
    assert properties["subdomain"].get("x-destination") is True
    assert properties["base_url"].get("x-destination") is True
