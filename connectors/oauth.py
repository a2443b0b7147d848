"""OAuth 2.0 at the token endpoint: the ``token`` step of a SaaS check.

A configuration that holds a refresh token (plus the app's client id and secret) instead
of an access token is checked the way the app will use it: the step ``token`` performs
the real refresh-token grant (RFC 6749 section 6) at the provider's token endpoint, then
the later steps use the access token it returns. :func:`client_credentials_step` does
the same with the client-credentials grant (section 4.4; app-only Microsoft Graph access),
and :func:`jwt_bearer_step` with the JWT bearer grant (RFC 7523: an assertion signed by
:func:`signed_jwt` with the app's or service account's RSA key; Salesforce, Google).

The token endpoint's error codes (section 5.2) become failures a person can act on:
``invalid_grant`` (refresh token expired, revoked, or issued to another client) and
``invalid_client`` (wrong id or secret) are ``authentication_failed``, with the provider's
own ``error_description`` as the reason. Some providers answer errors with HTTP 200 and
an ``error`` field: the body decides, not the status.

Only use this for providers whose refresh tokens stay valid when used (Google, Microsoft):
where refresh tokens are single-use (rotation), a check would spend the stored token.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Connector, Probe, Secret
from connectors.errors import FailureType, ProbeFailure
from connectors.saas import ApiClient, ApiResponse, example_base_url, may_quote
from connectors.text import server_text

# --- configuration ---------------------------------------------------------------------


class OAuthCredentials(BaseModel):
    """The fields every refresh-token credential has; a connector subclasses it to add its
    ``token_url`` (with the provider's default) and whatever else its provider needs."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, title="OAuth 2.0 refresh token")

    type: Literal["oauth"] = Field(
        title="Type",
        description=(
            "An OAuth 2.0 refresh token with the app's client id and secret: the check refreshes it as the app will."
        ),
    )
    client_id: str = Field(
        min_length=1,
        max_length=500,
        title="Client ID",
        description="The OAuth client (app) id the refresh token was issued to.",
        examples=["1234567890-abc123def456.apps.googleusercontent.com"],
    )
    client_secret: Secret = Field(
        title="Client secret",
        description="The OAuth client's secret, never shown.",
        examples=["example-client-secret"],
    )
    refresh_token: Secret = Field(
        title="Refresh token",
        description="The refresh token obtained when the user granted access, never shown.",
        examples=["example-refresh-token"],
    )


def token_url_field(default: str, *, issuer: str) -> Any:
    """The ``token_url`` field of an :class:`OAuthCredentials` subclass, defaulting to ``issuer``'s endpoint."""
    return Field(
        default,
        title="Token URL",
        description=f"{issuer}'s OAuth 2.0 token endpoint. Keep the default unless you test against another server.",
        examples=[default],
    )


def credential_fields(credentials: BaseModel) -> tuple[str, ...]:
    """The configuration fields a refused token is about: the refresh grant's, or the access token."""
    if isinstance(credentials, OAuthCredentials):
        return ("credentials.refresh_token", "credentials.client_id")
    return ("credentials.access_token",)


class TokenConnector(Connector):
    """A SaaS connector whose credentials are an access token (``type`` ``token``) or a grant that the
    ``token`` step exchanges for one: ``token`` is planned for the grant only."""

    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "token", "authenticate", "access")

    def planned_steps(self, config: Any) -> tuple[str, ...]:
        if getattr(config.credentials, "type", None) == "token":  # an access token: nothing to obtain
            return tuple(s for s in self.steps if s != "token")
        return tuple(self.steps)

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "credentials": {"type": "token", "access_token": "example-access-token"},
            "base_url": example_base_url(host, port),
        }


# --- the grant -------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    """What a token endpoint returned. ``value`` is secret: it is never in a repr."""

    value: str = field(repr=False)
    expires_in: int | None = None
    scope: str | None = None

    def lifetime(self) -> str:
        """`` (valid for 59 min)`` or ""."""
        if not self.expires_in:
            return ""
        if self.expires_in >= 120:
            return f" (valid for {self.expires_in // 60} min)"
        return f" (valid for {self.expires_in} s)"


# Codes meaning the grant (the refresh token) is no longer usable: RFC 6749's, and the names
# some providers use for the same thing.
_BAD_GRANT = {"invalid_grant", "invalid_refresh_token", "bad_refresh_token", "token_expired", "token_revoked"}
_BAD_CLIENT = {"invalid_client", "invalid_client_id", "bad_client_secret", "incorrect_client_credentials"}

