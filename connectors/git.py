"""The ``git`` connector: can these credentials read this repository, and has it this branch?

Any Git server that speaks smart HTTP (GitHub, GitLab, Bitbucket, Gitea, Azure DevOps, git's own
``http-backend``). Steps: ``resolve``, ``tcp`` and ``tls`` (connectors.saas.open_api, pinned);
``authenticate``: the refs advertisement, ``GET <url>/info/refs?service=git-upload-pack``, with
the credentials (401, 403 and 404 each say what to fix); ``access``: the branch (or, without one,
the default branch HEAD points at) is among the advertised refs.

The advertisement is read as a stream of pkt-lines parsed here, bounded (a pkt-line is at most
65520 bytes by the protocol; the whole answer by the transport's MAX_RESPONSE_BYTES), and reading
stops as soon as the branch is found. dulwich parses pkt-lines too, but only through its own HTTP
clients (urllib3), which would connect outside the pinned transport and the egress policy.
Over SSH (``git-upload-pack`` on the server) it is not checked yet: https:// URLs only.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import PemCertificates
from connectors.saas import ApiClient, ApiResponse, BaseUrl, ca_cert_field, example_base_url, open_api
from connectors.text import server_text
from connectors.transport import stream, transport_failure

MAX_PKT = 65520
"""Bytes of one pkt-line at most, its 4-byte length included (git's LARGE_PACKET_MAX)."""

_ADVERTISEMENT = "application/x-git-upload-pack-advertisement"
_REF = re.compile(r"([0-9a-f]{40}|[0-9a-f]{64}) ([^\x00\s]+)")
# A branch name, as git check-ref-format allows it (the gitlab connector checks its branch the same way).
BRANCH_PATTERN = r"^[^\x00-\x20\x7f~^:?*\[\\]+$"


def check_branch(value: str | None) -> str | None:
    """git check-ref-format's rules that a character class cannot say."""
    if value is not None and (
        value.startswith(("/", "-"))
        or value.endswith(("/", ".", ".lock"))
        or any(s in value for s in ("..", "//", "@{"))
    ):
        raise ValueError("is not a valid branch name")
    return value


class NoAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", title="No credentials")
    type: Literal["none"] = Field(title="Type", description="No credentials: a public repository.")


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", title="User name and password")
    type: Literal["basic"] = Field(title="Type", description="HTTP basic authentication.")
    username: str = Field(
        min_length=1, max_length=256, pattern=r"^[^:\x00-\x1f\x7f]+$", title="Username", description="The user name."
    )
    password: Secret = Field(title="Password", description="The password (or an app password).")


class TokenAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Access token")
    type: Literal["token"] = Field(title="Type", description="An access token, sent as git sends it (basic).")
    token: Secret = Field(
        title="Token", description="A personal, project or deploy access token with read access to the repository."
    )
    username: str = Field(
        "x-access-token",
        min_length=1,
        max_length=256,
        pattern=r"^[^:\x00-\x1f\x7f]+$",
        title="Username",
        description="The user name sent with the token: x-access-token (GitHub), oauth2 (GitLab), "
        "x-token-auth (Bitbucket), or your own user name where the server wants it.",
    )


GitAuth = Annotated[NoAuth | BasicAuth | TokenAuth, Field(discriminator="type")]


class GitConfig(ConnectorConfig):
    """The repository's URL, the credentials that must read it, and the branch that must exist."""

    model_config = ConfigDict(title="Git repository")

    url: BaseUrl = Field(
        title="Repository URL",
        description="The repository's https:// clone URL (https://git.example.com/team/docs.git), without credentials.",
        examples=["https://github.com/acme/handbook.git", "https://gitlab.example.com/team/docs.git"],
        json_schema_extra={"format": "uri", "x-destination": True},
    )
    auth: GitAuth = Field(
        default_factory=lambda: NoAuth(type="none"),
        title="Authentication",
        description="How to log in: none (public), basic (user name and password) or token.",
        examples=[{"type": "token", "token": "glpat-example"}],
    )
    branch: Annotated[str | None, AfterValidator(check_branch)] = Field(
        None,
        max_length=255,
        pattern=BRANCH_PATTERN,
        title="Branch",
        description="The branch that must exist (main, or refs/heads/main); empty for the default branch.",
        examples=["main"],
    )
    ca_cert: PemCertificates = ca_cert_field()

    @property
    def base_url(self) -> str:
        return self.url

    def credential_fields(self) -> tuple[str, ...]:
        if isinstance(self.auth, BasicAuth):
            return ("auth.username", "auth.password")
        if isinstance(self.auth, TokenAuth):
            return ("auth.token", "auth.username")
        return ("auth",)


class GitConnector(Connector):
    name = "git"
    title = "Git repository (HTTPS)"
    category = "files"
    documentation_url = "https://git-scm.com/docs/http-protocol"
    config_model = GitConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "url": example_base_url(host, port, "/team/docs.git"),
            "auth": {"type": "basic", "username": "reader", "password": "example-password"},
            "branch": "main",
        }

    async def check(self, config: GitConfig, probe: Probe) -> None:
        try:
            await self._check(config, probe)
        except ProbeFailure as failure:
            if not failure.fields:  # the transport's and the tls step's own: name the field that fixes them
                failure.fields = ["ca_cert"] if failure.type == FailureType.TLS_ERROR else ["url"]
            raise

    async def _check(self, config: GitConfig, probe: Probe) -> None:
        async with open_api(probe, config, "Git server", headers={"Accept": "*/*"}) as api:
            headers = _credentials(api, config)
            if headers and config.url.startswith("http://"):
                probe.warn(
                    WarningCode.WEAK_AUTHENTICATION,
                    "The credentials were sent unencrypted (an http:// URL)",
                    hint="Use the repository's https:// URL.",
                )
            url = httpx.URL(config.url + "/info/refs", params={"service": "git-upload-pack"})
            timeout = max(probe.remaining(), 0.05)
            async with stream(api.http, "GET", url, headers=headers, timeout=timeout) as response:
                lines = _PktLines(response.aiter_bytes(), config.url)
                async with probe.step("authenticate") as step:
                    first = await _advertised(api, config, response, lines)
                    step.message = first.describe(headers)
                async with probe.step("access") as step:
                    step.message = await _find_branch(config, first, lines)


