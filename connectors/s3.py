"""The ``s3`` connector: can these credentials list this bucket, on AWS or an S3-compatible store?

Steps: ``resolve`` the S3 endpoint's host, open ``tcp``, for https complete a ``tls``
handshake, then ``authenticate`` (a signed call that only valid credentials pass) and
``access`` (HeadBucket, ListObjectsV2 of the prefix with at most :data:`MAX_LISTED` keys, then a
ranged GetObject of the first :data:`~connectors.base.FIRST_BYTES` bytes of the first object that
is not a folder marker: a listing does not prove that an object can be read, as a denied
s3:GetObject or a KMS key the credentials may not use shows). An empty prefix is an
``empty_location`` warning.

Requests are signed with botocore's SigV4 signer and sent with httpx through the
:class:`~connectors.transport.PinnedTransport`, so every S3 request goes to the address the
``tcp`` step reached and the whole check stays cancellable by the deadline. Credentials
are proven by:

- ``role_arn`` set: STS AssumeRole with the given keys (their temporary credentials are used
  for the ``access`` step);
- AWS (no ``endpoint_url``): STS GetCallerIdentity, which needs no permission;
- an S3-compatible ``endpoint_url``: a signed ListBuckets; "access denied" still proves the
  keys (the signature is checked before permissions), an unknown key or a bad signature does not.

STS is reached at ``sts_endpoint_url``, else ``endpoint_url``, else AWS's regional STS
endpoint (a host of its own, resolved when called). No key, secret or token is ever put in
a message; the server's own error text is never shown, only its error code.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

import httpx
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from defusedxml import DefusedXmlException, ElementTree
from pydantic import AfterValidator, ConfigDict, Field, HttpUrl, model_validator

from connectors.base import FIRST_BYTES, Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import Destination, PemCertificates, WebUrl
from connectors.tls import client_context
from connectors.transport import (
    USER_AGENT,
    PinnedTransport,
    open_pinned,
    retry_after,
    retry_after_seconds,
    status_text,
    stream,
)

# --- configuration -------------------------------------------------------------------

# AWS's rules for new buckets, plus "_" (older buckets and S3-compatible stores allow it).
# Nothing that could change the URL (no "/", "?", "#", "%", spaces).
_BUCKET = r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

MAX_LISTED = 50
"""Keys listed to find the first object to read: folder markers ("reports/") are skipped."""


def _endpoint(url: HttpUrl) -> HttpUrl:
    if url.query or url.fragment:
        raise ValueError("must not have a query or a fragment: give the endpoint, e.g. https://minio.example.com:9000")
    return url


def _prefix(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


EndpointUrl = Annotated[WebUrl, AfterValidator(_endpoint)]


class S3Config(ConnectorConfig):
    """Which bucket, where, and the credentials that must be able to list it."""

    model_config = ConfigDict(title="Amazon S3 or S3-compatible bucket")

    bucket: str = Field(
        pattern=_BUCKET,
        title="Bucket",
        description="Name of the bucket (3 to 63 lower-case letters, digits, dots, hyphens), without s3:// or a path.",
        examples=["acme-data-lake"],
    )
    prefix: Annotated[str, AfterValidator(_prefix)] = Field(
        "",
        max_length=1024,
        title="Prefix",
        description="Only objects whose key starts with this are read, e.g. a folder: exports/. Empty: the whole "
        "bucket.",
        examples=["exports/2024/"],
    )
    region: Annotated[str, Destination] = Field(
        "us-east-1",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        title="Region",
        description=(
            "The bucket's region (AWS), or the region an S3-compatible store expects in signatures (often us-east-1)."
        ),
        examples=["us-east-1", "eu-west-1"],
    )
    endpoint_url: Annotated[EndpointUrl | None, Destination] = Field(
        None,
        title="Endpoint URL",
        description=(
            "For an S3-compatible store (MinIO, Ceph, SeaweedFS, R2...): its http:// or https:// URL. "
            "Empty: AWS S3. Buckets are addressed path-style (endpoint/bucket)."
        ),
        examples=["https://minio.example.com:9000"],
    )
    access_key_id: Secret = Field(
        title="Access key ID",
        description="The access key ID of the user (AWS: AKIA... or, with a session token, ASIA...). Never shown.",
        examples=["AKIAIOSFODNN7EXAMPLE"],
    )
    secret_access_key: Secret = Field(
        title="Secret access key",
        description="The secret that goes with the access key ID. Never shown.",
        examples=["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
    )
    session_token: Secret | None = Field(
        None,
        title="Session token",
        description="Only for temporary credentials (an access key ID starting with ASIA). Never shown.",
        examples=["IQoJb3JpZ2luX2VjEJr..."],
    )
    role_arn: str | None = Field(
        None,
        max_length=2048,
        pattern=r"^arn:[A-Za-z0-9-]+:iam::[0-9A-Za-z-]*:role/[A-Za-z0-9_+=,.@/-]+$",
        title="Role ARN",
        description="A role to assume with STS AssumeRole; the bucket is then read with the role's permissions.",
        examples=["arn:aws:iam::123456789012:role/sourcecheck-reader"],
    )
    external_id: str | None = Field(
        None,
        min_length=2,
        max_length=1224,
        pattern=r"^[A-Za-z0-9_+=,.@:/-]+$",
        title="External ID",
        description="The external ID the role's trust policy requires (only with a role ARN).",
        examples=["acme-7f3c"],
    )
    sts_endpoint_url: Annotated[EndpointUrl | None, Destination] = Field(
        None,
        title="STS endpoint URL",
        description="Where to call STS (AssumeRole, GetCallerIdentity), e.g. a VPC endpoint. "
        "Empty: endpoint_url if set, else https://sts.<region>.amazonaws.com.",
        examples=["https://sts.eu-west-1.amazonaws.com"],
    )
    verify_tls: bool = Field(
        True,
        title="Verify TLS certificate",
        description="Check that an https endpoint's certificate is trusted, current and for this host. "
        "Turn off only for tests.",
        examples=[True],
    )
    ca_cert: PemCertificates = Field(
        None,
        title="CA certificate (PEM)",
        description="A certificate to trust in addition to the system's, e.g. the private CA of an S3-compatible "
        "store. Ignored when verify_tls is off.",
        examples=["-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"],
    )

    @model_validator(mode="after")
    def _external_id_needs_a_role(self) -> S3Config:
        if self.external_id and not self.role_arn:
            raise ValueError("external_id is only used to assume a role: set role_arn too, or clear external_id")
        return self


# --- where things are ------------------------------------------------------------------


def _aws_domain(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@dataclass(frozen=True)
class _Target:
    """The bucket's URL and the host and port the network steps check.

    ``bucket_url`` is what HeadBucket is sent to and ListObjectsV2 appends its query to:
    ``https://bucket.s3.region.amazonaws.com/`` (virtual-hosted; the path must be "/", which
    botocore's S3 signer does not fill in for an empty one) or ``endpoint/bucket`` (path-style).
    """

    bucket_url: str
    host: str
    port: int
    https: bool
    custom: bool  # an S3-compatible endpoint (or an explicit AWS one): path-style, ListBuckets proves the keys
    service_root: str = ""  # custom only: the endpoint's own URL, for ListBuckets


def _target(config: S3Config) -> _Target:
    if config.endpoint_url is not None:
        url = config.endpoint_url
        https = url.scheme == "https"
        host = (url.host or "").strip("[]")  # pydantic keeps IPv6 brackets; sockets want none
        port = url.port or (443 if https else 80)
        netloc = f"[{host}]" if ":" in host else host
        if url.port and url.port != (443 if https else 80):
            netloc += f":{url.port}"
        root = f"{url.scheme}://{netloc}{(url.path or '/').rstrip('/')}/"
        return _Target(f"{root}{config.bucket}", host, port, https, custom=True, service_root=root)
    domain = f"s3.{config.region}.{_aws_domain(config.region)}"
    if "." in config.bucket:  # a dotted name breaks the wildcard certificate of virtual-hosted style
        return _Target(f"https://{domain}/{config.bucket}", domain, 443, True, custom=False)
    host = f"{config.bucket}.{domain}"
    return _Target(f"https://{host}/", host, 443, True, custom=False)


def _sts_url(config: S3Config) -> str:
    endpoint = config.sts_endpoint_url or config.endpoint_url
    if endpoint is not None:
        return str(endpoint)
    return f"https://sts.{config.region}.{_aws_domain(config.region)}/"


def _bucket_arn(config: S3Config) -> str:
    return f"arn:{_partition(config.region)}:s3:::{config.bucket}"


# --- signed requests ---------------------------------------------------------------------

_CODE = re.compile(r"^[A-Za-z0-9.]{1,64}$")


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    code: str | None  # the AWS error code (<Code>), when the answer is an error document
    elapsed_ms: float
    kms: bool = False  # an error document whose message is about KMS (never shown: it may hold ARNs)


def _query(params: dict[str, str]) -> str:
    """A query string already in SigV4's canonical encoding (botocore signs it as it is)."""
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))


