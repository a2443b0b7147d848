"""The ``webdav`` connector: can these credentials list this WebDAV folder and read a file in it?

For Nextcloud, ownCloud, SharePoint's WebDAV and any RFC 4918 server. Steps: ``resolve``,
``tcp``, ``tls`` against the URL's host, ``authenticate`` (OPTIONS without and then with the
credentials: the first answer's challenge says which schemes the server offers, the second
proves the credentials and must carry a ``DAV`` header) and ``access`` (PROPFIND with
``Depth: 1`` on the folder, then the first :data:`~connectors.base.FIRST_BYTES` bytes of the
first file in it with ``Range``).

The multistatus answer is parsed with defusedxml as it arrives, and only until the first file
(at most :data:`MAX_LISTING_BYTES` and :data:`MAX_ENTRIES` entries): a folder of a million
files costs no more than one of ten. A file's href must stay on the server's origin (the
credentials go with the read). A server that offers only Basic authentication over plain
http:// is a ``weak_authentication`` warning; an empty folder an ``empty_location`` one.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar
from urllib.parse import quote, unquote
from xml.etree.ElementTree import ParseError

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser
from pydantic import AfterValidator, ConfigDict, Field, model_validator

from connectors.base import FIRST_BYTES, Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import Destination, PemCertificates
from connectors.saas import ApiClient, ApiResponse, BaseUrl, ca_cert_field, example_base_url, open_api, response_peer
from connectors.text import server_text
from connectors.transport import status_text, stream

PROVIDER = "The WebDAV server"

MAX_LISTING_BYTES = 1024 * 1024
"""Bytes of a PROPFIND answer read while looking for the first file."""

MAX_ENTRIES = 1000
"""Entries of a PROPFIND answer looked at while looking for the first file."""

_PROPFIND = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/></d:prop></d:propfind>'
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_HINT = "Check url: it must be the WebDAV endpoint (Nextcloud: /remote.php/dav/files/USER), not the web UI."


# --- configuration -------------------------------------------------------------------------


def _path(value: str) -> str:
    if _CONTROL.search(value) or "\\" in value:
        raise ValueError("must not contain control characters, line breaks or backslashes")
    segments = [s for s in value.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise ValueError("must be a path inside the WebDAV URL, without . or ..")
    return "/".join(segments)


class WebDavConfig(ConnectorConfig):
    """The WebDAV server, the folder to read, and the credentials that must read it."""

    model_config = ConfigDict(title="WebDAV (Nextcloud, ownCloud, SharePoint)")

    url: Annotated[BaseUrl, Destination] = Field(
        title="WebDAV URL",
        description=(
            "The http:// or https:// URL of the WebDAV endpoint, e.g. Nextcloud's "
            "https://cloud.example.com/remote.php/dav/files/USER. The credentials are sent there."
        ),
        examples=["https://cloud.example.com/remote.php/dav/files/alice"],
    )
    path: Annotated[str, Field(max_length=2000), AfterValidator(_path)] = Field(
        "",
        title="Folder",
        description="The folder to read, as a path under the URL (names separated by /); empty: the URL itself.",
        examples=["Documents/Handbook"],
    )
    username: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        pattern=r"^[^:\r\n\x00]*$",
        title="User name",
        description="The user name for Basic authentication (Nextcloud: the login name). Empty with a token.",
        examples=["alice"],
    )
    password: Secret | None = Field(
        None,
        title="Password",
        description="The password (Nextcloud, ownCloud: an app password) for Basic authentication; never shown.",
        examples=["example-app-password"],
    )
    token: Secret | None = Field(
        None,
        title="Bearer token",
        description="An OAuth 2.0 access token sent as Authorization: Bearer, instead of a user name and password.",
        examples=["example-access-token"],
    )
    ca_cert: PemCertificates = ca_cert_field()

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> WebDavConfig:
        basic = self.username is not None or self.password is not None
        if basic and self.token is not None:
            raise ValueError("set either username and password, or token, not both")
        if basic and (self.username is None or self.password is None):
            raise ValueError("Basic authentication needs both username and password")
        if not basic and self.token is None:
            raise ValueError("set username and password, or token")
        return self

    @property
    def base_url(self) -> str:
        """What :func:`connectors.saas.open_api` connects to."""
        return self.url

    @property
    def credential_fields(self) -> tuple[str, ...]:
        return ("token",) if self.token is not None else ("username", "password")


# --- the connector -------------------------------------------------------------------------


class WebDavConnector(Connector):
    name = "webdav"
    title = "WebDAV (Nextcloud, ownCloud, SharePoint)"
    category = "files"
    icon = "webdav"
    documentation_url = "https://www.rfc-editor.org/rfc/rfc4918"
    config_model = WebDavConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "url": example_base_url(host, port, "/remote.php/dav/files/reader"),
            "username": "reader",
            "password": "example-password",
        }

    async def check(self, config: WebDavConfig, probe: Probe) -> None:
        async with open_api(probe, config, PROVIDER) as api:
            authorization = _authorization(api, config)
            async with probe.step("authenticate") as step:
                step.message = await _authenticate(api, config, authorization)
            async with probe.step("access") as step:
                step.message = await _access(api, config, {"Authorization": authorization})


# --- authenticate --------------------------------------------------------------------------


def _schemes(response: ApiResponse) -> set[str]:
    """The authentication schemes a 401's ``WWW-Authenticate`` challenges offer (lower case)."""
    found: set[str] = set()
    for value in response.headers.get_list("www-authenticate")[:20]:
        # Each challenge starts with its scheme; parameters follow (``Basic realm="x", Bearer``).
        for part in value[:2000].split(","):
            word = part.strip().split(" ", 1)[0]
            if word and "=" not in word:
                found.add(word.lower()[:40])
    return found