def _credentials(api: ApiClient, config: GitConfig) -> dict[str, str]:
    auth = config.auth
    if isinstance(auth, NoAuth):
        return {}
    secret = auth.password if isinstance(auth, BasicAuth) else auth.token
    pair = f"{auth.username}:{secret.get_secret_value()}"
    encoded = base64.b64encode(pair.encode()).decode()
    api.add_secret(secret.get_secret_value(), encoded)
    return {"Authorization": f"Basic {encoded}"}


class _PktLines:
    """The pkt-lines of a streamed body: each line's payload, None for a flush (0000)."""

    def __init__(self, chunks: AsyncIterator[bytes], where: str) -> None:
        self.chunks = chunks
        self.buffer = b""
        self.where = where
        self.read = 0  # lines read

    async def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            try:
                chunk = await anext(self.chunks, b"")
            except httpx.HTTPError as exc:
                raise transport_failure(exc, 0.0) from None
            if not chunk:
                return False
            self.buffer += chunk
        return True

    async def next(self) -> bytes | None:
        if not await self._fill(4):
            raise self.broken("ends in the middle" if self.buffer else "ends before its flush-pkt")
        head, self.buffer = self.buffer[:4], self.buffer[4:]
        try:
            size = int(head, 16)
        except ValueError:
            raise self.broken(f"has a bad pkt-line length {head!r}") from None
        if size in (0, 1, 2):  # flush, delim, response-end
            return None
        if size < 4 or size > MAX_PKT:
            raise self.broken(f"has a pkt-line of length {size}")
        if not await self._fill(size - 4):
            raise self.broken("ends in the middle of a pkt-line")
        payload, self.buffer = self.buffer[: size - 4], self.buffer[size - 4 :]
        self.read += 1
        return payload

    def broken(self, what: str) -> ProbeFailure:
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"The refs advertisement of {self.where} {what}: not a Git smart HTTP answer",
            hint="Check url: it must be the repository's clone URL on a Git server.",
            fields=("url",),
        )


@dataclass(frozen=True)
class _First:
    """The first ref line: HEAD (or the only ref) and the server's capabilities."""

    ref: tuple[str, str] | None  # (object id, name); None for an empty repository
    capabilities: dict[str, str]

    @property
    def head_target(self) -> str | None:
        """The branch HEAD points at (the ``symref=HEAD:refs/heads/main`` capability)."""
        value = self.capabilities.get("symref", "")
        return value.removeprefix("HEAD:") if value.startswith("HEAD:") else None

    def describe(self, headers: dict[str, str]) -> str:
        agent = self.capabilities.get("agent")
        who = "with the credentials" if headers else "without credentials"
        server = f" ({server_text(agent, 60)})" if agent else ""
        return f"Read the refs advertisement {who}{server}"