class _Session:
    """Signs and sends requests on one pinned client until the check ends."""

    def __init__(self, client: httpx.AsyncClient, probe: Probe, config: S3Config) -> None:
        self.client = client
        self.probe = probe
        self.region = config.region
        self.credentials = Credentials(
            config.access_key_id.get_secret_value(),
            config.secret_access_key.get_secret_value(),
            config.session_token.get_secret_value() if config.session_token else None,
        )

    async def send(
        self,
        method: str,
        url: str,
        *,
        service: str = "s3",
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> _Answer:
        """Sign and send; a successful body is cut at ``limit`` bytes (a store may ignore a Range)."""
        body = _query(form).encode() if form is not None else b""
        request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
        if form is not None:
            request.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        signer = S3SigV4Auth if service == "s3" else SigV4Auth
        signer(self.credentials, service, self.region).add_auth(request)
        started = time.perf_counter()
        signed = dict(request.headers.items())
        async with stream(
            self.client, method, url, headers=signed, content=body, timeout=self.probe.remaining()
        ) as response:
            elapsed_ms = (time.perf_counter() - started) * 1000
            data = b""
            if method != "HEAD":  # bounded by the transport
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if limit is not None and len(data) >= limit and response.status_code < 300:  # errors: whole
                        data = data[:limit]
                        break
        return _answer(response.status_code, data, response.headers, elapsed_ms)


def _answer(status: int, body: bytes, headers: httpx.Headers | None = None, elapsed_ms: float = 0.0) -> _Answer:
    """An answer, with the error code and whether the error is about KMS read from an error body."""
    if status < 300:
        return _Answer(status, headers or httpx.Headers(), body, None, elapsed_ms)
    code = _error_code(body)
    root = _parse(body) if body else None
    message = (_find(root, "Message") or "") if root is not None else ""
    kms = "kms" in message.lower() or (code or "").upper().startswith("KMS")
    return _Answer(status, headers or httpx.Headers(), body, code, elapsed_ms, kms)


def _parse(body: bytes) -> Any | None:
    """The XML document in ``body``, or None. defusedxml: the server is not trusted."""
    try:
        return ElementTree.fromstring(body)
    except (ElementTree.ParseError, DefusedXmlException):  # not XML, or entities (refused by defusedxml)
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: Any, name: str) -> str | None:
    """The text of the first element called ``name`` (any namespace) under ``root``."""
    for element in root.iter():
        if _local(element.tag) == name:
            return str(element.text or "").strip()
    return None