def _authorization(api: ApiClient, config: WebDavConfig) -> str:
    """The Authorization header's value; its secret parts are masked in every text from then on."""
    if config.token is not None:
        token = config.token.get_secret_value()
        api.add_secret(token)
        return f"Bearer {token}"
    assert config.username is not None and config.password is not None  # the validator's promise
    pair = base64.b64encode(f"{config.username}:{config.password.get_secret_value()}".encode()).decode("ascii")
    api.add_secret(config.password.get_secret_value(), pair)
    return f"Basic {pair}"


async def _authenticate(api: ApiClient, config: WebDavConfig, authorization: str) -> str:
    # First without credentials: a 401's challenge says which schemes the server offers.
    anonymous = await api.call("OPTIONS", "", headers={"Accept": "*/*"})
    offered = _schemes(anonymous) if anonymous.status == 401 else set()
    api.use_authorization(authorization)
    answer = await api.call("OPTIONS", "", headers={"Accept": "*/*"})
    who = f"user {config.username!r}" if config.username else "the token"
    if answer.status == 401:
        raise _unauthorized(api, config, answer, offered)
    if answer.status == 403:
        raise api.failure(
            FailureType.AUTHORIZATION_FAILED,
            f"{api.answered(answer)}: {who} may not use WebDAV here",
            hint="Check that the account may use WebDAV (some servers turn it off per user or per group).",
            fields=config.credential_fields,
        )
    if answer.status in (404, 410):
        raise api.failure(
            FailureType.NOT_FOUND,
            f"{api.answered(answer)} for {answer.url.path}",
            hint="Check url: the WebDAV endpoint, e.g. https://cloud.example.com/remote.php/dav/files/USER.",
            fields=("url",),
        )
    if not 200 <= answer.status < 300 and answer.status not in (405, 501):
        raise _status_failure(api, config, answer)
    dav = answer.headers.get("dav", "")[:500]
    if answer.status in (405, 501) or "1" not in [c.strip() for c in dav.split(",")]:
        raise _wrong_url(api, f"{api.answered(answer)} to OPTIONS, without a DAV header: this is not a WebDAV server")
    _warn_weak(api, config, offered)
    if anonymous.status == 401:
        return f"Signed in with {who} (DAV {api.clean(dav, 60)})"
    return f"WebDAV server found (DAV {api.clean(dav, 60)}); it needs no sign-in for OPTIONS"


def _unauthorized(api: ApiClient, config: WebDavConfig, answer: ApiResponse, offered: set[str]) -> ProbeFailure:
    used = "bearer" if config.token is not None else "basic"
    if config.username:
        hint = (
            "Check username and password (Nextcloud and ownCloud with two-factor sign-in need an app password: "
            "Settings > Security > Devices & sessions)."
        )
    else:
        hint = "Check token: it may be wrong, expired or revoked."
    if offered and used not in offered:
        other = "a user name and password" if used == "bearer" else "a token"
        hint += f" The server asks for {', '.join(sorted(offered))} authentication: it may want {other} instead."
    return api.failure(
        FailureType.AUTHENTICATION_FAILED,
        api.answered(answer) + (f": user {config.username!r} was not accepted" if config.username else ""),
        hint=hint,
        fields=config.credential_fields,
    )


