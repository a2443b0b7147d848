"""What the Atlassian connectors (confluence, jira) share: a Cloud account's email and API
token, sent as HTTP Basic, or a Data Center personal access token, sent as a bearer."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Secret
from connectors.saas import ApiClient


class AtlassianCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    type: str  # each connector's own Literal, the discriminator (kept first in the form)


class EmailAndApiToken(AtlassianCredentials):
    """Atlassian Cloud: the account's email and one of its API tokens (never its password)."""

    email: str = Field(
        min_length=3,
        max_length=320,
        pattern=r"^[^:\s]+@[^:\s]+$",
        title="Email",
        description="The email address of the Atlassian account the API token belongs to.",
        examples=["reader@example.com"],
    )
    api_token: Secret = Field(
        title="API token",
        description="An API token of that account (id.atlassian.com > Security > API tokens), not its password; "
        "never shown.",
        examples=["ATATT3xFfGF0example"],
    )

    field_paths: ClassVar[tuple[str, ...]] = ("credentials.email", "credentials.api_token")


class AccessToken(AtlassianCredentials):
    """Data Center or Server: a personal access token (or an OAuth access token), as a bearer."""

    token: Secret = Field(
        title="Token",
        description="A personal access token (Profile > Personal Access Tokens), sent as Authorization: Bearer; "
        "never shown.",
        examples=["NjU4OTIzexample"],
    )

    field_paths: ClassVar[tuple[str, ...]] = ("credentials.token",)


def sign_in(api: ApiClient, credentials: EmailAndApiToken | AccessToken) -> None:
    """Every later call of ``api`` carries the credentials."""
    if isinstance(credentials, EmailAndApiToken):
        api.use_basic(credentials.email, credentials.api_token.get_secret_value())
    else:
        api.use_bearer(credentials.token.get_secret_value())