def _error_code(body: bytes) -> str | None:
    root = _parse(body) if body else None
    code = _find(root, "Code") if root is not None else None
    # Only a plain identifier is kept: it ends up in messages.
    return code if code and _CODE.match(code) else None


# --- the connector -------------------------------------------------------------------------


class S3Connector(Connector):
    name = "s3"
    title = "Amazon S3 / S3-compatible storage"
    category = "files"
    icon = "s3"
    documentation_url = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/example-bucket-policies.html"
    config_model = S3Config
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return {
            "bucket": "example-bucket",
            "endpoint_url": f"http://{netloc}",
            "access_key_id": "example-access-key",
            "secret_access_key": "example-secret-key",
        }

    async def check(self, config: S3Config, probe: Probe) -> None:
        target = _target(config)
        context = client_context(verify=config.verify_tls, ca_pem=config.ca_cert)
        transport = await open_pinned(
            probe, target.host, target.port, context, https=target.https, plain="http:// endpoint: no TLS"
        )
        async with _client(transport) as client:
            session = _Session(client, probe, config)
            async with probe.step("authenticate") as step:
                step.message = await _authenticate(session, config, target)
            async with probe.step("access") as step:
                step.message = await _access(session, config, target)


def _client(transport: PinnedTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,  # a redirect must be signed anew; S3's mean "wrong region"
        trust_env=False,  # no proxy from the environment: requests go where tcp/tls went
    )


