"""Signed webhook POSTs out of the API, held to the egress policy probes obey.

A webhook URL is a destination a tenant chose, like a probe's host: its name is resolved
with the probes' own ``resolve`` step under the service's egress policy (at registration
and again before every attempt), and the POST goes to the checked address only
(:class:`connectors.transport.PinnedTransport`: DNS cannot switch it between the check and
the connection). Redirects are not followed, the receiver's answer is read to a short
excerpt at most, and one attempt is bounded in time as a whole.

The signature: ``Sourcecheck-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
f"{t}.{body}")>``; ``sourcecheck_client.verify_webhook`` checks it on the receiver's side.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from connectors import egress, profile
from connectors.base import Probe
from connectors.egress import EgressPolicy
from connectors.errors import ProbeFailure
from connectors.network import Address, resolve
from connectors.profile import Profile
from connectors.text import server_text
from connectors.tls import client_context
from connectors.transport import PinnedTransport, transport_failure

SIGNATURE_HEADER = "Sourcecheck-Signature"
EVENT_ID_HEADER = "Sourcecheck-Event-Id"
USER_AGENT = "sourcecheck-webhooks/0.1"
EXCERPT_CHARS = 200
"""Characters of a receiver's answer kept in the delivery log (after cleaning)."""
_EXCERPT_BYTES = EXCERPT_CHARS * 4
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


class Refused(Exception):
    """The URL may not be posted to: malformed, not https, unresolvable or refused by the
    egress policy. ``message`` says why, for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Policy:
    """Where webhooks may go: the service's egress policy, profile and scheme rule."""

    egress: EgressPolicy
    profile: Profile
    allow_http: bool
    timeout: float


def check_url(url: str, *, allow_http: bool) -> httpx.URL:
    """``url`` parsed, or Refused: https (http only if ``allow_http``), a host, no credentials,
    no fragment, no whitespace, control characters or backslashes."""
    if _BAD_URL_CHARS.search(url):
        raise Refused("The URL must not contain whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("The URL is not valid") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise Refused("The URL must be https://" if not allow_http else "The URL must be http:// or https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise Refused("The URL must not contain credentials: the signature authenticates the sender")
    if not parts.hostname:
        raise Refused("The URL must name a host")
    if parts.fragment or url.endswith("#"):
        raise Refused("The URL must not have a fragment")
    if port == 0:
        raise Refused("The URL must not use port 0")
    return httpx.URL(url)


async def destination(url: str, policy: Policy) -> tuple[httpx.URL, Address]:
    """The URL and the one address of its host to post to, checked now; Refused otherwise."""
    parsed = check_url(url, allow_http=policy.allow_http)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    probe = Probe(("resolve",), deadline=time.monotonic() + policy.timeout)
    try:
        with egress.using(policy.egress), profile.using(policy.profile):
            async with asyncio.timeout(policy.timeout):
                addresses = await resolve(probe, host, port)
    except ProbeFailure as failure:
        raise Refused(failure.message) from None
    except TimeoutError:
        raise Refused(f"resolving {host} took longer than {policy.timeout:.1f} s") from None
    return parsed, addresses[0]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Sourcecheck-Signature`` header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class Answer:
    """What one attempt got: the receiver's status and the start of its body, or an error."""

    status_code: int | None
    error: str | None
    excerpt: str | None
    duration_ms: float

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def post(url: str, *, secret: str, event_id: str, body: bytes, policy: Policy) -> Answer:
    """POST ``body`` signed with ``secret`` to ``url`` (checked again now), within ``policy.timeout``."""
    started = time.perf_counter()

    def answer(status: int | None, error: str | None, excerpt: str | None = None) -> Answer:
        return Answer(status, error, excerpt, round((time.perf_counter() - started) * 1000, 2))

    try:
        async with asyncio.timeout(policy.timeout):
            parsed, address = await destination(url, policy)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                EVENT_ID_HEADER: event_id,
                SIGNATURE_HEADER: sign(secret, int(time.time()), body),
            }
            transport = PinnedTransport(client_context(), address, policy.egress)
            with egress.using(policy.egress), profile.using(policy.profile):
                async with (
                    httpx.AsyncClient(transport=transport, follow_redirects=False, timeout=policy.timeout) as client,
                    client.stream("POST", parsed, content=body, headers=headers) as response,
                ):
                    excerpt = await _excerpt(response)
    except TimeoutError:
        return answer(None, f"no answer within {policy.timeout:.1f} s")
    except Refused as refused:
        return answer(None, refused.message)
    except ProbeFailure as failure:
        return answer(None, failure.message)
    except httpx.HTTPError as exc:
        return answer(None, transport_failure(exc, policy.timeout).message)
    error = None if 200 <= response.status_code < 300 else f"the receiver answered HTTP {response.status_code}"
    return answer(response.status_code, error, excerpt)


async def _excerpt(response: httpx.Response) -> str | None:
    """The first characters of the answer, control characters replaced; the rest is not read."""
    data = b""
    async for chunk in response.aiter_raw():
        data += chunk
        if len(data) >= _EXCERPT_BYTES:
            break
    text = " ".join(_UNPRINTABLE.sub(" ", server_text(data, EXCERPT_CHARS)).split())
    return text or None
