"""The ``gcs`` connector: can these credentials list this Google Cloud Storage bucket (prefix) and read an object?

Through the Cloud Storage JSON API. Steps: ``resolve``, ``tcp``, ``tls`` against ``base_url``
(storage.googleapis.com), ``token`` (a service account's JWT bearer grant at the key's
``token_uri``, or an OAuth refresh; not planned for an access token), ``authenticate``
(``buckets.get``: a 401 is a refused token, a 403 only a missing ``storage.buckets.get``, which
reading objects does not need) and ``access`` (``objects.list`` with ``maxResults=1`` under the
prefix, then the first :data:`~connectors.base.FIRST_BYTES` bytes of the first object with a
ranged media download).

Google's documented bodies handled: 401 ``Invalid Credentials``; 403 "... does not have
storage.objects.list access to the Google Cloud Storage bucket" (and ``storage.objects.get``
for the read); 404 "The specified bucket does not exist."; 429 and 503 (``rate_limited``,
``provider_unavailable``). An empty prefix is an ``empty_location`` warning.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

from pydantic import AfterValidator, ConfigDict, Field

from connectors.base import FIRST_BYTES, ConnectorConfig, Probe
from connectors.errors import FailureType, ProbeFailure, WarningCode
from connectors.fields import PemCertificates
from connectors.google_drive import GoogleAccessToken, GoogleOAuth, error_reasons
from connectors.google_keys import KEY_FIELDS, GoogleServiceAccount, client_email, service_account_step
from connectors.oauth import TokenConnector, credential_fields, refresh_step
from connectors.saas import (
    ApiClient,
    ApiResponse,
    BaseUrl,
    base_url_field,
    ca_cert_field,
    example_base_url,
    open_api,
)

PROVIDER = "Google Cloud Storage"
READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
_BUCKET = r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUOTA_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}

_ROLE_HINT = (
    "Grant the account the role Storage Object Viewer (roles/storage.objectViewer) on the bucket: "
    "gcloud storage buckets add-iam-policy-binding gs://{bucket} --member=serviceAccount:EMAIL "
    "--role=roles/storage.objectViewer (user:EMAIL for a user's token)."
)


# --- configuration -------------------------------------------------------------------------


def _prefix(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


Credentials = Annotated[GoogleServiceAccount | GoogleOAuth | GoogleAccessToken, Field(discriminator="type")]


class GcsConfig(ConnectorConfig):
    """Google credentials and the bucket (and prefix) they must read."""

    model_config = ConfigDict(title="Google Cloud Storage")

    credentials: Credentials = Field(
        title="Credentials",
        description="A service account's JSON key (recommended), an OAuth refresh token, or a short-lived access "
        "token.",
        examples=[{"type": "token", "access_token": "ya29.example"}],
    )
    bucket: str = Field(
        pattern=_BUCKET,
        title="Bucket",
        description="The bucket's name, without gs:// or a path.",
        examples=["acme-documents"],
    )
    prefix: Annotated[str, AfterValidator(_prefix)] = Field(
        "",
        max_length=1024,
        title="Prefix",
        description="Only objects whose name starts with this are read, e.g. a folder: exports/. Empty: the whole "
        "bucket.",
        examples=["exports/2024/"],
    )
    base_url: BaseUrl = base_url_field(
        "https://storage.googleapis.com", provider=PROVIDER, examples=["https://storage.googleapis.com"]
    )
    ca_cert: PemCertificates = ca_cert_field()


# --- the connector -------------------------------------------------------------------------


class GcsConnector(TokenConnector):
    name = "gcs"
    title = "Google Cloud Storage"
    category = "files"
    icon = "gcs"
    documentation_url = "https://cloud.google.com/storage/docs/access-control/iam-roles"
    config_model = GcsConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "tls", "token", "authenticate", "access")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {
            "credentials": {"type": "token", "access_token": "example-access-token"},
            "bucket": "example-bucket",
            "base_url": example_base_url(host, port),
        }

    async def check(self, config: GcsConfig, probe: Probe) -> None:
        async with open_api(probe, config, PROVIDER) as api:
            fields = await _token(probe, api, config.credentials)
            async with probe.step("authenticate") as step:
                step.message = await _authenticate(api, config, fields)
            async with probe.step("access") as step:
                step.message = await _access(api, config, fields)


async def _token(probe: Probe, api: ApiClient, credentials: Any) -> tuple[str, ...]:
    """The ``token`` step (none for an access token); returns the fields a refused token is about."""
    if isinstance(credentials, GoogleAccessToken):
        api.use_bearer(credentials.access_token.get_secret_value())
        return credential_fields(credentials)
    if isinstance(credentials, GoogleOAuth):
        await refresh_step(
            probe,
            api,
            issuer="Google",
            token_url=credentials.token_url,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret.get_secret_value(),
            refresh_token=credentials.refresh_token.get_secret_value(),
        )
        return credential_fields(credentials)
    await service_account_step(probe, api, credentials, READ_SCOPE)
    return KEY_FIELDS


def _who(config: GcsConfig) -> str:
    credentials = config.credentials
    if isinstance(credentials, GoogleServiceAccount):
        return client_email(credentials)
    return "the token's account"


def _forbidden(response: ApiResponse) -> bool:
    """A 403 that is a permission refused, not Google's quota answer (also a 403)."""
    return response.status == 403 and not error_reasons(response) & _QUOTA_REASONS


