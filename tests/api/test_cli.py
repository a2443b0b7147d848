"""The sourcecheck command: organizations and API keys."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e


def test_apikey_create_prints_the_token_and_nothing_else(stack: Stack) -> None:
    done = stack.cli("apikey", "create", "--org", stack.org_id)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"sck_[a-z0-9]{12}_[A-Za-z0-9_-]{43}\n", done.stdout)


def test_org_create_prints_the_id_and_refuses_a_duplicate(stack: Stack) -> None:
    done = stack.cli("org", "create", "--id", "org_cli_test", "--name", "CLI")
    assert done.stdout == "org_cli_test\n"
    again = stack.cli("org", "create", "--id", "org_cli_test")
    assert again.returncode != 0 and "exists" in again.stderr
    bad = stack.cli("org", "create", "--id", "acme")
    assert bad.returncode != 0 and "org_" in bad.stderr


def test_revoked_key_is_refused(stack: Stack) -> None:
    token = stack.cli("apikey", "create", "--org", stack.org_id).stdout.strip()
    url = stack.base_url + stack.url("/sources")
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    key_id = token.split("_")[1]
    assert stack.cli("apikey", "revoke", key_id).returncode == 0
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401
