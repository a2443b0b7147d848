"""The ``slack`` connector: can this token read this channel?

Steps: ``resolve``, ``tcp``, ``tls`` against slack.com, ``authenticate`` (``auth.test``)
and ``access`` (``conversations.info`` on the channel, then ``conversations.history`` with
``limit=1``: seeing a channel and reading its messages need different scopes, and a bot
must be a member of a channel to read it).

The Slack Web API answers almost every error with HTTP 200 and ``{"ok": false, "error":
"<code>"}``: the body decides, never the status alone. ``missing_scope`` comes with
``needed`` (the scope to add) and ``provided`` (the token's scopes), both named in the message.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ConfigDict, Field

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import PemCertificates
from connectors.saas import ApiClient, ApiResponse, BaseUrl, base_url_field, ca_cert_field, example_base_url, open_api

_CHANNEL = r"^[CGD][A-Z0-9]{6,20}$"

_AUTH_ERRORS = {
    "invalid_auth": "Slack does not accept the token",
    "not_authed": "Slack received no token",
    "account_inactive": "The token belongs to a deactivated user or to an app that was uninstalled",
    "token_revoked": "The token has been revoked",
    "token_expired": "The token has expired (the app uses token rotation)",
    "not_allowed_token_type": "Slack does not accept this kind of token here",
}
_REISSUE_HINT = (
    "Copy the Bot User OAuth Token (xoxb-…) or User OAuth Token (xoxp-…) from the app's OAuth & Permissions page; "
    "reinstall the app to the workspace if it was removed."
)
_RETRYABLE = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


def _channel(value: Any) -> Any:
    """A channel link (``…/archives/C0123456789``) → its id; a ``#name`` gets a clear error."""
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("#"):
            raise ValueError(
                "must be the channel's id (like C0123456789), not its name: in Slack, open the channel's details; "
                "the id is at the bottom"
            )
        if (found := re.search(r"/archives/([A-Z0-9]+)", value)) is not None:
            value = found.group(1)
    return value


class SlackConfig(ConnectorConfig):
    """A Slack app's token and the channel it must read."""

    model_config = ConfigDict(title="Slack")

    token: Secret = Field(
        title="Token",
        description=(
            "The app's Bot User OAuth Token (xoxb-…) or a User OAuth Token (xoxp-…), from OAuth & Permissions; "
            "never shown."
        ),
        examples=["xoxb-0000000000-0000000000000-example"],
    )
    channel_id: Annotated[str, BeforeValidator(_channel)] = Field(
        pattern=_CHANNEL,
        title="Channel ID",
        description="The id of the channel to read (channel details > bottom), or a link to the channel.",
        examples=["C0123456789"],
    )
    base_url: BaseUrl = base_url_field(
        "https://slack.com/api", provider="Slack Web", examples=["https://slack.com/api"]
    )
    ca_cert: PemCertificates = ca_cert_field()


class SlackConnector(Connector):
    name = "slack"
    title = "Slack"
    category = "saas"
    icon = "slack"
    documentation_url = "https://api.slack.com/authentication/token-types"
    config_model = SlackConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {"token": "xoxb-example-token", "channel_id": "C0123456789", "base_url": example_base_url(host, port)}

    async def check(self, config: SlackConfig, probe: Probe) -> None:
        async with open_api(probe, config, "Slack") as api:
            api.use_bearer(config.token.get_secret_value())
            async with probe.step("authenticate") as step:
                answer = await _answer(api, "auth.test", {})
                data, granted = answer.data, _granted_scopes(answer)
                if granted is not None:
                    _check_scopes(api, probe, granted)
                who = data.get("user") or data.get("user_id") or "the token"
                kind = "Bot" if data.get("bot_id") else "User"
                step.message = f"{kind} token of {who} in workspace {data.get('team') or data.get('team_id')}"
            async with probe.step("access") as step:
                step.message = await _access(api, config.channel_id)


# What reading a channel takes: its info and its history, for public channels (channels:*)
# or private ones (groups:*); the other kind is optional.
_NEEDED = (("channels:read", "groups:read"), ("channels:history", "groups:history"))


def _granted_scopes(response: ApiResponse) -> set[str] | None:
    """The scopes an answer's ``X-OAuth-Scopes`` header says the token has, None without one."""
    header = response.headers.get("x-oauth-scopes")
    if header is None:
        return None
    return {s.strip() for s in header[:4000].split(",") if s.strip()}