async def _advertised(api: ApiClient, config: GitConfig, response: httpx.Response, lines: _PktLines) -> _First:
    """The answer's status and type, and its first lines: ``# service=git-upload-pack``, a flush,
    then HEAD with the capabilities."""
    if response.status_code != 200:
        body = await response.aread()
        answer = ApiResponse(
            status=response.status_code,
            headers=response.headers,
            data=None,
            text="" if b"<html" in body[:500].lower() else server_text(body, 300),
            url=response.url,
        )
        raise api.status_failure(
            answer,
            unauthorized_hint="Check the credentials in auth (a token needs read access to the repository's code); "
            "the server asks for valid ones.",
            forbidden_hint="The credentials are valid but may not read this repository: grant them read access "
            "(a token: a read_repository or contents:read scope).",
            not_found_hint="Check url: it must be the repository's clone URL (many servers answer 404 rather than "
            "401 when the credentials may not see a private repository).",
            credential_fields=config.credential_fields(),
            resource_fields=("url",),
        )
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != _ADVERTISEMENT:
        raise ProbeFailure(
            FailureType.NOT_FOUND,
            f"{config.url} is not a Git repository served over smart HTTP (the answer is {kind or 'untyped'})",
            hint="Check url: it must be the repository's clone URL (often ending in .git), not its web page; "
            "a server with dumb HTTP only cannot be checked.",
            fields=("url",),
        )
    service = await lines.next()
    if service is None or service.rstrip(b"\n") != b"# service=git-upload-pack":
        raise lines.broken("does not start with '# service=git-upload-pack'")
    if await lines.next() is not None:
        raise lines.broken("has no flush-pkt after its service line")
    head = await lines.next()
    if head is None:
        return _First(ref=None, capabilities={})
    text = server_text(head, MAX_PKT).rstrip("\n")
    refpart, _, caps = text.partition("\x00")
    capabilities: dict[str, str] = {}
    for cap in caps.split(" ")[:200]:
        name, _, value = cap.partition("=")
        if name:
            capabilities.setdefault(name, value)
    match = _REF.fullmatch(refpart)
    if match is None:
        raise lines.broken("has a first line that is not a ref")
    oid, name = match.groups()
    if name == "capabilities^{}":  # an empty repository
        return _First(ref=None, capabilities=capabilities)
    return _First(ref=(oid, name), capabilities=capabilities)


async def _find_branch(config: GitConfig, first: _First, lines: _PktLines) -> str:
    """Step ``access``: the branch is advertised (read no further than it)."""
    if first.ref is None:
        raise ProbeFailure(
            FailureType.NOT_FOUND,
            f"The repository {config.url} is empty (no branch at all)",
            hint="Push a first commit to the repository, or check url.",
            fields=("branch", "url") if config.branch else ("url",),
        )
    wanted = config.branch or first.head_target
    if wanted is None:  # a server that does not say where HEAD points: HEAD itself is the default
        return f"The default branch (HEAD) is at {first.ref[0][:12]}"
    if not wanted.startswith("refs/"):
        wanted = f"refs/heads/{wanted}"
    seen = [first.ref[1]]
    name = first.ref[1]
    oid = first.ref[0]
    while name != wanted:
        line = await lines.next()
        if line is None:
            shown = ", ".join(n.removeprefix("refs/heads/") for n in seen if n.startswith("refs/heads/"))[:300]
            raise ProbeFailure(
                FailureType.NOT_FOUND,
                f"The repository has no branch '{wanted.removeprefix('refs/heads/')}'",
                hint=f"Check branch (case matters). Branches found: {shown or 'none'}.",
                fields=("branch",),
            )
        match = _REF.fullmatch(server_text(line, 1024).rstrip("\n"))
        if match is None:
            raise lines.broken("has a line that is not a ref")
        oid, name = match.groups()
        if len(seen) < 50:
            seen.append(name)
    default = " (the default branch)" if not config.branch else ""
    return f"Branch '{wanted.removeprefix('refs/heads/')}'{default} is at {oid[:12]}"
