"""The ``azure_blob`` connector: can these credentials list and read this Azure Blob Storage container?

Steps: ``resolve`` the Blob service host, open ``tcp``, for https complete a ``tls``
handshake (skipped, with a message, for an ``http://`` endpoint such as Azurite), then
``authenticate`` (Get Account Information on the container: every valid signature passes it,
whatever its permissions) and ``access`` (List Blobs under the prefix, at most a few, then a
ranged Get Blob of the first :data:`~connectors.base.FIRST_BYTES` bytes of the first blob).

Credentials, exactly one of:

- ``account_key``: requests are signed with Shared Key, per Microsoft's documented algorithm
  ("Authorize with Shared Key"), so no SDK decides where a request goes;
- ``sas_token``: a shared access signature appended to each request's query; an ``se=``
  expiry within :data:`~connectors.errors.EXPIRY_WARNING_DAYS` days is warned about;
- ``connection_string``: the portal's ``AccountName=...;AccountKey=...`` or
  ``BlobEndpoint=...;SharedAccessSignature=...`` string.

Requests go through :func:`connectors.saas.open_api`'s client, pinned to the address the ``tcp``
step reached, and every answer is bounded by the transport. Azure's error code (the
``x-ms-error-code`` header, else the XML body's ``<Code>``) decides the failure; no key, SAS
or signature is ever put in a message.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import re
from dataclasses import dataclass
from email.utils import formatdate
from typing import Annotated, Any, ClassVar
from urllib.parse import parse_qsl, quote

import httpx
from defusedxml import DefusedXmlException, ElementTree
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from connectors.base import FIRST_BYTES, Connector, ConnectorConfig, Probe, Secret
from connectors.errors import EXPIRY_WARNING_DAYS, FailureType, ProbeFailure, WarningCode
from connectors.fields import Destination, PemCertificates
from connectors.saas import (
    TRUST_FIX,
    ApiClient,
    ApiResponse,
    BaseUrl,
    EmptyIsNone,
    ca_cert_field,
    open_api,
    response_peer,
)
from connectors.transport import status_text, stream

API_VERSION = "2023-11-03"
"""The x-ms-version this connector speaks (Shared Key and SAS both need one)."""

MAX_LISTED = 5
"""Blobs asked for (maxresults): enough to skip a few empty ones for the first-byte read."""

# --- configuration -------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")


def _prefix(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


def _container(value: str) -> str:
    if "--" in value:
        raise ValueError("must not contain two hyphens in a row")
    return value


class AzureBlobConfig(ConnectorConfig):
    """Which container, in which storage account, and the credentials that must read it."""

    model_config = ConfigDict(title="Azure Blob Storage")

    account_name: Annotated[str | None, EmptyIsNone] = Field(
        None,
        pattern=r"^[a-z0-9]{3,24}$",
        title="Storage account",
        description="Name of the storage account (3 to 24 lower-case letters and digits). Not needed with a "
        "connection string, which names it.",
        examples=["acmedatalake"],
    )
    container: Annotated[str, AfterValidator(_container)] = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        title="Container",
        description="Name of the container (3 to 63 lower-case letters, digits and single hyphens).",
        examples=["exports"],
    )
    prefix: Annotated[str, AfterValidator(_prefix)] = Field(
        "",
        max_length=1024,
        title="Prefix",
        description="Only blobs whose name starts with this are read, e.g. a folder: daily/. Empty: the whole "
        "container.",
        examples=["daily/2024/"],
    )
    account_key: Annotated[Secret | None, EmptyIsNone] = Field(
        None,
        title="Account key",
        description="One of the storage account's access keys (Security + networking > Access keys), base64. "
        "Never shown.",
        examples=["Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="],
    )
    sas_token: Annotated[Secret | None, EmptyIsNone] = Field(
        None,
        title="SAS token",
        description="A shared access signature (sv=...&sig=...) with read (r) and list (l) permissions on the "
        "container. Never shown.",
        examples=["sv=2023-11-03&sr=c&sp=rl&se=2030-01-01T00:00:00Z&sig=..."],
    )
    connection_string: Annotated[Secret | None, EmptyIsNone] = Field(
        None,
        title="Connection string",
        description="The account's connection string (AccountName=...;AccountKey=... or BlobEndpoint=...;"
        "SharedAccessSignature=...). Never shown.",
        examples=[
            "DefaultEndpointsProtocol=https;AccountName=acmedatalake;AccountKey=...;EndpointSuffix=core.windows.net"
        ],
    )
    endpoint_url: Annotated[BaseUrl | None, EmptyIsNone, Destination] = Field(
        None,
        title="Blob service endpoint",
        examples=["https://acmedatalake.blob.core.windows.net", "http://127.0.0.1:10000/devstoreaccount1"],
        description="The Blob service endpoint. Empty: the connection string's BlobEndpoint, else "
        "https://<account>.blob.core.windows.net. Set it for Azurite, a sovereign cloud or a private endpoint.",
    )
    ca_cert: PemCertificates = ca_cert_field()

    @model_validator(mode="after")
    def _one_credential(self) -> AzureBlobConfig:
        given = [name for name in ("account_key", "sas_token", "connection_string") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("set exactly one of account_key, sas_token and connection_string")
        _credentials(self)  # refuses a malformed key, SAS or connection string now, not during the check
        return self

    @property
    def base_url(self) -> str:
        return _credentials(self).endpoint


# --- credentials -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Credentials:
    account: str
    endpoint: str  # no trailing slash
    field: str  # the configuration field they come from
    key: bytes | None = None
    sas: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        return "account key" if self.key is not None else "SAS token"

    @property
    def title(self) -> str:
        return "Account key" if self.key is not None else "SAS token"


def _decode_key(value: str, field: str) -> bytes:
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{field}: the account key must be base64 (copy it again from Access keys)") from None
    if not key:
        raise ValueError(f"{field}: the account key is empty")
    return key


def _parse_sas(value: str, field: str) -> tuple[tuple[str, str], ...]:
    pairs = tuple(parse_qsl(value.strip().lstrip("?"), keep_blank_values=True))
    names = {name for name, _ in pairs}
    if not {"sv", "sig"} <= names:
        raise ValueError(f"{field}: must be a SAS token (sv=...&sp=...&sig=...), without the URL before the ?")
    return pairs


def _parse_connection_string(value: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for part in value.strip().split(";"):
        if part.strip():
            name, sep, item = part.partition("=")
            if not sep:
                raise ValueError("connection_string: every part must be Name=value, separated by ;")
            parts[name.strip().lower()] = item.strip()
    return parts


def _credentials(config: AzureBlobConfig) -> _Credentials:
    """What signs the requests and where they go; ValueError (naming no value) for a malformed one."""
    endpoint = config.endpoint_url
    if config.connection_string is None:
        if config.account_name is None:
            raise ValueError("account_name is required (unless a connection string names the account)")
        endpoint = endpoint or f"https://{config.account_name}.blob.core.windows.net"
        if config.account_key is not None:
            key = _decode_key(config.account_key.get_secret_value(), "account_key")
            return _Credentials(config.account_name, endpoint, "account_key", key=key)
        assert config.sas_token is not None  # noqa: S101 - the validator requires one credential
        return _Credentials(
            config.account_name, endpoint, "sas_token", sas=_parse_sas(config.sas_token.get_secret_value(), "sas_token")
        )
    parts = _parse_connection_string(config.connection_string.get_secret_value())
    account = parts.get("accountname") or config.account_name
    if not endpoint and parts.get("blobendpoint"):
        endpoint = _check_endpoint(parts["blobendpoint"])
    if not endpoint and account:
        scheme = parts.get("defaultendpointsprotocol", "https")
        suffix = parts.get("endpointsuffix", "core.windows.net")
        endpoint = _check_endpoint(f"{scheme}://{account}.blob.{suffix}")
    if not endpoint:
        raise ValueError("connection_string: needs AccountName or BlobEndpoint")
    if not account:
        # A SAS connection string may name only the endpoint: the account is its first host label,
        # or (path-style, as Azurite's http://127.0.0.1:10000/devstoreaccount1) its first path segment.
        url = httpx.URL(endpoint)
        path_style = url.host.replace(".", "").isdigit() or ":" in url.host or url.host == "localhost"
        account = url.path.strip("/").split("/")[0] if path_style else url.host.split(".")[0]
    if not _ACCOUNT.fullmatch(account):
        raise ValueError("connection_string: its account name must be 3 to 24 lower-case letters and digits")
    if parts.get("accountkey"):
        return _Credentials(
            account, endpoint, "connection_string", key=_decode_key(parts["accountkey"], "connection_string")
        )
    if parts.get("sharedaccesssignature"):
        return _Credentials(
            account, endpoint, "connection_string", sas=_parse_sas(parts["sharedaccesssignature"], "connection_string")
        )
    raise ValueError("connection_string: needs AccountKey or SharedAccessSignature")


_ENDPOINT: TypeAdapter[str] = TypeAdapter(BaseUrl)


def _check_endpoint(value: str) -> str:
    try:
        return _ENDPOINT.validate_python(value)
    except ValidationError:
        raise ValueError("connection_string: its blob endpoint must be an http(s) URL without a query") from None


def _sas_expiry(credentials: _Credentials) -> datetime.datetime | None:
    value = dict(credentials.sas).get("se")
    if not value:
        return None
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


# --- signed requests -----------------------------------------------------------------------


def shared_key_signature(key: bytes, account: str, method: str, url: httpx.URL, headers: dict[str, str]) -> str:
    """The ``Authorization: SharedKey account:signature`` value for a request (version 2009-09-19
    and later: "Authorize with Shared Key", Blob service). ``headers``: every header sent."""
    lower = {name.lower(): value for name, value in headers.items()}
    length = lower.get("content-length", "")
    standard = [
        method.upper(),
        lower.get("content-encoding", ""),
        lower.get("content-language", ""),
        "" if length == "0" else length,
        lower.get("content-md5", ""),
        lower.get("content-type", ""),
        lower.get("date", ""),
        lower.get("if-modified-since", ""),
        lower.get("if-match", ""),
        lower.get("if-none-match", ""),
        lower.get("if-unmodified-since", ""),
        lower.get("range", ""),
    ]
    canonical_headers = "".join(
        f"{name}:{' '.join(value.split())}\n" for name, value in sorted(lower.items()) if name.startswith("x-ms-")
    )
    resource = f"/{account}{url.raw_path.split(b'?')[0].decode('ascii') or '/'}"
    params: dict[str, list[str]] = {}
    for name, value in url.params.multi_items():
        params.setdefault(name.lower(), []).append(value)
    resource += "".join(f"\n{name}:{','.join(sorted(values))}" for name, values in sorted(params.items()))
    string_to_sign = "\n".join(standard) + "\n" + canonical_headers + resource
    digest = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return f"SharedKey {account}:{base64.b64encode(digest).decode('ascii')}"


@dataclass(frozen=True)
class _Answer:
    response: ApiResponse
    code: str | None  # Azure's error code
    body: bytes
    message: str = ""  # the first line of the error's <Message>

    @property
    def unauthenticated(self) -> bool:
        """The signature or SAS itself was refused. Azure says AuthenticationFailed; Azurite (and
        Azure for some SAS faults) AuthorizationFailure with Azure's "failed to authenticate" text."""
        if self.code in _BAD_CREDENTIALS or self.response.status == 401:
            return True
        return self.code == "AuthorizationFailure" and "failed to authenticate" in self.message.lower()