def _check_scopes(api: ApiClient, probe: Probe, granted: set[str]) -> None:
    """Fail naming every scope the check needs and the token lacks; warn for the optional kind."""
    missing = [public for public, private in _NEEDED if public not in granted and private not in granted]
    if missing:
        has = ", ".join(sorted(granted)) or "no scopes"
        raise api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"The token lacks the scopes {', '.join(missing)}, which reading a channel needs; it has {api.clean(has)}",
            hint=f"Add {' and '.join(missing)} (groups:* for private channels) under OAuth & Permissions > Scopes in "
            "the app's settings, then reinstall the app to the workspace.",
            fields=("token",),
        )
    optional = [scope for pair in _NEEDED for scope in pair if scope not in granted]
    if optional:
        probe.warn(
            WarningCode.MISSING_OPTIONAL_SCOPE,
            f"The token lacks {', '.join(optional)}: "
            + ("private" if optional[0].startswith("groups") else "public")
            + " channels cannot be read",
            hint=f"Add {', '.join(optional)} in the app's OAuth & Permissions if those channels should be synced.",
        )


async def _access(api: ApiClient, channel_id: str) -> str:
    info = await _method(
        api,
        "conversations.info",
        {"channel": channel_id},
        not_found_hint=(
            "Check the channel id. A private channel stays invisible to an app until the app is a member: "
            "in the channel, type /invite @your-app."
        ),
    )
    found = info.get("channel")
    channel: dict[str, Any] = found if isinstance(found, dict) else {}
    name = f"#{channel['name']}" if isinstance(channel.get("name"), str) else channel_id
    await _method(api, "conversations.history", {"channel": channel_id, "limit": "1"}, channel=name)
    archived = " (archived)" if channel.get("is_archived") else ""
    return f"Channel {name}{archived} is readable"


async def _method(
    api: ApiClient, method: str, form: dict[str, str], *, not_found_hint: str | None = None, channel: str = ""
) -> dict[str, Any]:
    """Call a Web API method; its JSON when ``ok`` is true, else the failure its ``error`` means."""
    data: dict[str, Any] = (await _answer(api, method, form, not_found_hint=not_found_hint, channel=channel)).data
    return data


async def _answer(
    api: ApiClient, method: str, form: dict[str, str], *, not_found_hint: str | None = None, channel: str = ""
) -> ApiResponse:
    """:func:`_method`'s whole answer (its headers too), when ``ok`` is true."""
    response = await api.call("POST", f"/{method}", data=form)
    if response.status in (404, 405):
        raise api.wrong_endpoint(response)
    if not response.ok:
        raise api.status_failure(response, unauthorized_hint=_REISSUE_HINT, credential_fields=("token",))
    if api.require_json(response).get("ok") is True:
        return response
    raise _error(api, method, response, not_found_hint=not_found_hint, channel=channel)


def _error(
    api: ApiClient, method: str, response: ApiResponse, *, not_found_hint: str | None, channel: str
) -> ProbeFailure:
    code = response.get("error")
    if not isinstance(code, str):
        return api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"Slack answered {method} with ok=false and no error code",
            hint="Check base_url: it must be the Slack Web API (https://slack.com/api).",
            fields=("base_url",),
        )
    code = api.clean(code, 80)
    if code in _AUTH_ERRORS:
        return api.failure(
            FailureType.AUTHENTICATION_FAILED, f"{_AUTH_ERRORS[code]} ({code})", hint=_REISSUE_HINT, fields=("token",)
        )
    if code == "unknown_method":
        return api.wrong_endpoint(response)
    if code == "missing_scope":
        needed = api.clean(str(response.get("needed") or ""), 100) or "a scope it does not name"
        provided = api.clean(str(response.get("provided") or ""), 300)
        has = f"; the token has {provided}" if provided else ""
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"The token lacks the scope {needed}, which {method} needs{has}",
            hint=(
                f"Add {needed} under OAuth & Permissions > Scopes in the app's settings, then reinstall the app to "
                "the workspace."
            ),
            fields=("token",),
        )
    if code == "channel_not_found":
        return api.failure(
            FailureType.NOT_FOUND,
            "Slack cannot find the channel for this token (channel_not_found)",
            hint=not_found_hint,
            fields=("channel_id",),
        )
    if code == "not_in_channel":
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"The app is not a member of {channel or 'the channel'}, so it cannot read its messages (not_in_channel)",
            hint="In the channel, type /invite @your-app to add the app.",
            fields=("channel_id",),
        )
    if code in {"access_denied", "team_access_not_granted", "ekm_access_denied", "enterprise_is_restricted"}:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"Slack denied {method} ({code})",
            hint="The workspace's admins restrict this app: ask them to grant it access to the workspace and channel.",
            fields=("token", "channel_id"),
        )
    return api.failure(
        FailureType.UNEXPECTED_RESPONSE,
        f"Slack answered {method} with the error {code}",
        hint="Try again; if it persists, see https://api.slack.com/methods/" + method + " for what the error means.",
        retryable=code in _RETRYABLE,
    )