# Microsoft's descriptions end with trace lines; the first sentence is the reason.
_TRACE_MARKERS = ("Trace ID:", "Correlation ID:", "Timestamp:")
_AADSTS = re.compile(r"\bAADSTS(\d+)\b")  # starts only at the literal: linear


def _without_trace(description: str) -> str:
    """``description`` up to its first trace line (string search: linear in any text)."""
    text = server_text(description)
    cut = min((i for marker in _TRACE_MARKERS if (i := text.find(marker)) != -1), default=len(text))
    return text[:cut].rstrip()


_CLIENT_FIELDS = ("credentials.client_id", "credentials.client_secret")
"""Where every OAuth credential of a connector keeps its client (see :class:`OAuthCredentials`)."""

_NEW_GRANT_HINT = (
    "Sign in again through the app to get a new refresh token: refresh tokens stop working when the user revokes "
    "access, changes password, or does not use them for a long time."
)
_CLIENT_HINT = (
    "Copy the client id and a current client secret from the app's registration (client secrets expire), "
    "and check that the refresh token was issued to this client."
)


async def refresh_step(
    probe: Probe,
    api: ApiClient,
    *,
    issuer: str,
    token_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    scope: str | None = None,
) -> AccessToken:
    """Step ``token``: exchange ``refresh_token`` for an access token at ``token_url``.

    ``issuer`` names the identity provider in messages (``Google``). On success the client
    sends the new access token as a bearer token from then on.
    """
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client_id,
        "client_secret": client_secret,
    }
    if scope:
        form["scope"] = scope
    return await _token_step(probe, api, issuer, token_url, form, what="the refresh token")


async def client_credentials_step(
    probe: Probe,
    api: ApiClient,
    *,
    issuer: str,
    token_url: str,
    client_id: str,
    client_secret: str,
    scope: str,
) -> AccessToken:
    """Step ``token``: get an app-only access token with the client-credentials grant."""
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret, "scope": scope}
    return await _token_step(probe, api, issuer, token_url, form, what="the client credentials")


async def _token_step(
    probe: Probe, api: ApiClient, issuer: str, token_url: str, form: dict[str, str], *, what: str
) -> AccessToken:
    api.add_secret(form.get("refresh_token", ""), form["client_secret"])
    url = httpx.URL(token_url)
    async with probe.step("token") as step:
        # No Authorization header: the client authenticates in the form (client_secret_post).
        response = await api.call("POST", url, data=form, credentials=False)
        token = token_from_response(api, issuer, response, what=what)
        api.use_bearer(token.value)
        step.message = f"{issuer} issued an access token at {url.host}{token.lifetime()}"
        return token


JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def rsa_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The unencrypted PEM RSA private key in ``pem``; ValueError (for a validator) otherwise."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("must be an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("must be an RSA private key (JWTs are signed with RS256)")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed_jwt(private_key_pem: str, claims: dict[str, Any], *, key_id: str | None = None) -> str:
    """The RS256 JWT (RFC 7519) of ``claims``, signed with the PEM RSA private key (checked at parse time)."""
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"} | ({"kid": key_id} if key_id else {})
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = rsa_private_key(private_key_pem).sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


async def jwt_bearer_step(
    probe: Probe,
    api: ApiClient,
    *,
    issuer: str,
    token_url: str,
    assertion: str,
    fields: tuple[str, ...],
    hint: str,
    refusals: Mapping[str, ProbeFailure] | None = None,
) -> AccessToken:
    """Step ``token``: exchange the signed ``assertion`` for an access token (RFC 7523).

    A refusal is about ``fields`` (where the key, the account and the token endpoint are
    configured), with ``hint`` for a refused assertion; ``refusals`` maps an RFC 6749 error
    code to the failure it means for this grant, in place of the generic one."""
    api.add_secret(assertion)
    url = httpx.URL(token_url)
    async with probe.step("token") as step:
        response = await api.call(
            "POST", url, data={"grant_type": JWT_GRANT, "assertion": assertion}, credentials=False
        )
        code = response.get("error")
        if refusals and isinstance(code, str) and code in refusals:
            raise refusals[code]
        try:
            token = token_from_response(api, issuer, response, what="the JWT assertion")
        except ProbeFailure as failure:
            if failure.type in (FailureType.AUTHENTICATION_FAILED, FailureType.AUTHORIZATION_FAILED):
                failure.hint = hint
            if failure.fields:  # the grant's names (client_id, token_url...) are not this configuration's
                failure.fields = list(fields)
            raise
        api.use_bearer(token.value)
        step.message = f"{issuer} issued an access token at {url.host}{token.lifetime()}"
        return token


