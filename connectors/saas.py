"""Shared machinery of the connectors that check a SaaS product through its public HTTP API.

A SaaS check runs the same first steps as every network connector, against the host of
the configured ``base_url`` (the provider's real API by default, overridable for a
self-hosted product, a regional endpoint or a test server): ``resolve``, ``tcp`` and
``tls``. :func:`open_api` does those and hands back an :class:`ApiClient` whose requests
all go to the address the ``tcp`` step reached. The connector then runs its own
``authenticate`` and ``access`` steps (and ``token`` for OAuth, see :mod:`connectors.oauth`)
with :meth:`ApiClient.call`, and turns the provider's JSON error bodies into failures
with :meth:`ApiClient.status_failure` and :meth:`ApiClient.failure`.

Secrets: the credentials travel only in the ``Authorization`` header, only to the base
URL's origin (httpx drops the header when a redirect leaves it), never in a URL. Every
text that comes from the provider passes through :meth:`ApiClient.clean`, which masks the
configuration's secrets *and* tokens obtained during the check (an access token from a
refresh is not in the configuration, so ``run_check``'s scrubbing alone would miss it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import httpx
from pydantic import AfterValidator, BeforeValidator, Field, JsonValue

from connectors.base import Probe
from connectors.egress import current_policy
from connectors.errors import FailureType, ProbeFailure
from connectors.fields import DESTINATION_KEY, no_whitespace
from connectors.text import mask_secrets, server_text
from connectors.tls import TlsFields, client_context
from connectors.transport import USER_AGENT, open_pinned, retry_after, retry_after_seconds, status_text, stream

TRUST_FIX = "set ca_cert to the certificate of the authority that signed it"
"""How a user of a SaaS connector makes a private CA trusted (there is no verify_tls switch:
these checks send credentials, so they never go to an unverified server)."""

MAX_REASON = 300
"""Characters of a provider's error text kept in a message."""


# --- configuration fields --------------------------------------------------------------


# What a host of a URL may be once httpx has parsed it (IDNA-encoded): a DNS name or an IP
# literal; not a percent-encoded or zone-scoped name.
_URL_HOST = re.compile(r"[A-Za-z0-9_.-]+|[0-9A-Fa-f:.]+")


def _check_base_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        raise ValueError("is not a valid URL") from None
    if url.scheme not in ("https", "http"):
        raise ValueError("must start with https://")
    if not url.raw_host:
        raise ValueError("must include a host name")
    if not _URL_HOST.fullmatch(url.raw_host.decode("ascii", errors="replace")):
        raise ValueError("must have a plain host name or IP address")
    if url.userinfo:
        raise ValueError("must not contain a user name or password: credentials have their own fields")
    if url.query or url.fragment:
        raise ValueError("must not contain a query (?) or a fragment (#)")
    return str(url).rstrip("/")


def _empty_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


EmptyIsNone = BeforeValidator(_empty_to_none)
"""For an optional field: forms send "" for an empty one, which means None."""


BaseUrl = Annotated[str, BeforeValidator(no_whitespace), Field(max_length=2048), AfterValidator(_check_base_url)]
"""An http(s) URL without credentials, query or fragment; stored without a trailing slash."""


# A destination (see connectors.fields.Destination): credentials are sent there.
_BASE_URL_SCHEMA: dict[str, JsonValue] = {"format": "uri", DESTINATION_KEY: True}


def base_url_field(default: str | None, *, provider: str, examples: list[str], description: str = "") -> Any:
    """The ``base_url`` field of a SaaS configuration (required when ``default`` is None)."""
    text = description or (
        f"Root URL of the {provider} API. Keep the default unless you use a proxy, a regional or self-hosted "
        "endpoint, or a test server."
    )
    if default is None:
        return Field(title="API base URL", description=text, examples=examples, json_schema_extra=_BASE_URL_SCHEMA)
    return Field(default, title="API base URL", description=text, examples=examples, json_schema_extra=_BASE_URL_SCHEMA)


def ca_cert_field() -> Any:
    """The ``ca_cert`` field: PEM certificates to trust besides the system's."""
    return Field(
        None,
        title="CA certificate (PEM)",
        description=(
            "A certificate authority to trust in addition to the system's, for a self-hosted server or a "
            "TLS-inspecting proxy. Leave empty for the provider's public API."
        ),
        examples=["-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"],
    )


