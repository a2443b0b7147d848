"""Stored sources and source definitions over HTTP."""

from __future__ import annotations

import uuid

import pytest

from tests.servers.postgres import PostgresServer
from tests.servers.stack import Stack

pytestmark = pytest.mark.e2e


def test_source_lifecycle_masks_secrets_everywhere(stack: Stack, postgres_server: PostgresServer) -> None:
    with stack.client() as client:
        created = client.post(
            stack.url("/sources"),
            json={"source_definition_id": "postgres", "name": "warehouse", "configuration": postgres_server.config()},
        )
        assert created.status_code == 201, created.text
        source = created.json()
        assert source["id"].startswith("src_")
        assert source["configuration"]["password"] == "**********"
        assert source["configuration"]["host"] == postgres_server.host
        assert source["workspace_id"].startswith("ws_")

        listed = client.get(stack.url("/sources")).json()
        assert source["id"] in [s["id"] for s in listed["data"]]
        assert listed["count"] == len(listed["data"])

        renamed = client.patch(
            stack.url(f"/sources/{source['id']}"),
            json={"name": "renamed", "configuration": {"password": "**********", "port": postgres_server.port}},
        )
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["name"] == "renamed"
        assert renamed.json()["configuration"]["password"] == "**********"
        # The masked password kept its stored value: the source still connects.
        tested = client.post(stack.url("/sources/test"), json={"source_id": source["id"]})
        assert tested.json()["status"] == "succeeded", tested.text

        assert client.delete(stack.url(f"/sources/{source['id']}")).status_code == 204
        assert client.get(stack.url(f"/sources/{source['id']}")).status_code == 404


def test_invalid_configuration_is_refused_on_write(stack: Stack) -> None:
    with stack.client() as client:
        name = f"refused-{uuid.uuid4().hex}"
        r = client.post(
            stack.url("/sources"),
            json={
                "source_definition_id": "postgres",
                "name": name,
                "configuration": {"host": "db", "password": "hunter2-secret"},
            },
        )
        assert r.status_code == 422
        assert "configuration.user" in {e["field"] for e in r.json()["error"]["errors"]}
        assert "hunter2-secret" not in r.text
        assert name not in {s["name"] for s in client.get(stack.url("/sources")).json()["data"]}  # nothing was saved


def test_a_source_of_another_organization_is_invisible(stack: Stack, postgres_server: PostgresServer) -> None:
    with stack.client() as client:
        mine = client.post(
            stack.url("/sources"),
            json={"source_definition_id": "postgres", "name": "mine", "configuration": postgres_server.config()},
        ).json()
    with stack.client(stack.other_token) as other:
        for method in ("GET", "PATCH", "DELETE"):
            r = other.request(
                method,
                stack.url(f"/sources/{mine['id']}", org_id=stack.other_org_id),
                json={"name": "stolen"} if method == "PATCH" else None,
            )
            assert r.status_code == 404, method
        assert mine["id"] not in [
            s["id"] for s in other.get(stack.url("/sources", org_id=stack.other_org_id)).json()["data"]
        ]


def test_source_definitions_list_the_connectors_with_secret_marked_schemas(stack: Stack) -> None:
    with stack.client() as client:
        listed = client.get(stack.url("/source-definitions")).json()
        by_id = {d["id"]: d for d in listed["data"]}
        assert {"postgres", "mysql", "http"} <= set(by_id)
        spec = by_id["postgres"]["connection_specification"]
        assert spec["properties"]["password"]["secret"] is True
        assert "host" in spec["required"]
        one = client.get(stack.url("/source-definitions/mysql"))
        assert one.status_code == 200 and one.json()["id"] == "mysql"
        assert client.get(stack.url("/source-definitions/nope")).status_code == 404