_CODE = re.compile(r"^[A-Za-z0-9]{1,64}$")


def _parse_xml(body: bytes) -> Any | None:
    """The XML document in ``body``, or None. defusedxml: the server is not trusted."""
    try:
        return ElementTree.fromstring(body)
    except (ElementTree.ParseError, DefusedXmlException):
        return None


def _child_text(element: Any, name: str) -> str | None:
    found = element.find(name)
    return str(found.text or "") if found is not None else None


class _Session:
    """Signs (Shared Key) or authorizes (SAS) each request and sends it on the pinned client."""

    def __init__(self, api: ApiClient, credentials: _Credentials, container: str) -> None:
        self.api = api
        self.credentials = credentials
        self.container = container
        api.add_secret(*(value for name, value in credentials.sas if name == "sig"))

    async def send(
        self, path: str, params: dict[str, str], *, headers: dict[str, str] | None = None, limit: int | None = None
    ) -> _Answer:
        """GET ``path`` (under the endpoint) with ``params``; the body is cut at ``limit`` bytes."""
        query = [*params.items(), *self.credentials.sas]
        url = httpx.URL(self.api.base_url + path).copy_with(
            query="&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query).encode("ascii")
        )
        sent = {"x-ms-version": API_VERSION, "x-ms-date": formatdate(usegmt=True), **(headers or {})}
        if self.credentials.key is not None:
            sent["Authorization"] = shared_key_signature(
                self.credentials.key, self.credentials.account, "GET", url, sent
            )
        probe = self.api.probe
        async with stream(
            self.api.http, "GET", url, headers=sent, timeout=max(probe.remaining(), 0.05), trust_fix=TRUST_FIX
        ) as response:
            peer = response_peer(response)
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if limit is not None and len(body) >= limit and response.status_code < 300:  # errors: whole
                    body = body[:limit]
                    break
        code = response.headers.get("x-ms-error-code") if response.status_code >= 300 else None
        message = None
        if response.status_code >= 300:
            root = _parse_xml(body)
            if root is not None:
                code = code or _child_text(root, "Code")
                message = _child_text(root, "Message")
        code = code if code and _CODE.match(code) else None
        text = f"{code}: {(message or '').splitlines()[0] if message else ''}".rstrip(": ") if code else ""
        answer = ApiResponse(
            status=response.status_code, headers=response.headers, data=None, text=text, url=url, peer=peer
        )
        return _Answer(answer, code, body, (message or "").split("\n")[0][:300])


