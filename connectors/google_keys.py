"""Google service account keys: the JSON key file, and the JWT bearer grant that turns it into a token.

Shared by the Google connectors (``gcs``, ``google_drive``). A key file is parsed at
configuration time (:func:`key_file`: its content is never put in an error); the ``token``
step signs the claims with its private key and posts them to its ``token_uri``
(:func:`service_account_step`). With a ``subject`` the token is for that Workspace user
(domain-wide delegation), which Google refuses with ``unauthorized_client`` until an
administrator grants the client ID the scopes.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from connectors.base import Probe, Secret
from connectors.errors import FailureType, ProbeFailure
from connectors.oauth import AccessToken, jwt_bearer_step, rsa_private_key, signed_jwt
from connectors.saas import ApiClient

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a password)
KEY_FIELDS = ("credentials.service_account_json",)

MAX_KEY_CHARS = 16 * 1024
"""A service account key file is about 2.3 KB; anything far larger is not one."""

KEY_HINT = (
    "Create a new JSON key for the service account (IAM & Admin > Service accounts > Keys) and paste it "
    "whole: this key may have been deleted or the account disabled. A clock off by minutes on the workers "
    "makes Google refuse the assertion too."
)


def key_file(value: Any) -> dict[str, Any]:
    """The parsed service account key, or ValueError saying what is wrong with it (never its content)."""
    text = value.get_secret_value()
    if len(text) > MAX_KEY_CHARS:
        raise ValueError("is too long for a service account key file")
    try:
        key = json.loads(text)
    except ValueError:
        raise ValueError("must be the service account's JSON key file, pasted whole") from None
    if not isinstance(key, dict) or key.get("type") != "service_account":
        raise ValueError('must be a service account key file ("type": "service_account")')
    for name in ("client_email", "private_key"):
        if not isinstance(key.get(name), str) or not key[name]:
            raise ValueError(f"has no {name}: download a new JSON key for the service account")
    rsa_private_key(key["private_key"])
    uri = key.get("token_uri", GOOGLE_TOKEN_URI)
    try:
        url = httpx.URL(uri) if isinstance(uri, str) else None
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("https", "http") or not url.host or url.userinfo:
        raise ValueError("has a token_uri that is not an http(s) URL")
    return key


def _service_account(value: Any) -> Any:
    key_file(value)
    return value


class GoogleServiceAccount(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, title="Service account key")
    type: Literal["service_account"] = Field(
        title="Type", description="A service account's JSON key: the check signs a JWT and gets a token as the app."
    )
    service_account_json: Annotated[Secret, AfterValidator(_service_account)] = Field(
        title="Service account key (JSON)",
        description=(
            "The service account's JSON key file (IAM & Admin > Service accounts > Keys > Add key), pasted whole; "
            "never shown. The signed assertion is sent to its token_uri."
        ),
        examples=['{"type": "service_account", "client_email": "reader@project.iam.gserviceaccount.com", ...}'],
    )


def client_email(credentials: GoogleServiceAccount) -> str:
    return str(key_file(credentials.service_account_json)["client_email"])


def delegation_refused(
    api: ApiClient, key: dict[str, Any], subject: str, scope: str, fields: tuple[str, ...]
) -> ProbeFailure:
    """Google's ``unauthorized_client`` to a service account asking for a user's token: no domain-wide delegation."""
    client_id = api.clean(str(key.get("client_id") or "the service account's client ID"), 40)
    account = api.clean(str(key["client_email"]), 200)
    return api.failure(
        FailureType.AUTHORIZATION_FAILED,
        f"Google refused a token for {subject}: domain-wide delegation is not granted to the client ID {client_id} "
        f"of {account} for the scope {scope}",
        hint=(
            "A super administrator of the Workspace domain must authorize it: Google Admin console > Security > "
            f"Access and data control > API controls > Manage Domain Wide Delegation > Add new, client ID "
            f"{client_id}, OAuth scopes {scope}. It can take from minutes up to 24 hours to apply. Check too that "
            "subject is a user of that domain, or clear subject to read as the service account itself (files "
            "shared with its email)."
        ),
        fields=("credentials.subject", *fields),
    )


async def service_account_step(
    probe: Probe,
    api: ApiClient,
    credentials: GoogleServiceAccount,
    scope: str,
    *,
    subject: str | None = None,
) -> AccessToken:
    """Step ``token``: the key's JWT bearer grant for ``scope`` (for ``subject``, when given)."""
    key = key_file(credentials.service_account_json)
    token_uri = key.get("token_uri", GOOGLE_TOKEN_URI)
    now = int(time.time())
    claims = {"iss": key["client_email"], "scope": scope, "aud": token_uri, "iat": now, "exp": now + 3600}
    if subject:
        claims["sub"] = subject
    key_id = key.get("private_key_id")
    # Google answers unauthorized_client to a user's token it may not issue: say which grant is missing.
    refusals = {"unauthorized_client": delegation_refused(api, key, subject, scope, KEY_FIELDS)} if subject else {}
    return await jwt_bearer_step(
        probe,
        api,
        issuer="Google",
        token_url=token_uri,
        assertion=signed_jwt(key["private_key"], claims, key_id=key_id if isinstance(key_id, str) else None),
        fields=KEY_FIELDS,
        hint=KEY_HINT,
        refusals=refusals,
    )
