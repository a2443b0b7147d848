"""The OpenAPI document is complete and /docs renders it; Flower refuses to run open in production."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e

TEST_ROUTE = "/v1/organizations/{organization_id}/knowledge/connectors/sources/test"


def test_openapi_lists_every_route_with_its_errors_and_the_contract_examples(stack: Stack) -> None:
    spec = httpx.get(f"{stack.base_url}/openapi.json").json()
    paths = spec["paths"]
    assert TEST_ROUTE in paths and TEST_ROUTE + "/{job_id}" in paths
    assert any(p.endswith("/source-definitions") for p in paths)
    assert any(p.endswith("/sources/{source_id}") for p in paths)
    post = paths[TEST_ROUTE]["post"]
    assert {"200", "202", "401", "404", "422", "429", "503"} <= set(post["responses"])
    examples = post["responses"]["200"]["content"]["application/json"]["examples"]
    assert {"status": "failed", "job_info": {"message": "Connection refused"}} in [
        e["value"] for e in examples.values()
    ]


def test_statuses_and_failure_types_are_enums_in_the_document() -> None:
    from api.main import app

    schemas = app.openapi()["components"]["schemas"]

    def enum(prop: dict[str, Any]) -> list[str]:
        ref = next(p["$ref"] for p in [prop, *prop.get("anyOf", [])] if "$ref" in p)
        return list(schemas[ref.rsplit("/", 1)[1]]["enum"])

    assert enum(schemas["StepInfo"]["properties"]["status"]) == ["succeeded", "failed", "skipped"]
    assert enum(schemas["TestResult"]["properties"]["status"]) == ["pending", "running", "succeeded", "failed"]
    assert "connection_refused" in enum(schemas["JobInfo"]["properties"]["type"])


def test_docs_page_renders(stack: Stack) -> None:
    page = httpx.get(f"{stack.base_url}/docs")
    assert page.status_code == 200
    assert "swagger-ui" in page.text and "/openapi.json" in page.text


def test_flower_refuses_to_start_without_authentication_in_production(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCECHECK_", "FLOWER_"))}
    env.update(
        SOURCECHECK_PROFILE="production",
        SOURCECHECK_SECRET_KEYS=Fernet.generate_key().decode(),
        SOURCECHECK_DATA_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [str(Path(sys.executable).with_name("sourcecheck")), "flower", "--port=1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "authentication" in done.stderr