# --- failures ------------------------------------------------------------------------------

_BAD_CREDENTIALS = {"AuthenticationFailed", "InvalidAuthenticationInfo", "NoAuthenticationInformation"}
_DENIED = {
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
    "AuthorizationProtocolMismatch",
    "AuthorizationSourceIPMismatch",
    "KeyBasedAuthenticationNotPermitted",
    "InsufficientAccountPermissions",
}
_BUSY = {"ServerBusy", "OperationTimedOut", "InternalError"}


def _failure(session: _Session, answer: _Answer, what: str) -> ProbeFailure:
    api, credentials, code = session.api, session.credentials, answer.code
    response = answer.response
    field = credentials.field
    said = api.answered(response)
    if answer.unauthenticated:
        if credentials.key is not None:
            hint = (
                f"Check {field}: it must be a current access key of account '{credentials.account}' (keys change "
                "when rotated)" + ("" if field == "connection_string" else ", and account_name")
            )
        else:
            hint = (
                f"Check {field}: the SAS may be expired, revoked (its stored access policy or the key that signed "
                "it rotated), or not for this account or container; generate a new one"
            )
        return api.failure(
            FailureType.AUTHENTICATION_FAILED,
            f"The {credentials.kind} was refused: {said}",
            hint=hint + ".",
            fields=(field,) if field == "connection_string" or credentials.key is None else (field, "account_name"),
        )
    if code == "AccountIsDisabled":
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"Storage account '{credentials.account}' is disabled ({what}): {said}",
            hint="Re-enable the storage account (or its subscription) in the Azure portal, or use another account.",
            fields=("account_name",) if field != "connection_string" else (field,),
        )
    if code in _DENIED or response.status == 403:
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"The {credentials.kind} may not {what} in container '{session.container}': {said}",
            hint=_permission_hint(credentials, what),
            fields=(field,),
        )
    if code == "ContainerNotFound":
        return api.failure(
            FailureType.NOT_FOUND,
            f"Container '{session.container}' does not exist in storage account '{credentials.account}'",
            hint="Check container (names are lower-case) and that the account is the right one.",
            fields=("container",),
        )
    if code in {"ResourceNotFound", "AccountNotFound"} or response.status == 404:
        return api.failure(
            FailureType.NOT_FOUND,
            f"{said} to {what}: the storage account or endpoint is not there",
            hint="Check account_name and endpoint_url: the URL must be the Blob service endpoint of the account.",
            fields=("endpoint_url", "account_name"),
        )
    if code == "ServerBusy" or response.status == 429:
        return api.rate_limited(response)
    if code in _BUSY or response.status >= 500:
        return api.unavailable(response)
    return api.failure(
        FailureType.UNEXPECTED_RESPONSE,
        f"{said} to {what}",
        hint="Check endpoint_url: it must be the Blob service endpoint of the account (https://<account>.blob.core."
        "windows.net, or Azurite's http://host:10000/<account>).",
        fields=("endpoint_url",),
    )