def _denied(api: ApiClient, response: ApiResponse, fields: tuple[str, ...], message: str, hint: str) -> ProbeFailure:
    reason = api.reason(response) or "403 Forbidden"
    return api.failure(FailureType.AUTHORIZATION_FAILED, f"{message} ({reason})", hint=hint, fields=(*fields, "bucket"))


def _failure(api: ApiClient, config: GcsConfig, response: ApiResponse, fields: tuple[str, ...]) -> ProbeFailure:
    if response.status in (403, 429) and error_reasons(response) & _QUOTA_REASONS:
        return api.rate_limited(response)
    if response.status == 404:
        return api.failure(
            FailureType.NOT_FOUND,
            f"{PROVIDER} has no bucket '{config.bucket}' ({api.reason(response) or '404 Not Found'})",
            hint="Check bucket: its name as shown in the Cloud console, without gs://.",
            fields=("bucket",),
        )
    return api.status_failure(response, credential_fields=fields, resource_fields=("bucket",))


async def _authenticate(api: ApiClient, config: GcsConfig, fields: tuple[str, ...]) -> str:
    bucket = quote(config.bucket, safe="")
    response = await api.call("GET", f"/storage/v1/b/{bucket}", params={"fields": "name,location,storageClass"})
    if response.status == 401:
        raise api.failure(
            FailureType.AUTHENTICATION_FAILED,
            api.answered(response),
            hint=(
                "The access token is wrong or expired (they last about an hour): use a service account key so it is "
                "renewed."
                if isinstance(config.credentials, GoogleAccessToken)
                else "Google refused the token it had just issued: check base_url, and try again."
            ),
            fields=fields,
        )
    if _forbidden(response):
        # Object readers (roles/storage.objectViewer) have no storage.buckets.get: the token is valid.
        return f"Token accepted for {_who(config)} (no bucket metadata, which reading objects does not need)"
    if not response.ok:
        raise _failure(api, config, response, fields)
    bucket_info = api.require_json(response)
    where = api.clean(str(bucket_info.get("location") or ""), 60)
    return f"Token accepted for {_who(config)}; bucket '{config.bucket}' found" + (f" ({where})" if where else "")


async def _access(api: ApiClient, config: GcsConfig, fields: tuple[str, ...]) -> str:
    bucket = quote(config.bucket, safe="")
    scope = f"under prefix '{config.prefix}'" if config.prefix else "in the bucket"
    params: dict[str, str | int] = {"maxResults": 1, "fields": "items(name,size)"}
    if config.prefix:
        params["prefix"] = config.prefix
    listing = await api.call("GET", f"/storage/v1/b/{bucket}/o", params=params)
    if _forbidden(listing):
        message = f"The credentials of {_who(config)} may not list the objects of bucket '{config.bucket}'"
        raise _denied(api, listing, fields, message, _ROLE_HINT.format(bucket=config.bucket))
    if not listing.ok:
        raise _failure(api, config, listing, fields)
    items = api.require_json(listing).get("items")
    first = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else None
    name = first.get("name") if first is not None else None
    if not isinstance(name, str) or not name:
        api.probe.warn(
            WarningCode.EMPTY_LOCATION,
            f"There is no object {scope} of bucket '{config.bucket}'",
            hint="Check prefix (object names start with it, folders end with /), or upload the documents to sync.",
        )
        return f"Bucket '{config.bucket}' listed, but there is no object {scope}"
    shown = api.clean(name, 200)
    read = await api.call(
        "GET",
        f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}",
        params={"alt": "media"},
        headers={"Range": f"bytes=0-{FIRST_BYTES - 1}", "Accept": "*/*"},
    )
    if _forbidden(read):
        message = f"The objects {scope} can be listed, but reading '{shown}' is denied"
        hint = "Listing needs storage.objects.list, reading storage.objects.get: " + _ROLE_HINT.format(
            bucket=config.bucket
        )
        raise _denied(api, read, fields, message, hint)
    if read.status == 404:
        raise api.failure(
            FailureType.NOT_FOUND,
            f"The object '{shown}' listed {scope} could not be read (404 Not Found)",
            hint="The bucket may be changing: try again; if it persists, check prefix.",
            fields=("prefix",),
            retryable=True,
        )
    if read.status not in (200, 206):
        raise _failure(api, config, read, fields)
    size = first.get("size") if first is not None else None
    count = min(int(size), FIRST_BYTES) if isinstance(size, str | int) and str(size).isdigit() else FIRST_BYTES
    return f"Bucket '{config.bucket}' listed {scope}: read the first {count} bytes of '{shown}'"