class ApiEndpoint(Protocol):
    """What :func:`open_api` needs from a configuration."""

    @property
    def base_url(self) -> str: ...

    @property
    def ca_cert(self) -> str | None: ...


def example_base_url(host: str, port: int, path: str = "") -> str:
    """``https://host:port/path`` for a connector's ``example_config`` (IPv6 in brackets)."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"https://{netloc}{path}"


# --- answers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiResponse:
    """One answer of the API: its status, headers and JSON body (``data`` is None when the
    body is not JSON). The transport bounds the body (:data:`connectors.transport.MAX_RESPONSE_BYTES`)."""

    status: int
    headers: httpx.Headers
    data: Any
    text: str
    url: httpx.URL
    peer: str | None = None
    """The IP address that sent the answer, when known."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def get(self, *path: str | int) -> Any:
        """``data[path[0]][path[1]]...``, or None where any step is missing."""
        value = self.data
        for key in path:
            if isinstance(key, int) and isinstance(value, list) and -len(value) <= key < len(value):
                value = value[key]
            elif isinstance(key, str) and isinstance(value, dict):
                value = value.get(key)
            else:
                return None
        return value


def provider_message(data: Any) -> str | None:
    """The human text of a provider's JSON error body, in the shapes the big APIs use:
    ``{"message"}`` (GitHub, Notion, Confluence), ``{"error": {"message"}}`` (Google,
    Microsoft Graph), ``{"error_description"}`` (OAuth 2.0), ``{"error": "code"}`` (Slack)."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        return str(error["message"])
    for key in ("message", "error_description", "errorMessage"):
        if isinstance(data.get(key), str) and data[key]:
            return str(data[key])
    if isinstance(error, str) and error:
        return error
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


# --- the client ------------------------------------------------------------------------


@dataclass
class ApiClient:
    """Requests to one provider's API, pinned to the checked address. Made by :func:`open_api`."""

    provider: str
    """The product's name as users know it (``Notion``), used in every message."""
    base_url: str
    probe: Probe
    http: httpx.AsyncClient = field(repr=False)
    secrets: list[str] = field(default_factory=list, repr=False)
    _authorization: str | None = field(default=None, repr=False)

    # credentials

    def use_authorization(self, value: str, *secrets: str) -> None:
        """Send ``Authorization: value`` with every call to the base URL; ``secrets`` are masked in all texts."""
        self._authorization = value
        self.add_secret(*secrets)

    def use_bearer(self, token: str) -> None:
        self.use_authorization(f"Bearer {token}", token)

    def use_basic(self, user: str, password: str) -> None:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.use_authorization(f"Basic {pair}", password, pair)

    def add_secret(self, *values: str) -> None:
        """Mask ``values`` in every text this client puts in a message."""
        self.secrets.extend(v for v in values if v)

    # requests

    def url(self, path: str) -> httpx.URL:
        """The base URL with ``path`` appended (``path`` starts with ``/``; its base path is kept)."""
        return httpx.URL(self.base_url + path)

    async def call(
        self,
        method: str,
        path_or_url: str | httpx.URL,
        *,
        params: Mapping[str, str | int] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        credentials: bool = True,
    ) -> ApiResponse:
        """Send one request and read its answer (bounded by the transport).

        ``path_or_url``: a path under the base URL, or an absolute URL (a token endpoint).
        ``data`` is sent as a form, ``json`` as a JSON body (an RPC API such as Dropbox's).
        ``credentials``: send the Authorization header (only ever to the base URL's origin).
        A network or protocol error is raised as a ProbeFailure; any status is returned.
        """
        url = self.url(path_or_url) if isinstance(path_or_url, str) else path_or_url
        sent = httpx.Headers(headers or {})
        if credentials and self._authorization and _same_origin(url, httpx.URL(self.base_url)):
            sent["Authorization"] = self._authorization
        for attempt in range(2):
            timeout = max(self.probe.remaining(), 0.05)
            async with stream(
                self.http,
                method,
                url,
                params=params,
                data=data,
                json=json,
                headers=sent,
                timeout=timeout,
                trust_fix=TRUST_FIX,
            ) as response:
                peer = response_peer(response)
                body = await response.aread()
            answer = _parse(response, body, peer)
            wait = retry_after_seconds(answer.headers)
            # Honour one Retry-After when it leaves time for the retry's answer (a second of it).
            if attempt or answer.status != 429 or wait is None or wait + 1.0 > self.probe.remaining():
                return answer
            await asyncio.sleep(wait)
        return answer

    # texts and failures

    def clean(self, text: str | None, limit: int = MAX_REASON) -> str:
        """``text`` on one line, at most ``limit`` characters, every known secret masked."""
        if not text:
            return ""
        text = mask_secrets(" ".join(_CONTROL.sub(" ", server_text(text)).split()), self.secrets)
        if len(text) > limit:
            text = text[: limit - 1].rstrip() + "…"
        return text

    def reason(self, response: ApiResponse) -> str:
        """The provider's own words for an answer, cleaned; "" when it gave none or
        :func:`may_quote` forbids quoting its body."""
        if not may_quote(response):
            return ""
        message = provider_message(response.data)
        if message is None and response.data is None:
            message = response.text  # a plain-text or HTML error page: its first words
        return self.clean(message)

    def answered(self, response: ApiResponse) -> str:
        """``Notion answered 404 Not Found: <the provider's reason>``."""
        reason = self.reason(response)
        return f"{self.provider} answered {status_text(response.status)}" + (f": {reason}" if reason else "")

    def failure(
        self,
        type: FailureType,
        message: str,
        *,
        hint: str | None = None,
        retryable: bool | None = None,
        fields: tuple[str, ...] | list[str] = (),
        retry_after_s: float | None = None,
    ) -> ProbeFailure:
        """A ProbeFailure whose message and hint are cleaned of every known secret."""
        return ProbeFailure(
            type,
            self.clean(message, limit=1000),
            hint=self.clean(hint, limit=1000) if hint else None,
            retryable=retryable,
            fields=fields,
            retry_after_s=retry_after_s,
        )

    def status_failure(
        self,
        response: ApiResponse,
        *,
        unauthorized_hint: str | None = None,
        forbidden_hint: str | None = None,
        not_found_hint: str | None = None,
        credential_fields: tuple[str, ...] = (),
        resource_fields: tuple[str, ...] = (),
    ) -> ProbeFailure:
        """The generic meaning of an HTTP error status: 401 authentication, 403 authorization
        (both about ``credential_fields``), 404/410 not found (about ``resource_fields``), 429
        rate limited, 5xx provider unavailable, any other unexpected (about base_url).
        Connectors recognise their provider's special bodies first and fall back to this."""
        status = response.status
        message = self.answered(response)
        if status == 401:
            return self.failure(
                FailureType.AUTHENTICATION_FAILED,
                message,
                hint=unauthorized_hint
                or f"Check the {self.provider} credentials: the token may be wrong, expired or revoked.",
                fields=credential_fields,
            )
        if status == 403:
            return self.failure(
                FailureType.AUTHORIZATION_FAILED, message, hint=forbidden_hint, fields=credential_fields
            )
        if status in (404, 410):
            return self.failure(FailureType.NOT_FOUND, message, hint=not_found_hint, fields=resource_fields)
        if status == 429:
            return self.rate_limited(response)
        if status >= 500:
            return self.unavailable(response)
        if 200 <= status < 300:
            return self.not_json(response)
        return self.failure(
            FailureType.UNEXPECTED_RESPONSE,
            message,
            hint=f"Check base_url: it must be the root of the {self.provider} API.",
            fields=("base_url",),
        )

    def rate_limited(self, response: ApiResponse) -> ProbeFailure:
        """A 429 (or a provider's own "slow down" answer) that did not clear within the deadline."""
        wait = retry_after_seconds(response.headers)
        return self.failure(
            FailureType.RATE_LIMITED,
            f"{self.provider} is rate limiting these credentials ({status_text(response.status)})"
            + (f" and asked to wait {wait:g} s, more than this test's deadline left" if wait is not None else ""),
            hint=f"Try again {retry_after(response.headers)}; if it persists, other clients may be using up the "
            "same quota.",
            retry_after_s=wait,
        )

    def unavailable(self, response: ApiResponse) -> ProbeFailure:
        """A 5xx: an outage or maintenance of the provider, not a fault of the configuration."""
        return self.failure(
            FailureType.PROVIDER_UNAVAILABLE,
            self.answered(response),
            hint=f"{self.provider} could not handle the request now: check its status page, then try again"
            + (f" {retry_after(response.headers)}." if retry_after_seconds(response.headers) is not None else "."),
            retry_after_s=retry_after_seconds(response.headers),
        )

    def wrong_endpoint(self, response: ApiResponse) -> ProbeFailure:
        """A 404/405 for an endpoint every account has: base_url is not the API's root."""
        return self.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"{self.provider} answered {status_text(response.status)} for {response.url.path}, an endpoint the API "
            "always has: base_url does not point at the API",
            hint=f"Check base_url: it must be the root of the {self.provider} API.",
            fields=("base_url",),
        )

    def not_json(self, response: ApiResponse) -> ProbeFailure:
        """A 2xx answer that is not the JSON object the API documents."""
        kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
        return self.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"{self.provider} answered {status_text(response.status)} to {response.url.path}, but not with the "
            f"JSON the API documents ({kind})",
            hint=f"Check base_url: it must be the root of the {self.provider} API, not a web page.",
            fields=("base_url",),
        )

    def require_json(self, response: ApiResponse) -> dict[str, Any]:
        """``response.data`` when the answer is a 2xx JSON object; else its failure."""
        if not response.ok:
            raise self.status_failure(response)
        if not isinstance(response.data, dict):
            raise self.not_json(response)
        return response.data


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    def port(url: httpx.URL) -> int | None:
        return url.port or {"https": 443, "http": 80}.get(url.scheme)

    return a.scheme == b.scheme and a.raw_host.lower() == b.raw_host.lower() and port(a) == port(b)


