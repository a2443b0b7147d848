"""The slack connector against the local Slack Web API stand-in (tests/servers/saas.py)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from connectors.base import CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration
from connectors.registry import get_connector
from tests.helpers import failure_type, step
from tests.servers.saas import SLACK_CHANNEL, SLACK_NOT_MEMBER_CHANNEL, SaasServer, assert_no_secret, run


def config(server: SaasServer, **override: Any) -> dict[str, Any]:
    return {
        "token": server.token,
        "channel_id": SLACK_CHANNEL,
        "base_url": server.url("/slack/api"),
        "ca_cert": server.ca_pem,
        **override,
    }


async def test_a_readable_channel_succeeds(saas_server: SaasServer) -> None:
    result = await run("slack", config(saas_server))
    assert result.status == CheckStatus.SUCCEEDED, result.failure
    assert step(result, "authenticate").message == "Bot token of sourcecheck in workspace Acme"
    assert step(result, "access").message == "Channel #general is readable"
    calls = [(r.method, r.path, r.form) for r in saas_server.requests]
    assert calls == [
        ("POST", "/slack/api/auth.test", {}),
        ("POST", "/slack/api/conversations.info", {"channel": SLACK_CHANNEL}),
        ("POST", "/slack/api/conversations.history", {"channel": SLACK_CHANNEL, "limit": "1"}),
    ]
    assert saas_server.requests[0].headers["authorization"] == f"Bearer {saas_server.token}"
    assert_no_secret(result, saas_server)


async def test_an_invalid_token_answered_with_http_200_is_authentication_failed(saas_server: SaasServer) -> None:
    wrong = "xoxb-" + saas_server.token[::-1]
    result = await run("slack", config(saas_server, token=wrong))
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message == "Slack does not accept the token (invalid_auth)"
    assert result.failure.fields == ["token"]
    assert "OAuth & Permissions" in result.failure.hint
    assert step(result, "authenticate").status == StepStatus.FAILED
    assert wrong not in str(asdict(result))


async def test_a_missing_scope_is_authorization_failed_naming_the_scope(saas_server: SaasServer) -> None:
    result = await run("slack", config(saas_server, token=saas_server.limited_token))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    # Every missing scope, named at once from the granted ones (X-OAuth-Scopes), before any channel call.
    assert result.failure.message == (
        "The token lacks the scopes channels:read, channels:history, which reading a channel needs; it has chat:write"
    )
    assert result.failure.hint.startswith("Add channels:read and channels:history")
    assert result.failure.fields == ["token"]
    assert step(result, "authenticate").status == StepStatus.FAILED


async def test_an_unknown_channel_is_not_found_with_a_hint_about_private_channels(saas_server: SaasServer) -> None:
    result = await run("slack", config(saas_server, channel_id="C9999999999"))
    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert result.failure.message == "Slack cannot find the channel for this token (channel_not_found)"
    assert "/invite" in result.failure.hint
    assert result.failure.fields == ["channel_id"]


async def test_a_channel_the_bot_is_not_in_is_authorization_failed_saying_to_invite_it(
    saas_server: SaasServer,
) -> None:
    result = await run("slack", config(saas_server, channel_id=SLACK_NOT_MEMBER_CHANNEL))
    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message.startswith("The app is not a member of #random")
    assert "/invite" in result.failure.hint
    assert result.failure.fields == ["channel_id"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [("C0123456789", "C0123456789"), ("https://acme.slack.com/archives/C0123456789", "C0123456789")],
)
def test_a_channel_is_accepted_as_id_or_link(given: str, expected: str) -> None:
    parsed = get_connector("slack").parse_config({"token": "t", "channel_id": given})
    assert parsed.channel_id == expected  # type: ignore[attr-defined]


def test_a_channel_name_is_rejected_with_where_to_find_the_id() -> None:
    with pytest.raises(InvalidConfiguration) as info:
        get_connector("slack").parse_config({"token": "t", "channel_id": "#general"})
    assert info.value.errors[0].field == "channel_id"
    assert "not its name" in info.value.errors[0].message


def test_the_scopes_of_one_kind_of_channel_only_warn_about_the_other() -> None:
    import time

    import httpx

    from connectors.base import Probe
    from connectors.errors import WarningCode
    from connectors.saas import ApiClient
    from connectors.slack import _check_scopes

    probe = Probe((), deadline=time.monotonic() + 5)
    api = ApiClient(provider="Slack", base_url="https://slack.test/api", probe=probe, http=httpx.AsyncClient())
    _check_scopes(api, probe, {"channels:read", "channels:history", "chat:write"})
    assert [w.code for w in probe.warnings] == [WarningCode.MISSING_OPTIONAL_SCOPE]
    assert "groups:read, groups:history" in probe.warnings[0].message and "private" in probe.warnings[0].message
    _check_scopes(api, probe, {"channels:read", "channels:history", "groups:read", "groups:history"})
    assert len(probe.warnings) == 1  # nothing more when every scope is there
