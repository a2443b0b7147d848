"""Fuzzing the live API from its own OpenAPI document (schemathesis).

Every operation of the running API's ``/openapi.json`` gets generated requests, valid ones
(positive generation) and invalid ones (negative), sent over HTTP to the real stack with
a valid token of an organization made for this module. Each answer must:

- never be a 5xx (``not_a_server_error``);
- have a status the document declares for the operation (``status_code_conformance``),
  the declared content type and a body valid against the declared schema
  (``content_type_conformance``, ``response_schema_conformance``), and the declared
  headers (``response_headers_conformance``: ``Retry-After`` on 429 and 503).

Bounded for CI: ``MAX_EXAMPLES`` examples per operation and mode, no shrinking, a fixed
seed (a failure replays identically), ``wait=0`` so a test request never waits for a
probe, and a time budget after which the remaining operations are skipped (reported).

The operations are iterated in the test rather than parametrized with schemathesis'
pytest integration, whose lazy loader does not work with this pytest (it reads a node
attribute pytest 9 removed); the generation and the checks are schemathesis' own.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e

ORG = "org_fuzz"
MAX_EXAMPLES = 30
BUDGET_SECONDS = 150.0  # per generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def fuzz_token(stack: Stack) -> str:
    """A token of an organization only this module uses (what the fuzzer creates disturbs nobody)."""
    stack.cli("org", "create", "--id", ORG, "--name", "Fuzz")  # fails harmlessly when it exists
    done = stack.cli("apikey", "create", "--org", ORG)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def api_schema(stack: Stack) -> Any:
    config = schemathesis.Config.from_dict(
        {"seed": 20240601, "base-url": stack.base_url, "request-timeout": 30, "generation": {"no-shrink": True}}
    )
    return schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json", config=config)


def _fixed(operation: Any, token: str) -> dict[str, Any]:
    """What is not generated: the token, the token's organization in the path (a random
    ``org_*`` would only ever be 404), and ``wait=0`` (answer at once, never wait for a probe)."""
    names = {(p.location, p.name) for p in operation.iter_parameters()}
    fixed: dict[str, Any] = {"headers": {"authorization": f"Bearer {token}"}}
    if ("path", "organization_id") in names:
        fixed["path_parameters"] = {"organization_id": ORG}
    if ("query", "wait") in names:
        fixed["query"] = {"wait": 0}
    return fixed


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_the_api_never_fails_and_answers_as_documented(api_schema: Any, fuzz_token: str, mode: GenerationMode) -> None:
    started = time.monotonic()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    failures: list[str] = []
    skipped: list[str] = []
    for operation in operations:
        if time.monotonic() - started > BUDGET_SECONDS:
            skipped.append(operation.label)
            continue
        strategy = operation.as_strategy(generation_mode=mode, **_fixed(operation, fuzz_token))

        @given(case=strategy)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            fuzz()
        except Unsatisfiable:  # negative mode, nothing left to break: every parameter is fixed
            assert mode == GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # one failing operation must not hide the others'
            failures.append(f"{operation.label}: {exc}")
    if skipped:
        print(f"time budget spent: not fuzzed ({mode.value}): {', '.join(skipped)}")
    assert not failures, "\n\n".join(failures)
    assert len(skipped) < len(operations) // 2, f"the budget covered too few operations; skipped {skipped}"
