"""The ``notion`` connector: can this integration token read this Notion page or database?

Steps: ``resolve``, ``tcp``, ``tls`` against the API host (api.notion.com), then
``authenticate`` (``GET /v1/users/me``: is the token valid, which bot is it) and
``access`` (``GET /v1/pages/{id}`` or ``/v1/databases/{id}``).

Notion answers 404 ``object_not_found`` both for an id that does not exist and for a page
that exists but was never shared with the integration: the usual cause, so the hint says
how to share it. A missing capability ("Read content") is 403 ``restricted_resource``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure
from connectors.fields import PemCertificates
from connectors.saas import ApiClient, ApiResponse, BaseUrl, base_url_field, ca_cert_field, example_base_url, open_api

NOTION_VERSION = "2022-06-28"
"""The Notion-Version this connector speaks (every request must name one)."""

_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.IGNORECASE)
_HEX32 = re.compile(r"[0-9a-f]{32}", re.IGNORECASE)

_SHARE_HINT = (
    "Share the page with the integration: open it in Notion, choose ••• > Connections > Connect to, and pick "
    "this integration (sharing a parent page shares its children). Also check the id."
)


def _object_id(value: str) -> str:
    """A page/database id, dashed or not, or a Notion URL ending in one → the dashed UUID."""
    value = value.strip()
    if _UUID.match(value):
        raw = value.replace("-", "").lower()
    else:
        path = value.split("?")[0].split("#")[0]
        found = _HEX32.findall(path.replace("-", "")) if "notion" in path.lower() else []
        if not found:
            raise ValueError("must be a Notion page or database id (32 hexadecimal digits) or its notion.so URL")
        raw = found[-1].lower()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


NotionId = Annotated[str, Field(max_length=2000), AfterValidator(_object_id)]


class NotionConfig(ConnectorConfig):
    """A Notion integration token and the page or database it must read."""

    model_config = ConfigDict(title="Notion")

    token: Secret = Field(
        title="Integration token",
        description=(
            "The internal integration secret (Settings > Connections > Develop or manage integrations) or a "
            "public integration's OAuth access token; never shown."
        ),
        examples=["ntn_example0123456789"],
    )
    object_type: Literal["page", "database"] = Field(
        "page",
        title="Object type",
        description="Whether object_id is a page or a database.",
        examples=["page", "database"],
    )
    object_id: NotionId = Field(
        title="Page or database",
        description=(
            "The id of the page or database to read, or its Notion URL (the id is the last 32 characters of the URL)."
        ),
        examples=[
            "59833787-2cf9-4fdf-8782-e53db20768a5",
            "https://www.notion.so/acme/Handbook-598337872cf94fdf8782e53db20768a5",
        ],
    )
    base_url: BaseUrl = base_url_field("https://api.notion.com", provider="Notion", examples=["https://api.notion.com"])
    ca_cert: PemCertificates = ca_cert_field()


class NotionConnector(Connector):
    name = "notion"
    title = "Notion"
    category = "saas"
    icon = "notion"
    documentation_url = "https://developers.notion.com/docs/authorization"
    config_model = NotionConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "token": "example-token",
            "object_id": "59833787-2cf9-4fdf-8782-e53db20768a5",
            "base_url": example_base_url(host, port),
        }

    async def check(self, config: NotionConfig, probe: Probe) -> None:
        async with open_api(probe, config, "Notion", headers={"Notion-Version": NOTION_VERSION}) as api:
            api.use_bearer(config.token.get_secret_value())
            async with probe.step("authenticate") as step:
                step.message = await _authenticate(api)
            async with probe.step("access") as step:
                step.message = await _access(api, config)


async def _authenticate(api: ApiClient) -> str:
    response = await api.call("GET", "/v1/users/me")
    if response.status in (404, 405):
        raise api.wrong_endpoint(response)
    if response.status == 401:
        raise api.failure(
            FailureType.AUTHENTICATION_FAILED,
            api.answered(response),
            hint=(
                "Copy the integration secret again (Settings > Connections > Develop or manage integrations); it "
                "changes when it is refreshed."
            ),
            fields=("token",),
        )
    if not response.ok:
        raise _failure(api, response)
    user = api.require_json(response)
    name = user.get("name") or "the integration"
    workspace = response.get("bot", "workspace_name")
    return f"Token of {name}" + (f" in workspace {workspace}" if isinstance(workspace, str) and workspace else "")


async def _access(api: ApiClient, config: NotionConfig) -> str:
    kind = config.object_type
    response = await api.call("GET", f"/v1/{kind}s/{config.object_id}")
    if response.ok:
        data = api.require_json(response)
        title = _title(data)
        what = f"{kind.capitalize()} '{title}'" if title else f"{kind.capitalize()} {config.object_id}"
        return f"{what} is readable"
    code = response.get("code")
    if code == "object_not_found" or response.status == 404:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"Notion cannot find the {kind} {config.object_id}: it is not shared with the integration, or does not "
            "exist",
            hint=_SHARE_HINT,
            fields=("object_id",),
        )
    if code == "validation_error" and isinstance(message := response.get("message"), str):
        other = "database" if kind == "page" else "page"
        if f"is a {other}" in message:
            raise api.failure(
                FailureType.UNEXPECTED_RESPONSE,
                f"{config.object_id} is a {other}, not a {kind}",
                hint=f"Set object_type to {other}.",
                fields=("object_type",),
            )
    raise _failure(api, response)


def _failure(api: ApiClient, response: ApiResponse) -> ProbeFailure:
    code = response.get("code")
    if code == "restricted_resource" or response.status == 403:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            api.answered(response),
            hint=(
                "Give the integration the 'Read content' capability (integration settings > Capabilities), then "
                "share the page with it again."
            ),
            fields=("token",),
        )
    if code == "missing_version":
        return api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            api.answered(response),
            hint="Check base_url: it must be the Notion API (https://api.notion.com).",
            fields=("base_url",),
        )
    return api.status_failure(response, credential_fields=("token",), resource_fields=("object_id",))


def _title(data: dict[str, Any]) -> str:
    """A page's title property, or a database's title, as plain text."""
    parts = data.get("title")  # databases
    if not isinstance(parts, list):
        properties = data.get("properties")
        parts = next(
            (
                p.get("title")
                for p in (properties.values() if isinstance(properties, dict) else [])
                if isinstance(p, dict) and p.get("type") == "title"
            ),
            None,
        )
    if not isinstance(parts, list):
        return ""
    return "".join(str(p.get("plain_text", "")) for p in parts if isinstance(p, dict))[:200]