# --- authenticate ----------------------------------------------------------------------------

_BAD_KEY = {"InvalidAccessKeyId", "InvalidClientTokenId", "UnrecognizedClientException", "AuthFailure"}
_BAD_SIGNATURE = {"SignatureDoesNotMatch", "IncompleteSignature"}
_BAD_TOKEN = {"InvalidToken", "MalformedTokenException"}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"}


def _credential_failure(answer: _Answer, where: str) -> ProbeFailure | None:
    """The failure for an answer that rejects the credentials themselves, else None."""
    code = answer.code
    if code in _BAD_KEY:
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"{where} does not know this access key ID ({code})",
            hint=(
                "Check access_key_id: it must be an active key of this account or store (copy it again, without "
                "spaces). A key is only known in its own partition: keys of AWS GovCloud (us-gov-* regions) or "
                "AWS China (cn-* regions) work only there, so check that region matches where the key was made."
            ),
            fields=("access_key_id", "region"),
        )
    if code in _BAD_SIGNATURE:
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"{where} rejected the request signature ({code}): the secret access key does not match the access key ID",
            hint="Check secret_access_key: copy it again, without spaces, for this access key ID.",
            fields=("secret_access_key",),
        )
    if code in _EXPIRED:
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"{where} says the session token has expired ({code})",
            hint="Temporary credentials expire: get a new access key, secret and session_token, or use long-term keys.",
            fields=("session_token",),
        )
    if code in _BAD_TOKEN:
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"{where} rejected the session token ({code})",
            hint="Set session_token only for temporary credentials, and to the token issued with this access key.",
            fields=("session_token",),
        )
    if code == "RequestTimeTooSkewed":
        return ProbeFailure(
            FailureType.AUTHENTICATION_FAILED,
            f"{where} rejected the request: the worker's clock differs from the server's by more than 15 minutes",
            hint="Signatures are only valid for a few minutes: fix the clock (NTP) of the workers or of the server.",
            retryable=True,
        )
    return None


def _unexpected(answer: _Answer, what: str, where: str) -> ProbeFailure:
    code = f" ({answer.code})" if answer.code else ""
    if answer.status == 429 or answer.code in {"SlowDown", "Throttling"}:
        return ProbeFailure(
            FailureType.RATE_LIMITED,
            f"{where} answered {status_text(answer.status)}{code} to {what}: it is slowing these requests down",
            hint=f"Try again {retry_after(answer.headers)}; if it persists, other clients may be using up the "
            "request rate of the bucket.",
            retry_after_s=retry_after_seconds(answer.headers),
        )
    if answer.status >= 500 or answer.code == "ServiceUnavailable":
        return ProbeFailure(
            FailureType.PROVIDER_UNAVAILABLE,
            f"{where} answered {status_text(answer.status)}{code} to {what}",
            hint="The service could not handle the request now: check its health, then try again.",
        )
    if answer.code is None and answer.status != 403:
        kind = answer.headers.get("content-type", "no content type").split(";")[0]
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"{where} answered {status_text(answer.status)} ({kind}) to {what}, not like an S3 API",
            hint="Check endpoint_url: it must be the S3 API of the store (often its own port), not its web console.",
            fields=("endpoint_url",),
        )
    return ProbeFailure(
        FailureType.UNEXPECTED_RESPONSE,
        f"{where} answered {status_text(answer.status)}{code} to {what}",
        fields=("endpoint_url",),
    )


