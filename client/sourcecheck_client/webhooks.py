"""Receiving sourcecheck's webhooks: :func:`verify_webhook` checks a delivery's signature and
age, and gives the event typed.

sourcecheck signs each POST with the webhook's secret (``whsec_…``, shown once when the
webhook was registered): ``Sourcecheck-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
f"{t}.{body}">``. A delivery whose timestamp is further than ``tolerance`` seconds from now
is refused, so a recorded request cannot be replayed later; within the tolerance, refuse an
event id you have already handled (a retry after a lost answer sends the same id again).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import datetime

from pydantic import ValidationError

from sourcecheck_client.models import TestRecord, _Model

SIGNATURE_HEADER = "sourcecheck-signature"
EVENT_ID_HEADER = "sourcecheck-event-id"
DEFAULT_TOLERANCE = 300
"""Seconds a delivery's timestamp may be from the receiver's clock."""
_MAX_HEADER = 4096


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh delivery of sourcecheck: answer it 400 and ignore it."""


class WebhookEvent(_Model):
    """A source's status changed (``type``: ``source.status_changed``)."""

    id: str
    type: str
    source_id: str
    previous_status: str | None
    status: str
    result: TestRecord
    """The test that made the change, as the source's history keeps it."""
    occurred_at: datetime


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> WebhookEvent:
    """The event of a delivery whose signature is ``secret``'s and whose timestamp is within
    ``tolerance`` seconds of ``now`` (default: this machine's clock); raises
    :class:`WebhookVerificationError` otherwise. ``body``: the raw request body, as received."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    lowered = {key.lower(): value for key, value in headers.items()}
    header = lowered.get(SIGNATURE_HEADER)
    if not header or len(header) > _MAX_HEADER:
        raise WebhookVerificationError("no Sourcecheck-Signature header")
    timestamp, signatures = _parse(header)
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance:
        raise WebhookVerificationError(
            f"the signature's timestamp is {abs(age):.0f} s from now (more than {tolerance:.0f} s): refused as a replay"
        )
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookVerificationError("the signature does not match the body and the secret")
    try:
        event = WebhookEvent.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        raise WebhookVerificationError("the signed body is not a sourcecheck event") from None
    if lowered.get(EVENT_ID_HEADER, event.id) != event.id:
        raise WebhookVerificationError("the Sourcecheck-Event-Id header is not the event's id")
    return event


def _parse(header: str) -> tuple[int, list[str]]:
    """``t=…,v1=…[,v1=…]`` → (timestamp, signatures); several v1 let a secret be rolled."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookVerificationError("the Sourcecheck-Signature header is malformed")
    return timestamp, signatures