def _warn_weak(api: ApiClient, config: WebDavConfig, offered: set[str]) -> None:
    if not config.url.startswith("http://"):
        return
    if offered == {"basic"} or (not offered and config.username is not None):
        api.probe.warn(
            WarningCode.WEAK_AUTHENTICATION,
            "The server offers only Basic authentication, over plain http://: passwords travel unencrypted",
            hint="Serve WebDAV over https:// and set url to the https:// address.",
        )


def _status_failure(api: ApiClient, config: WebDavConfig, answer: ApiResponse) -> ProbeFailure:
    """The meaning of any other status: 429, 5xx, or not a WebDAV answer (about url)."""
    if answer.status == 429:
        return api.rate_limited(answer)
    if answer.status >= 500:
        return api.unavailable(answer)
    return _wrong_url(api, f"{api.answered(answer)} to {answer.url.path}")


# --- access ----------------------------------------------------------------------------------


@dataclass
class _Entry:
    href: str = ""
    collection: bool = False


@dataclass
class _Listing:
    """A parser target for a multistatus answer: its entries, until the first file (or the bound)."""

    root: str | None = None
    entries: list[_Entry] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)
    current: _Entry | None = None
    text: list[str] = field(default_factory=list)

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        name = tag.rsplit("}", 1)[-1]
        if self.root is None:
            self.root = name
        if name == "response" and len(self.stack) == 1:
            self.current = _Entry()
        elif self.current is not None and name == "collection" and "resourcetype" in self.stack:
            self.current.collection = True
        if name == "href":
            self.text = []
        self.stack.append(name)

    def end(self, tag: str) -> None:
        name = self.stack.pop() if self.stack else ""
        if self.current is None:
            return
        if name == "href" and len(self.stack) == 2 and not self.current.href:
            self.current.href = "".join(self.text).strip()[:4000]
        elif name == "response":
            self.entries.append(self.current)
            self.current = None

    def data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "href" and sum(map(len, self.text)) < 4000:
            self.text.append(data)

    def close(self) -> None:
        pass

    def done(self, folder: str) -> bool:
        return len(self.entries) >= MAX_ENTRIES or any(_is_file(e, folder) for e in self.entries)


def _clean_path(href: str) -> str:
    try:
        path = httpx.URL(href).path
    except httpx.InvalidURL:  # a server's garbage: compared as it is, never requested
        path = href
    return unquote(path).rstrip("/")


def _is_file(entry: _Entry, folder: str) -> bool:
    return not entry.collection and _clean_path(entry.href) != folder


def _folder_url(config: WebDavConfig) -> str:
    return config.url + "/" + "".join(quote(s, safe="") + "/" for s in config.path.split("/") if s)


def _shown(config: WebDavConfig) -> str:
    return f"folder '/{config.path}'" if config.path else "the WebDAV URL's folder"


async def _access(api: ApiClient, config: WebDavConfig, auth: dict[str, str]) -> str:
    url = httpx.URL(_folder_url(config))
    folder = unquote(url.path).rstrip("/")
    listing = _Listing()
    headers = {**auth, "Depth": "1", "Content-Type": "application/xml; charset=utf-8", "Accept": "*/*"}
    async with stream(
        api.http, "PROPFIND", url, headers=headers, content=_PROPFIND, timeout=max(api.probe.remaining(), 0.05)
    ) as response:
        if response.status_code != 207:
            raise await _listing_failure(api, config, response)
        await _parse_listing(api, response, listing, folder)
    where = _shown(config)
    if listing.root != "multistatus":
        raise _wrong_url(
            api, f"{PROVIDER} answered PROPFIND on the {where} with something that is not a WebDAV multistatus"
        )
    own = [e for e in listing.entries if _clean_path(e.href) == folder]
    if own and not own[0].collection:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"'/{config.path}' is a file, not a folder",
            hint="Set path to the folder that holds the documents.",
            fields=("path",),
        )
    children = [e for e in listing.entries if _clean_path(e.href) != folder]
    first = next((e for e in children if not e.collection), None)
    if first is None:
        if not children:
            api.probe.warn(
                WarningCode.EMPTY_LOCATION,
                f"The {where} is empty",
                hint="Check path (and url), or put the documents to sync in this folder.",
            )
            return f"The {where} is readable, but empty"
        return f"The {where} is readable; it holds folders only ({len(children)} seen), no file was read"
    return await _read_first(api, config, url, first, auth)