def response_peer(response: httpx.Response) -> str | None:
    """The IP address the response came from (httpcore's ``network_stream`` extension)."""
    stream = response.extensions.get("network_stream")
    address = stream.get_extra_info("server_addr") if stream is not None else None
    return str(address[0]) if isinstance(address, tuple) and address else None


def may_quote_response(response: httpx.Response) -> bool:
    """:func:`may_quote` for an httpx response that is still open."""
    return current_policy().may_name(response_peer(response))


def may_quote(response: ApiResponse) -> bool:
    """Whether a message may quote ``response``'s body: not, in production, when it came
    from a non-public address (an internal service a tenant pointed the check at)."""
    return current_policy().may_name(response.peer)


def _parse(response: httpx.Response, body: bytes, peer: str | None = None) -> ApiResponse:
    data: Any = None
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
    text = body[:2000].decode("utf-8", errors="replace")
    if "<html" in text[:500].lower():
        text = ""  # an HTML error page says nothing useful in one line
    return ApiResponse(
        status=response.status_code, headers=response.headers, data=data, text=text, url=response.url, peer=peer
    )


_TLS_FIELDS = TlsFields(host=("base_url",), trust=("ca_cert",), endpoint=("base_url",))
"""What a failed handshake with the API names: there is no verify_tls switch (see TRUST_FIX)."""