def _permission_hint(credentials: _Credentials, what: str) -> str:
    if credentials.key is None:
        letter = "r (read)" if "read" in what else "l (list)"
        return (
            f"Generate a SAS whose permissions (sp) include {letter}, for this container (or an account SAS with "
            "service b and resource types c and o), allowed from the workers' IP addresses and over https."
        )
    return (
        "The account may refuse Shared Key authorization (Allow storage account key access is off) or the workers' "
        "network (firewall, private endpoint): allow it, or use a SAS token."
    )


# --- the connector -------------------------------------------------------------------------


class AzureBlobConnector(Connector):
    name = "azure_blob"
    title = "Azure Blob Storage"
    category = "files"
    icon = "azure_blob"
    documentation_url = "https://learn.microsoft.com/en-us/rest/api/storageservices/authorize-requests-to-azure-storage"
    config_model = AzureBlobConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return {
            "account_name": "devstoreaccount1",
            "container": "example",
            "account_key": base64.b64encode(b"example-account-key").decode(),
            "endpoint_url": f"http://{netloc}/devstoreaccount1",
        }

    async def check(self, config: AzureBlobConfig, probe: Probe) -> None:
        credentials = _credentials(config)
        async with open_api(probe, config, "Azure Blob Storage", headers={"Accept": "application/xml"}) as api:
            session = _Session(api, credentials, config.container)
            async with probe.step("authenticate") as step:
                step.message = await _authenticate(session, probe)
            async with probe.step("access") as step:
                step.message = await _access(session, config, probe)


