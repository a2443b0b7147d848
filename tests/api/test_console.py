"""The console over plain HTTP: its files and their headers, and that loading it needs no
key while every call it makes does (the browser tests: tests/api/test_console_browser.py)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e

PAGES = ["/console", *(f"/console/assets/{name}" for name in ("console.js", "forms.js", "events.js", "console.css"))]


@pytest.mark.parametrize("path", PAGES)
def test_the_console_loads_without_a_key_under_a_strict_policy(stack: Stack, path: str) -> None:
    r = httpx.get(stack.base_url + path)
    assert r.status_code == 200, r.text
    policy = dict(part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"  # no 'unsafe-inline'
    assert "unsafe" not in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    expected = {"/console": "text/html", ".js": "text/javascript", ".css": "text/css"}
    assert r.headers["content-type"].startswith(next(v for k, v in expected.items() if path.endswith(k)))


def test_the_page_has_no_inline_script_or_style_and_fetches_nothing_elsewhere(stack: Stack) -> None:
    page = httpx.get(f"{stack.base_url}/console").text
    assert re.findall(r"<script[^>]*>", page) and all("src=" in tag for tag in re.findall(r"<script[^>]*>", page))
    assert "<style" not in page and " style=" not in page and "onclick" not in page.lower()
    for path in PAGES:
        text = httpx.get(stack.base_url + path).text
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path
        assert "http://" not in text.replace("http://127.0.0.1", "") and "https://" not in text, path


def test_only_the_shipped_files_are_served(stack: Stack) -> None:
    for path in ["/console/assets/index.html", "/console/assets/__init__.py", "/console/assets/..%2F__init__.py"]:
        assert httpx.get(stack.base_url + path).status_code == 404, path


def test_every_call_the_console_makes_needs_the_key(stack: Stack) -> None:
    calls = [
        "/console/session",
        stack.url("/source-definitions"),
        stack.url("/source-definitions/postgres/form"),
        stack.url("/sources"),
    ]
    for path in calls:
        assert httpx.get(stack.base_url + path).status_code == 401, path
        with stack.client() as client:
            assert client.get(path).status_code == 200, path


def test_the_session_names_the_keys_organization(stack: Stack) -> None:
    with stack.client() as client:
        assert client.get("/console/session").json() == {"organization_id": "org_e2e", "organization_name": "E2E"}
    bad = httpx.get(
        stack.base_url + "/console/session", headers={"Authorization": "Bearer sck_000000000000_" + "A" * 43}
    )
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"


def test_a_definitions_form_is_answered_and_an_unknown_one_is_404(stack: Stack) -> None:
    with stack.client() as client:
        form = client.get(stack.url("/source-definitions/postgres/form")).json()
        assert form["definition_id"] == "postgres"
        assert next(f for f in form["fields"] if f["name"] == "password")["secret"] is True
        assert client.get(stack.url("/source-definitions/nope/form")).status_code == 404
        other = client.get(stack.url("/source-definitions/postgres/form", org_id=stack.other_org_id))
        assert other.status_code == 404