def token_from_response(api: ApiClient, issuer: str, response: ApiResponse, *, what: str = "the grant") -> AccessToken:
    """The access token of a token endpoint's answer, or the failure its error means."""
    data = response.data
    if isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"]:
        raise token_error(api, issuer, data, response.status, what=what, quote=may_quote(response))
    if not response.ok:
        raise api.status_failure(
            response,
            unauthorized_hint=_CLIENT_HINT,
            credential_fields=_CLIENT_FIELDS,
            resource_fields=("credentials.token_url",),
        )
    if not isinstance(data, dict):
        raise api.not_json(response)
    value = data.get("access_token")
    if not isinstance(value, str) or not value:
        raise api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"{issuer}'s token endpoint answered without an access token",
            hint="Check token_url: it must be the provider's OAuth 2.0 token endpoint.",
        )
    api.add_secret(value, str(data.get("refresh_token") or ""), str(data.get("id_token") or ""))
    expires = data.get("expires_in")
    scope = data.get("scope")
    return AccessToken(
        value=value,
        expires_in=int(expires) if isinstance(expires, int | float | str) and str(expires).isdigit() else None,
        scope=scope if isinstance(scope, str) else None,
    )


def token_error(
    api: ApiClient, issuer: str, data: dict[str, Any], status: int, *, what: str, quote: bool = True
) -> ProbeFailure:
    """The failure an RFC 6749 error answer (``{"error", "error_description"}``) means;
    ``quote``: whether its description may be quoted (see :func:`connectors.saas.may_quote`)."""
    code = server_text(str(data["error"]), 200)
    description = data.get("error_description") if quote else None
    reason = api.clean(_without_trace(description)) if isinstance(description, str) else ""
    aadsts = {int(n) for n in _AADSTS.findall(reason)}
    if isinstance(data.get("error_codes"), list):
        aadsts |= {n for n in data["error_codes"] if isinstance(n, int)}
    said = f" ({reason})" if reason else ""
    if aadsts & {65001, 65004}:  # Microsoft: nobody consented to the permissions the app asks for
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"{issuer} refused {what}: the app lacks consent for the permissions it asks for{said}",
            fields=_CLIENT_FIELDS,
            hint=(
                "An administrator must grant admin consent to the app's API permissions (Entra admin center > App "
                "registrations > API permissions)."
            ),
        )
    if aadsts & {90002, 900023}:  # Microsoft: no such tenant
        return api.failure(
            FailureType.NOT_FOUND,
            f"{issuer} does not know the tenant{said}",
            fields=("credentials.tenant",),
            hint="Check tenant: the directory (tenant) id or a verified domain such as contoso.onmicrosoft.com.",
        )
    if code in _BAD_GRANT:
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            f"{issuer} refused {what}: {reason or 'it has expired or been revoked'}",
            fields=("credentials.refresh_token",) if "refresh_token" in what.replace(" ", "_") else _CLIENT_FIELDS,
            hint=_NEW_GRANT_HINT,
        )
    if code in _BAD_CLIENT:
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            f"{issuer} refused the OAuth client: client id or secret is wrong{said}",
            fields=_CLIENT_FIELDS,
            hint=_CLIENT_HINT,
        )
    if code == "unauthorized_client":
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            f"{issuer} does not let this client use {what}{said}",
            fields=("credentials.client_id",),
            hint="Check the client id, and that the app registration allows this grant type and is in this tenant.",
        )
    if code == "invalid_scope":
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"{issuer} refused the scopes asked for{said}",
            fields=("credentials.client_id",),
            hint="Add the missing API permissions (scopes) to the app's registration and grant them again.",
        )
    return api.failure(
        FailureType.UNEXPECTED_RESPONSE,
        f"{issuer}'s token endpoint answered with error '{api.clean(code, 60)}'{said}",
        hint="Check token_url and the client settings of the app.",
        fields=("credentials.token_url", "credentials.client_id"),
        retryable=code in {"temporarily_unavailable", "server_error"} or status >= 500,
    )