async def _authenticate(session: _Session, probe: Probe) -> str:
    credentials = session.credentials
    expiry = _sas_expiry(credentials)
    now = datetime.datetime.now(datetime.UTC)
    if expiry is not None and expiry <= now:
        raise session.api.failure(
            FailureType.AUTHENTICATION_FAILED,
            f"The SAS token expired on {expiry:%Y-%m-%d %H:%M} UTC (its se= field)",
            hint=f"Generate a new SAS and put it in {credentials.field}.",
            fields=(credentials.field,),
        )
    # Get Account Information on the container: any valid signature may call it (2018-03-28+).
    answer = await session.send(f"/{session.container}", {"restype": "account", "comp": "properties"})
    # Signatures are checked before permissions: a permission refusal proves the credentials.
    proven = answer.code in {"AuthorizationPermissionMismatch", "AuthorizationResourceTypeMismatch"}
    if answer.response.status != 200 and not proven:
        raise _failure(session, answer, "call Get Account Information")
    if expiry is not None and expiry - now < datetime.timedelta(days=EXPIRY_WARNING_DAYS):
        probe.warn(
            WarningCode.TOKEN_EXPIRING,
            f"The SAS token expires on {expiry:%Y-%m-%d %H:%M} UTC, in {_days(expiry - now)}",
            hint=f"Generate a new SAS with a later expiry (se=) and update {credentials.field} before then.",
        )
    if proven:
        return (
            f"{credentials.title} accepted by account '{credentials.account}' (it may not read the account "
            "information, which is fine)"
        )
    kind = answer.response.headers.get("x-ms-account-kind", "")
    sku = answer.response.headers.get("x-ms-sku-name", "")
    about = ", ".join(session.api.clean(v, 40) for v in (kind, sku) if v)
    return f"{credentials.title} accepted by account '{credentials.account}'" + (f" ({about})" if about else "")


async def _access(session: _Session, config: AzureBlobConfig, probe: Probe) -> str:
    params = {"restype": "container", "comp": "list", "maxresults": str(MAX_LISTED)}
    if config.prefix:
        params["prefix"] = config.prefix
    listed = await session.send(f"/{config.container}", params)
    if listed.response.status != 200:
        raise _failure(session, listed, "list blobs")
    root = _parse_xml(listed.body)
    if root is None or root.tag != "EnumerationResults":
        raise session.api.failure(
            FailureType.UNEXPECTED_RESPONSE,
            f"Azure Blob Storage answered List Blobs with {status_text(listed.response.status)} but not a blob listing",
            hint="Check endpoint_url: it must be the Blob service endpoint of the account.",
            fields=("endpoint_url",),
        )
    blobs = _blobs(root)
    if not blobs:
        empty = f"Container '{config.container}' has no blob" + (
            f" under prefix '{config.prefix}'" if config.prefix else ""
        )
        probe.warn(
            WarningCode.EMPTY_LOCATION,
            empty,
            hint="Check container and prefix if you expected files there; the credentials themselves work.",
        )
        return f"{empty} yet (listed)"
    name, size = next(((n, s) for n, s in blobs if s != 0), blobs[0])
    # A zero-byte blob has no range to read: it is read whole (nothing).
    headers = {"x-ms-range": f"bytes=0-{FIRST_BYTES - 1}"} if size != 0 else {}
    read = await session.send(f"/{config.container}/{quote(name, safe='/')}", {}, headers=headers, limit=FIRST_BYTES)
    shown = session.api.clean(name, 200)
    if read.response.status not in (200, 206):
        raise _failure(session, read, f"read blob '{shown}'")
    return f"Container '{config.container}' listed; read the first {len(read.body)} bytes of '{shown}'"


def _days(left: datetime.timedelta) -> str:
    days = left.days
    return "less than a day" if days < 1 else f"{days} day" + ("s" if days > 1 else "")


def _blobs(root: Any) -> list[tuple[str, int | None]]:
    """(name, size) of the first listed blobs (a hostile listing is cut at MAX_LISTED)."""
    found: list[tuple[str, int | None]] = []
    container = root.find("Blobs")
    for blob in container.findall("Blob")[:MAX_LISTED] if container is not None else []:
        name = _child_text(blob, "Name")
        if not name:
            continue
        length = blob.find("Properties/Content-Length")
        text = str(length.text or "") if length is not None else ""
        found.append((name, int(text) if text.isdigit() and len(text) < 20 else None))
    return found