@asynccontextmanager
async def open_api(
    probe: Probe, endpoint: ApiEndpoint, provider: str, *, headers: Mapping[str, str] | None = None
) -> AsyncIterator[ApiClient]:
    """Steps ``resolve``, ``tcp`` and ``tls`` against ``endpoint.base_url``'s host, then a
    client for the API pinned to the address that answered. ``headers`` go with every call
    (API version headers; never credentials: see :meth:`ApiClient.use_authorization`)."""
    url = httpx.URL(endpoint.base_url)
    host = url.raw_host.decode("ascii")  # IDNA-encoded; an IPv6 literal without brackets
    port = url.port or (443 if url.scheme == "https" else 80)
    transport = await open_pinned(
        probe,
        host,
        port,
        client_context(ca_pem=endpoint.ca_cert),
        https=url.scheme == "https",
        plain="http:// base URL: no TLS, the credentials travel unencrypted",
        trust_fix=TRUST_FIX,
        tls_fields=_TLS_FIELDS,
    )
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
    async with httpx.AsyncClient(
        transport=transport,
        headers=sent,
        follow_redirects=True,
        max_redirects=5,
        trust_env=False,  # no proxy from the environment: the calls must go where tcp/tls went
    ) as http:
        yield ApiClient(provider=provider, base_url=endpoint.base_url, probe=probe, http=http)
