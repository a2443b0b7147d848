"""The rule that binds stored secrets to their destination, for each kind of destination
field (a nested tunnel, OAuth token_url, S3 endpoint and region, SharePoint tenant, a switch
of a nested object's type), decided from the connectors' schemas alone."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from api.errors import SecretsRequired
from api.sources import merged_configuration
from connectors.base import MASK
from connectors.registry import get_connector

TUNNEL = {"host": "10.0.0.5", "port": 22, "user": "jump", "auth": {"type": "password", "password": "tunnel-secret"}}
GOOGLE = {
    "type": "oauth",
    "client_id": "id.apps.googleusercontent.com",
    "client_secret": "gs-secret",
    "refresh_token": "1//refresh",
}


def stored(definition: str, **overrides: Any) -> dict[str, Any]:
    connector = get_connector(definition)
    return connector.parse_config({**connector.example_config("db.internal", 5432), **overrides}).revealed()


def refused(definition: str, base: dict[str, Any], override: dict[str, Any]) -> list[str]:
    with pytest.raises(SecretsRequired) as caught:
        merged_configuration(definition, base, override)
    assert caught.value.status_code == 422
    return [e.field for e in caught.value.errors or []]


def test_a_new_tunnel_host_needs_every_secret_again() -> None:
    base = stored("postgres", ssh_tunnel=TUNNEL)
    assert refused("postgres", base, {"ssh_tunnel": {"host": "evil.example"}}) == [
        "configuration.password",
        "configuration.ssh_tunnel.auth.password",
    ]
    sent = {"password": "db", "ssh_tunnel": {"host": "evil.example", "auth": {"type": "password", "password": "t"}}}
    assert merged_configuration("postgres", base, sent).revealed()["ssh_tunnel"]["host"] == "evil.example"


def test_removing_the_tunnel_is_a_new_destination() -> None:
    base = stored("postgres", ssh_tunnel=TUNNEL)
    assert refused("postgres", base, {"ssh_tunnel": None}) == ["configuration.password"]


def test_switching_a_nested_type_is_a_new_destination() -> None:
    base = stored("postgres", ssh_tunnel=TUNNEL)
    key = (
        ed25519.Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    )
    switched = {"ssh_tunnel": {"auth": {"type": "private_key", "private_key": key}}}
    assert refused("postgres", base, switched) == ["configuration.password"]
    assert (
        merged_configuration("postgres", base, {**switched, "password": "db"}).revealed()["ssh_tunnel"]["auth"]["type"]
        == "private_key"
    )


def test_non_destination_fields_keep_the_stored_secrets() -> None:
    base = stored("postgres", ssh_tunnel=TUNNEL)
    config = merged_configuration(
        "postgres", base, {"database": "other", "password": MASK, "ssh_tunnel": {"user": "ops"}}
    )
    assert config.revealed()["password"] == base["password"]
    assert config.revealed()["ssh_tunnel"]["auth"]["password"] == "tunnel-secret"


def test_an_oauth_token_url_is_a_destination() -> None:
    base = stored("google_drive", credentials=GOOGLE)
    fields = refused(
        "google_drive", base, {"credentials": {"token_url": "https://evil.example/token", "client_secret": MASK}}
    )
    assert fields == ["configuration.credentials.client_secret", "configuration.credentials.refresh_token"]
    # Only the refresh token sent again: the client secret still would come from storage.
    assert refused(
        "google_drive", base, {"credentials": {"token_url": "https://evil.example/token", "refresh_token": "r"}}
    ) == [
        "configuration.credentials.client_secret",
    ]


def test_s3_endpoint_and_region_are_destinations() -> None:
    base = stored("s3")
    for override in (
        {"endpoint_url": "https://evil.example"},
        {"region": "eu-west-1"},
        {"sts_endpoint_url": "https://evil.example"},
    ):
        assert refused("s3", base, override) == ["configuration.access_key_id", "configuration.secret_access_key"]


def test_a_sharepoint_tenant_is_a_destination() -> None:
    credentials = {
        "type": "client_credentials",
        "tenant": "contoso.onmicrosoft.com",
        "client_id": "app",
        "client_secret": "ms",
    }
    base = stored("sharepoint", credentials=credentials)
    assert refused("sharepoint", base, {"credentials": {"tenant": "evil.onmicrosoft.com"}}) == [
        "configuration.credentials.client_secret"
    ]


def test_a_base_url_is_a_destination_and_the_message_names_it() -> None:
    base = stored("github")
    with pytest.raises(SecretsRequired) as caught:
        merged_configuration("github", base, {"base_url": "https://evil.example", "token": MASK})
    assert "base_url" in caught.value.message and "token" in caught.value.message
    assert "example-token" not in caught.value.message
