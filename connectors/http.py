"""The ``http`` connector: does an HTTP(S) URL answer, with these credentials, as expected?

Steps: ``resolve`` the host, open ``tcp``, for https complete a ``tls`` handshake with the
configured trust (so certificate problems are named as such), then send one ``request`` on
the connection those steps opened (see :mod:`connectors.transport`). The response body is
never read: a URL to a large file costs one round trip.
"""

from __future__ import annotations

import base64
import re
import time
import typing
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import Destination, PemCertificates, WebUrl
from connectors.tls import URL_FIELDS, client_context
from connectors.transport import USER_AGENT, busy_failure, open_pinned, status_text, stream

# --- configuration -------------------------------------------------------------------

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 header field name
# Headers the client must own: credentials (they belong in auth, which keeps them secret)
# and the ones that would contradict the URL or the framing of the request.
_RESERVED = {"authorization", "proxy-authorization", "host", "content-length", "transfer-encoding", "connection"}


def _header_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise ValueError("is not a valid HTTP header name")
    if name.lower() in _RESERVED:
        raise ValueError(f"header {name} cannot be set here (credentials go in auth)")
    return name


def _header_value(value: str) -> str:
    # CR/LF would let a value inject headers; httpx refuses them with the value in the error text.
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must not contain line breaks or NUL")
    return value


def _header_secret(value: SecretStr) -> SecretStr:
    _header_value(value.get_secret_value())
    return value


HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderValue = Annotated[str, AfterValidator(_header_value)]
HeaderSecret = Annotated[Secret, AfterValidator(_header_secret)]


class _Auth(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class NoAuth(_Auth):
    model_config = ConfigDict(title="No authentication")
    type: Literal["none"] = Field("none", title="Type", description="No credentials are sent.")


class BasicAuth(_Auth):
    model_config = ConfigDict(title="Basic authentication")
    type: Literal["basic"] = Field(title="Type", description="HTTP Basic authentication (RFC 7617).")
    username: str = Field(
        min_length=1,
        pattern=r"^[^:\r\n\x00]*$",
        title="User name",
        description="Sent in the Authorization header; no colon.",
        examples=["reader"],
    )
    password: HeaderSecret = Field(
        title="Password", description="Sent in the Authorization header, never shown.", examples=["s3cret"]
    )


class BearerAuth(_Auth):
    model_config = ConfigDict(title="Bearer token")
    type: Literal["bearer"] = Field(
        title="Type", description="Authorization: Bearer <token> (OAuth 2 access tokens, API tokens)."
    )
    token: HeaderSecret = Field(title="Token", description="The bearer token, never shown.", examples=["eyJhbGciOi..."])


class HeaderAuth(_Auth):
    model_config = ConfigDict(title="API key header")
    type: Literal["header"] = Field(title="Type", description="A secret sent in a header of your choice (API keys).")
    name: HeaderName = Field(
        title="Header name", description="The header that carries the secret.", examples=["X-API-Key"]
    )
    value: HeaderSecret = Field(title="Header value", description="The secret, never shown.", examples=["key_live_..."])


Auth = Annotated[NoAuth | BasicAuth | BearerAuth | HeaderAuth, Field(discriminator="type")]


class HttpConfig(ConnectorConfig):
    """How to reach an HTTP(S) endpoint and what counts as a good answer."""

    model_config = ConfigDict(title="HTTP(S) endpoint")

    url: Annotated[WebUrl, Destination] = Field(
        title="URL",
        description="The http:// or https:// URL to request. No user name or password in it: use auth.",
        examples=["https://api.example.com/health"],
    )
    method: Literal["GET", "HEAD"] = Field(
        "GET",
        title="Method",
        description="GET, or HEAD for servers that answer it. The body of the answer is never read.",
        examples=["GET"],
    )
    auth: Auth = Field(
        NoAuth(type="none"),
        title="Authentication",
        description="Credentials, sent only to the URL's host (not to another host a redirect leads to).",
        examples=[{"type": "none"}, {"type": "bearer", "token": "eyJhbGciOi..."}],
    )
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        title="Extra headers",
        description="Non-secret headers to send; they are shown in clear. Secrets go in auth.",
        examples=[{"Accept": "application/json"}],
    )
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=list,
        title="Expected status codes",
        description="The status codes that count as success. Empty (the default): any 2xx.",
        examples=[[200, 204]],
    )
    verify_tls: bool = Field(
        True,
        title="Verify TLS certificate",
        description=(
            "Check that an https server's certificate is trusted, current and for this host. Turn off only for tests."
        ),
        examples=[True],
    )
    ca_cert: PemCertificates = Field(
        None,
        title="CA certificate (PEM)",
        description=(
            "A certificate to trust in addition to the system's, e.g. a private CA or a self-signed server "
            "certificate. Ignored when verify_tls is off."
        ),
        examples=["-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"],
    )
    follow_redirects: bool = Field(
        True,
        title="Follow redirects",
        description=(
            "Follow 3xx answers (up to 20) and judge the final one; off: a redirect fails unless its status is "
            "expected."
        ),
        examples=[True],
    )


# --- the connector -------------------------------------------------------------------


