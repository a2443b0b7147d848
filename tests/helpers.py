"""What many tests share: run a connector's check, pick a step, read the failure."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import asdict
from typing import Any

from connectors import get_connector, run_check
from connectors.base import CheckResult, CheckStatus, Failure, Step
from connectors.egress import EgressPolicy
from connectors.errors import FailureType
from connectors.profile import Profile


async def check(
    name: str,
    config: dict[str, Any],
    timeout: float = 5.0,
    *,
    profile: Profile | None = None,
    egress: EgressPolicy | None = None,
) -> CheckResult:
    """Connector ``name``'s check on ``config``, as a probe process runs it."""
    connector = get_connector(name)
    return await run_check(connector, connector.parse_config(config), timeout=timeout, egress=egress, profile=profile)


def step(result: CheckResult, name: str) -> Step:
    return next(s for s in result.steps if s.name == name)


def failure_type(result: CheckResult) -> FailureType | None:
    return result.failure.type if result.failure else None


def failure(result: CheckResult) -> Failure:
    """The failure of a result that must have failed."""
    assert result.status == CheckStatus.FAILED, result
    assert result.failure is not None
    return result.failure


def messages(result: CheckResult) -> str:
    """Every text of a result, as the API would show it."""
    return json.dumps(asdict(result), default=str)


def faulty(mode: str = "sleep", seconds: float = 0, tag: str | None = None) -> dict[str, Any]:
    """An inline test of the ``faulty`` plugin (tests/plugins/faulty): a probe that sleeps,
    hangs, crashes, ... on purpose. A fresh tag keeps identical tests from being coalesced."""
    return {
        "source_definition_id": "faulty",
        "configuration": {"mode": mode, "seconds": seconds, "tag": tag or uuid.uuid4().hex},
    }


def forms(secret: str) -> list[bytes]:
    """The secret as it would appear in plaintext or inside base64 at any alignment."""
    raw = secret.encode()
    found = [raw]
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        found.append(encoded[(pad * 8 + 5) // 6 + 1 : -4])
    return found


def assert_absent(secret: str, data: bytes, where: str) -> None:
    for form in forms(secret):
        assert form not in data, f"the secret appears in {where} (as {form!r})"


def failed_at(result: CheckResult, type: FailureType, step_name: str, fields: set[str]) -> str:
    """The message of ``result``, which must have failed with ``type`` in step ``step_name``,
    naming exactly ``fields``, with every planned step reported."""
    assert result.status == CheckStatus.FAILED and result.failure is not None, result
    assert result.failure.type == type, result.failure
    assert set(result.failure.fields) == fields, result.failure
    assert step(result, step_name).status == "failed", result.steps
    return result.failure.message