async def _authenticate(session: _Session, config: S3Config, target: _Target) -> str:
    if config.role_arn:
        return await _assume_role(session, config, config.role_arn)
    if not target.custom:
        return await _caller_identity(session, config)
    where = "The S3 endpoint"
    answer = await session.send("GET", target.service_root)  # ListBuckets
    if failure := _credential_failure(answer, where):
        raise failure
    if answer.status == 200:
        root = _parse(answer.body)
        owner = _find(root, "DisplayName") or _find(root, "ID") if root is not None else None
        return f"Credentials accepted (signed ListBuckets answered in {answer.elapsed_ms:.0f} ms" + (
            f", owner {owner})" if owner else ")"
        )
    if answer.code in {"AccessDenied", "AllAccessDisabled"}:
        # The signature is checked before permissions: a denial proves the keys are valid.
        return f"Credentials accepted (listing all buckets is not allowed, which is fine: {answer.code})"
    raise _unexpected(answer, "a signed ListBuckets", where)


def _sts_failure(answer: _Answer, what: str) -> ProbeFailure:
    return _credential_failure(answer, "STS") or _unexpected(answer, what, "STS")


async def _caller_identity(session: _Session, config: S3Config) -> str:
    answer = await session.send(
        "POST", _sts_url(config), service="sts", form={"Action": "GetCallerIdentity", "Version": "2011-06-15"}
    )
    root = _parse(answer.body) if answer.status == 200 else None
    arn = _find(root, "Arn") if root is not None else None
    if arn is None:
        raise _sts_failure(answer, "GetCallerIdentity")
    return f"Authenticated as {arn}"


async def _assume_role(session: _Session, config: S3Config, role_arn: str) -> str:
    form = {
        "Action": "AssumeRole",
        "Version": "2011-06-15",
        "RoleArn": role_arn,
        "RoleSessionName": "sourcecheck",
        "DurationSeconds": "900",  # the shortest allowed: the check needs seconds
    }
    if config.external_id:
        form["ExternalId"] = config.external_id
    answer = await session.send("POST", _sts_url(config), service="sts", form=form)
    if answer.code == "AccessDenied":
        external = " and the external ID" if config.external_id else ""
        raise ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"These credentials are not allowed to assume role {role_arn}",
            hint=f"The role's trust policy must allow this user{external} (sts:AssumeRole), and the user's own "
            f"policy must allow sts:AssumeRole on {role_arn}"
            + ("; if the trust policy requires an external ID, set external_id" if not config.external_id else "")
            + ".",
            fields=("role_arn", "external_id"),
        )
    if answer.code in {"NoSuchEntity", "ValidationError"} and answer.status < 500:
        raise ProbeFailure(
            FailureType.NOT_FOUND,
            f"STS could not assume role {role_arn} ({answer.code}): check that the role exists",
            hint="Check role_arn: the account ID and the role name (with its path, if any).",
            fields=("role_arn",),
        )
    root = _parse(answer.body) if answer.status == 200 else None
    key, secret, token = (
        (_find(root, name) for name in ("AccessKeyId", "SecretAccessKey", "SessionToken"))
        if root is not None
        else (None, None, None)
    )
    if not key or not secret:
        raise _sts_failure(answer, "AssumeRole")
    # From here on the role's temporary credentials sign the requests. They are not in the
    # configuration, so the runner cannot scrub them: they are never put in a message.
    session.credentials = Credentials(key, secret, token or None)
    assumed = _find(root, "Arn") if root is not None else None
    return f"Assumed role {role_arn}" + (f" as {assumed}" if assumed and assumed != role_arn else "")