class HttpConnector(Connector):
    name = "http"
    title = "HTTP(S) endpoint"
    category = "web"
    documentation_url = "https://developer.mozilla.org/en-US/docs/Web/HTTP/Status"
    config_model = HttpConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "request")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return {"url": f"http://{netloc}/health", "auth": {"type": "bearer", "token": "example-token"}}

    async def check(self, config: HttpConfig, probe: Probe) -> None:
        host = (config.url.host or "").strip("[]")  # pydantic keeps IPv6 brackets; sockets want none
        https = config.url.scheme == "https"
        port = config.url.port or (443 if https else 80)
        context = client_context(verify=config.verify_tls, ca_pem=config.ca_cert)
        transport = await open_pinned(
            probe, host, port, context, https=https, plain="http:// URL: no TLS", tls_fields=URL_FIELDS
        )
        async with probe.step("request") as step:
            if not https and not isinstance(config.auth, NoAuth):
                _warn_cleartext(probe, config)
            step.message = await _request(config, probe, transport)


def _warn_cleartext(probe: Probe, config: HttpConfig) -> None:
    """WEAK_AUTHENTICATION: the credentials go over plain http://, readable on the way."""
    probe.warn(
        WarningCode.WEAK_AUTHENTICATION,
        f"The {config.auth.type} credentials are sent to {config.url.host} over plain http://, unencrypted: anyone "
        "on the network path can read and reuse them",
        hint="Use the server's https:// URL (and ca_cert if its certificate is private).",
    )


_USER_AGENT_HEADERS = httpx.Headers({"User-Agent": USER_AGENT})


async def _request(config: HttpConfig, probe: Probe, transport: httpx.AsyncBaseTransport) -> str:
    """Send the request; the success message, or a ProbeFailure for a bad answer."""
    headers = _USER_AGENT_HEADERS.copy()
    headers.update(config.headers)
    timeout = probe.remaining()
    async with httpx.AsyncClient(
        transport=transport,
        headers=headers,
        timeout=timeout,
        follow_redirects=config.follow_redirects,
        trust_env=False,  # no proxy from the environment: the request must go where tcp/tls went
        event_hooks={"request": [_credentials_hook(config)]},
    ) as client:
        started = time.perf_counter()
        async with stream(client, config.method, str(config.url), timeout=timeout) as response:
            elapsed_ms = (time.perf_counter() - started) * 1000
    status = response.status_code
    expected = status in config.expected_status if config.expected_status else 200 <= status < 300
    if not expected:
        raise _status_failure(response, config)
    redirects = len(response.history)
    after = f" after {redirects} redirect{'s' if redirects > 1 else ''}" if redirects else ""
    return f"HTTP {status_text(status)} in {elapsed_ms:.0f} ms{after}"


def _credentials_hook(config: HttpConfig) -> typing.Callable[[httpx.Request], typing.Awaitable[None]]:
    """A hook run before every request, redirects included, that sets the credentials for
    the URL's own host and removes them for any other (httpx only drops Authorization)."""
    auth = config.auth
    credentials: dict[str, str] = {}
    if isinstance(auth, BasicAuth):
        pair = f"{auth.username}:{auth.password.get_secret_value()}".encode()
        credentials["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    elif isinstance(auth, BearerAuth):
        credentials["Authorization"] = f"Bearer {auth.token.get_secret_value()}"
    elif isinstance(auth, HeaderAuth):
        credentials[auth.name] = auth.value.get_secret_value()
    host = (config.url.host or "").strip("[]").lower()
    scheme = config.url.scheme

    async def hook(request: httpx.Request) -> None:
        # Same host, and never from https down to plain http.
        # raw_host: IDNA-encoded like pydantic's host (url.host would be the Unicode form).
        trusted = request.url.raw_host.decode("ascii").lower() == host and (
            request.url.scheme == scheme or request.url.scheme == "https"
        )
        for name, value in credentials.items():
            if trusted:
                request.headers[name] = value
            else:
                request.headers.pop(name, None)

    return hook


def _status_failure(response: httpx.Response, config: HttpConfig) -> ProbeFailure:
    status = response.status_code
    answered = f"The server answered {status_text(status)}"
    if status == 401:
        if isinstance(config.auth, NoAuth):
            return ProbeFailure(
                FailureType.AUTHENTICATION_FAILED,
                f"{answered}: it needs credentials",
                hint="Set auth to the credentials this URL needs.",
                fields=("auth",),
            )
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED, f"{answered}: check the credentials", fields=_credential_fields(config)
        )
    if status == 403:
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"{answered}: access to {response.url.path} is not allowed "
            + ("without credentials" if isinstance(config.auth, NoAuth) else "with these credentials"),
            fields=("url", "auth"),
        )
    if status in (404, 410):
        return ProbeFailure(
            FailureType.NOT_FOUND,
            f"{answered} for {response.url.path}",
            hint="Check the path of the URL.",
            fields=("url",),
        )
    if busy := busy_failure(status, response.headers, answered):
        return busy
    if response.is_redirect:
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"{answered}, a redirect: turn on follow_redirects or add {status} to expected_status",
            fields=("follow_redirects", "expected_status"),
        )
    wanted = ", ".join(map(str, config.expected_status)) if config.expected_status else "a 2xx status"
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE, f"{answered}, expected {wanted}", fields=("url", "expected_status")
    )


def _credential_fields(config: HttpConfig) -> tuple[str, ...]:
    """The fields of the credentials a 401 refused."""
    auth = config.auth
    if isinstance(auth, BasicAuth):
        return ("auth.username", "auth.password")
    if isinstance(auth, BearerAuth):
        return ("auth.token",)
    return ("auth.name", "auth.value")
