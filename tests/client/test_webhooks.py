"""``sourcecheck_client.verify_webhook`` against the service's own signing (api.outbound.sign)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sourcecheck_client import WebhookEvent, WebhookVerificationError, verify_webhook

from api.deliveries import WebhookChange, event_body
from api.outbound import sign

SECRET = "whsec_test-secret-0123456789"


def _delivery(at: int | None = None, secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    change = WebhookChange(
        organization_id="org_a",
        source_id="src_a",
        old_status="failed",
        new_status="succeeded",
        result={
            "job_id": "job_x",
            "source_id": "src_a",
            "source_definition_id": "postgres",
            "status": "succeeded",
            "type": None,
            "message": None,
            "hint": None,
            "retryable": None,
            "fields": None,
            "warnings": [],
            "steps": [],
            "worker": None,
            "started_at": None,
            "ended_at": "2026-12-04T00:00:00Z",
            "duration_ms": None,
        },
    )
    body = event_body("evt_0123", change)
    timestamp = int(time.time()) if at is None else at
    return {"Sourcecheck-Signature": sign(secret, timestamp, body), "Sourcecheck-Event-Id": "evt_0123"}, body


def test_a_signed_delivery_verifies_and_gives_the_event_typed() -> None:
    headers, body = _delivery()
    event = verify_webhook(SECRET, headers, body)
    assert isinstance(event, WebhookEvent)
    assert (event.id, event.type, event.source_id) == ("evt_0123", "source.status_changed", "src_a")
    assert (event.previous_status, event.status, event.result.status) == ("failed", "succeeded", "succeeded")
    lowered = {k.lower(): v for k, v in headers.items()}  # header names in any case, body as text
    assert verify_webhook(SECRET, lowered, body.decode()).id == "evt_0123"


def test_a_replay_after_the_tolerance_is_refused() -> None:
    headers, body = _delivery(at=int(time.time()) - 301)
    with pytest.raises(WebhookVerificationError, match="replay"):
        verify_webhook(SECRET, headers, body)
    assert verify_webhook(SECRET, headers, body, tolerance=600).id == "evt_0123"
    with pytest.raises(WebhookVerificationError, match="replay"):  # nor a timestamp from the future
        verify_webhook(SECRET, *_delivery(at=int(time.time()) + 301))


def test_a_changed_body_timestamp_or_secret_is_refused() -> None:
    headers, body = _delivery()
    tampered = json.loads(body)
    tampered["status"] = "failed"
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_webhook(SECRET, headers, json.dumps(tampered, separators=(",", ":")))
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_webhook("whsec_other", headers, body)
    t, v1 = headers["Sourcecheck-Signature"].split(",")
    moved = {**headers, "Sourcecheck-Signature": f"t={int(t[2:]) + 1},{v1}"}  # a fresh timestamp on an old signature
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_webhook(SECRET, moved, body)


@pytest.mark.parametrize(
    "signature", [None, "", "v1=abc", "t=123", "t=abc,v1=00", "t=" + "9" * 40 + ",v1=00", "x" * 5000]
)
def test_a_missing_or_malformed_signature_is_refused(signature: str | None) -> None:
    headers, body = _delivery()
    headers.pop("Sourcecheck-Signature")
    if signature is not None:
        headers["Sourcecheck-Signature"] = signature
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, headers, body)


def test_one_of_several_signatures_may_match() -> None:
    headers, body = _delivery()
    t, v1 = headers["Sourcecheck-Signature"].split(",")
    headers["Sourcecheck-Signature"] = f"{t},v1={'0' * 64},{v1}"
    assert verify_webhook(SECRET, headers, body).id == "evt_0123"


def test_an_event_id_header_other_than_the_signed_one_is_refused() -> None:
    headers, body = _delivery()
    with pytest.raises(WebhookVerificationError, match="Event-Id"):
        verify_webhook(SECRET, {**headers, "Sourcecheck-Event-Id": "evt_other"}, body)


def test_the_readmes_verification_by_hand_accepts_a_delivery_and_refuses_its_replay() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Webhooks", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 (the README's own example)
    verify = namespace["verify"]
    headers, body = _delivery()
    seen: set[str] = set()
    assert verify(SECRET, headers, body, seen)["id"] == "evt_0123"
    with pytest.raises(ValueError, match="already handled"):
        verify(SECRET, headers, body, seen)
    with pytest.raises(ValueError, match="bad signature"):
        verify("whsec_other", headers, body, set())
    with pytest.raises(ValueError, match="replay"):
        verify(SECRET, *_delivery(at=int(time.time()) - 301), set())