# --- access ------------------------------------------------------------------------------------


def _region_failure(answer: _Answer, config: S3Config) -> ProbeFailure | None:
    actual = answer.headers.get("x-amz-bucket-region")
    if actual and actual != config.region and answer.status in (301, 307, 400, 403):
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"Bucket '{config.bucket}' is in region {actual}, not {config.region}",
            hint=f"Set region to {actual}.",
            fields=("region",),
        )
    if answer.status in (301, 307) or answer.code in {"PermanentRedirect", "AuthorizationHeaderMalformed"}:
        return ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"Bucket '{config.bucket}' is not in region {config.region} (the endpoint redirected the request)",
            hint="Set region to the bucket's region (shown in the S3 console, under the bucket's properties).",
            fields=("region",),
        )
    return None


def _not_found(config: S3Config, target: _Target) -> ProbeFailure:
    where = " at this endpoint" if target.custom else f" (looked for in region {config.region})"
    return ProbeFailure(
        FailureType.NOT_FOUND,
        f"Bucket '{config.bucket}' does not exist{where}",
        hint="Check the bucket name" + (" and endpoint_url." if target.custom else " and the region."),
        fields=("bucket", "endpoint_url" if target.custom else "region"),
    )


def _list_denied(config: S3Config, exists: bool) -> ProbeFailure:
    scope = (
        f" (prefix '{config.prefix}', e.g. with the condition s3:prefix like '{config.prefix}*')"
        if config.prefix
        else ""
    )
    grant = f"grant s3:ListBucket on {_bucket_arn(config)}{scope}"
    if exists:
        message = f"Bucket '{config.bucket}' exists but listing it is denied for these credentials"
        hint = f"The bucket exists but listing is denied: {grant}."
    else:
        message = f"Access to bucket '{config.bucket}' is denied for these credentials"
        hint = (
            f"To let these credentials list it, {grant}; if the bucket belongs to another account, its bucket "
            "policy must allow them too."
        )
    return ProbeFailure(FailureType.AUTHORIZATION_FAILED, message, hint=hint, fields=_permission_fields(config))


def _permission_fields(config: S3Config) -> tuple[str, ...]:
    """The fields of a denied request: whose permissions (the role's, else the keys') on what."""
    who = ("role_arn",) if config.role_arn else ("access_key_id",)
    return (*who, "bucket", *(("prefix",) if config.prefix else ()))


async def _access(session: _Session, config: S3Config, target: _Target) -> str:
    where = "The S3 endpoint"
    head = await session.send("HEAD", target.bucket_url)  # HeadBucket: a HEAD answer has no body, so no error code
    if failure := _region_failure(head, config):
        raise failure
    if head.status == 404:
        raise _not_found(config, target)
    if head.status not in (200, 403):
        if head.status >= 500:
            raise _unexpected(head, "HeadBucket", where)
        raise ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"{where} answered {status_text(head.status)} to HeadBucket",
            fields=("endpoint_url",),
        )
    # A 403 can mean "exists, but not yours to see" or "denied": ListObjectsV2 tells them apart.
    query = _query({"list-type": "2", "max-keys": str(MAX_LISTED), "prefix": config.prefix})
    listed = await session.send("GET", f"{target.bucket_url}?{query}")
    if failure := _region_failure(listed, config) or _credential_failure(listed, where):
        raise failure
    if listed.code == "NoSuchBucket" or listed.status == 404:
        raise _not_found(config, target)
    if listed.code in {"AccessDenied", "AllAccessDisabled"} or listed.status == 403:
        raise _list_denied(config, exists=head.status == 200)
    if listed.status != 200:
        raise _unexpected(listed, "ListObjectsV2", where)
    root = _parse(listed.body)
    if root is None or _local(root.tag) != "ListBucketResult":
        raise ProbeFailure(
            FailureType.UNEXPECTED_RESPONSE,
            f"{where} answered ListObjectsV2 with something that is not a bucket listing",
            hint="Check endpoint_url: it must be the S3 API of the store.",
            fields=("endpoint_url",),
        )
    scope = f"under prefix '{config.prefix}'" if config.prefix else "in the bucket"
    first = _first_object(root)
    if first is None:
        empty = f"Bucket '{config.bucket}' has no object {scope}"
        session.probe.warn(
            WarningCode.EMPTY_LOCATION,
            empty + (" (only folder markers)" if any(_local(e.tag) == "Contents" for e in root) else ""),
            hint="Check bucket and prefix (keys start with it; a folder ends with /) if you expected files there; "
            "the credentials themselves work.",
        )
        return (
            f"Bucket '{config.bucket}' listed, but there is no object {scope} yet (check the prefix if you expected "
            "files)"
        )
    return await _read_first(session, config, target, first, scope)