async def _parse_listing(api: ApiClient, response: httpx.Response, listing: _Listing, folder: str) -> None:
    parser = DefusedXMLParser(target=listing)
    fed = 0
    try:
        async for chunk in response.aiter_bytes():
            fed += len(chunk)
            parser.feed(chunk)
            if listing.done(folder) or fed >= MAX_LISTING_BYTES:
                return  # enough: the rest of the listing is not read
        parser.close()
    except (ParseError, DefusedXmlException):
        if not listing.entries:
            raise _wrong_url(
                api,
                f"{PROVIDER} answered PROPFIND with XML that is not well-formed (or holds entities, which are refused)",
            ) from None


async def _error_answer(response: httpx.Response) -> ApiResponse:
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= 2000:
            break
    text = server_text(body[:2000].decode("utf-8", errors="replace"), 2000)
    if "<html" in text[:500].lower() or text.lstrip().startswith("<?xml"):
        text = ""  # an error page or a DAV error document: not one line of reason
    return ApiResponse(
        status=response.status_code,
        headers=response.headers,
        data=None,
        text=text,
        url=response.url,
        peer=response_peer(response),
    )


def _refused(
    api: ApiClient,
    config: WebDavConfig,
    answer: ApiResponse,
    *,
    denied: str,
    denied_hint: str,
    missing: str,
    missing_hint: str,
    retryable: bool | None = None,
) -> ProbeFailure:
    """A 403 (a 401 once signed in) is about the account and the path, a 404 about the path;
    any other status means what :func:`_status_failure` says."""
    said = f" ({status_text(answer.status)})"
    if answer.status in (401, 403):
        return api.failure(
            FailureType.AUTHORIZATION_FAILED,
            denied + said,
            hint=denied_hint,
            fields=(*config.credential_fields, "path"),
        )
    if answer.status in (404, 410):
        return api.failure(
            FailureType.NOT_FOUND, missing + said, hint=missing_hint, fields=("path",), retryable=retryable
        )
    return _status_failure(api, config, answer)


def _wrong_url(api: ApiClient, message: str, hint: str = _URL_HINT) -> ProbeFailure:
    return api.failure(FailureType.UNEXPECTED_RESPONSE, message, hint=hint, fields=("url",))


async def _listing_failure(api: ApiClient, config: WebDavConfig, response: httpx.Response) -> ProbeFailure:
    answer = await _error_answer(response)
    where = _shown(config)
    if answer.status == 401:
        return _unauthorized(api, config, answer, set())
    if answer.status == 405:
        return _wrong_url(api, f"{api.answered(answer)} to PROPFIND: the server does not list the {where} over WebDAV")
    if 200 <= answer.status < 300:
        return _wrong_url(api, f"{api.answered(answer)} to PROPFIND, not 207 Multi-Status: this is not a WebDAV folder")
    return _refused(
        api,
        config,
        answer,
        denied=f"Listing the {where} is denied",
        denied_hint="Share the folder with this account (read access), or set path to a folder it can read.",
        missing=f"There is no {where} on the WebDAV server",
        missing_hint="Check path: the folder's names as shown in the web UI, separated by /, under url.",
    )


async def _read_first(
    api: ApiClient, config: WebDavConfig, folder: httpx.URL, entry: _Entry, auth: dict[str, str]
) -> str:
    where = _shown(config)
    try:
        url = folder.join(entry.href)
    except httpx.InvalidURL:
        url = None
    base = httpx.URL(config.url)
    if url is None or (url.scheme, url.netloc) != (base.scheme, base.netloc):
        raise _wrong_url(
            api,
            f"{PROVIDER} listed a file of the {where} on another server",
            hint="Check url: the server's listing points outside it (a proxy rewriting addresses?).",
        )
    name = api.clean(unquote(url.path).rstrip("/").rsplit("/", 1)[-1], 120)
    headers = {**auth, "Range": f"bytes=0-{FIRST_BYTES - 1}", "Accept": "*/*"}
    async with stream(api.http, "GET", url, headers=headers, timeout=max(api.probe.remaining(), 0.05)) as response:
        if response.status_code not in (200, 206):
            raise _refused(
                api,
                config,
                await _error_answer(response),
                denied=f"The {where} can be listed, but reading its file '{name}' is denied",
                denied_hint="Give this account read (download) access to the folder's files, not only to the listing.",
                missing=f"The file '{name}' listed in the {where} could not be read",
                missing_hint="The folder may be changing: try again; if it persists, check path.",
                retryable=True,
            )
        read = 0
        async for chunk in response.aiter_bytes():
            read += len(chunk)
            if read >= FIRST_BYTES:
                break  # a server that ignores Range sends the whole file: the rest is not read
    return f"The {where} is readable: read the first {min(read, FIRST_BYTES)} bytes of '{name}'"