def _first_object(root: Any) -> tuple[str, int | None] | None:
    """(key, size) of the first listed object that is not a folder marker (a key ending in /)."""
    for entry in list(root)[: MAX_LISTED + 10]:  # a hostile listing is cut
        if _local(entry.tag) != "Contents":
            continue
        key = next((str(e.text or "") for e in entry if _local(e.tag) == "Key"), "")
        if not key or key.endswith("/"):
            continue
        size = next((str(e.text or "").strip() for e in entry if _local(e.tag) == "Size"), "")
        return key, int(size) if size.isdigit() and len(size) < 20 else None
    return None


def _shown(key: str) -> str:
    """An object key as put in a message: printable, at most 200 characters."""
    text = "".join(c if c.isprintable() else "?" for c in key)
    return text if len(text) <= 200 else text[:199] + "…"


async def _read_first(
    session: _Session, config: S3Config, target: _Target, first: tuple[str, int | None], scope: str
) -> str:
    key, size = first
    shown = _shown(key)
    # A zero-byte object has no range to read (S3 answers 416 InvalidRange): it is read whole.
    headers = {"Range": f"bytes=0-{FIRST_BYTES - 1}"} if size != 0 else {}
    url = f"{target.bucket_url.rstrip('/')}/{quote(key, safe='/-_.~')}"
    read = await session.send("GET", url, headers=headers, limit=FIRST_BYTES)
    if failure := _region_failure(read, config) or _credential_failure(read, "The S3 endpoint"):
        raise failure
    if read.status in (200, 206):
        return f"Bucket '{config.bucket}' listed {scope}: read the first {len(read.body)} bytes of '{shown}'"
    raise _read_failure(read, config, scope, shown)


def _read_failure(read: _Answer, config: S3Config, scope: str, shown: str) -> ProbeFailure:
    """The failure of a GetObject that the listing before it did not foresee."""
    if read.kms:
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"The objects {scope} can be listed, but '{shown}' is encrypted with a KMS key these credentials may "
            f"not use ({read.code or status_text(read.status)})",
            hint="Allow kms:Decrypt on the bucket's KMS key (in the key policy and in the policy of these "
            f"credentials), and s3:GetObject on {_bucket_arn(config)}/{config.prefix}*.",
            fields=_permission_fields(config),
        )
    if read.code in {"AccessDenied", "AllAccessDisabled"} or read.status == 403:
        return ProbeFailure(
            FailureType.AUTHORIZATION_FAILED,
            f"The objects {scope} can be listed, but reading '{shown}' is denied for these credentials",
            hint=f"Listing needs s3:ListBucket, reading s3:GetObject: grant s3:GetObject on "
            f"{_bucket_arn(config)}/{config.prefix}*; if the objects are encrypted with SSE-KMS, kms:Decrypt on "
            "their key too.",
            fields=_permission_fields(config),
        )
    if read.code == "NoSuchKey" or read.status == 404:
        return ProbeFailure(
            FailureType.NOT_FOUND,
            f"The object '{shown}' listed {scope} could not be read (NoSuchKey)",
            hint="The bucket may be changing: try again; if it persists, check prefix.",
            fields=("prefix",),
            retryable=True,
        )
    return _unexpected(read, f"GetObject of '{shown}'", "The S3 endpoint")
