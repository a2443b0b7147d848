"""The whole connector catalog through the real stack: every connector, both ways of testing.

For each of the twelve connectors, against a real local server (tests/servers/), through the
API, a Redis queue and a Celery worker running the probe in a child process:

- inline (``source_definition_id`` + ``configuration``), a correct configuration succeeds with
  the connector's planned steps, and an incorrect one (a wrong credential or a missing
  resource) fails with the expected ``type``, a hint, and a message naming what is wrong;
- stored (``POST .../sources``, then ``source_id``), it succeeds; with a ``configuration``
  override holding a wrong secret it fails; and the stored source, unchanged, still succeeds.

Plus: ``GET .../source-definitions`` lists all twelve with complete schemas whose secret
fields are marked ``"secret": true``. postgres and mysql also run all of the above through an
SSH tunnel (the ssh server as bastion), whose steps (``ssh``, ``ssh_auth``, ``tunnel``) a
direct connection does not plan.

The servers are session fixtures (or module-scoped here), started only for the connectors
selected, so ``-k github`` starts no database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from connectors.registry import all_connectors
from tests.e2e.catalog import (
    WRONG,
    Case,
    Failing,
    check_inline_failure,
    check_inline_success,
    check_stored,
    secret_names,
)
from tests.servers.http import HttpServer, TestCA, server_context, start_http_server
from tests.servers.mariadb import MariaDB
from tests.servers.postgres import PostgresServer
from tests.servers.s3 import S3Server
from tests.servers.saas import (
    CONFLUENCE_EMAIL,
    CONFLUENCE_SPACE,
    DRIVE_EMAIL,
    DRIVE_FOLDER_ID,
    GITHUB_REPO,
    NOTION_PAGE_ID,
    SHAREPOINT_SITE,
    SLACK_CHANNEL,
    SLACK_NOT_MEMBER_CHANNEL,
    TENANT,
    SaasServer,
    start_saas_server,
)
from tests.servers.ssh import SshServer
from tests.servers.stack import Stack
from tests.servers.website import Site, start_site

pytestmark = pytest.mark.e2e

CATALOG = (
    "postgres",
    "mysql",
    "http",
    "sftp",
    "s3",
    "website",
    "notion",
    "confluence",
    "github",
    "slack",
    "google_drive",
    "sharepoint",
)

# Per connector: property names that must be marked secret somewhere in its schema ($defs included).
SECRET_FIELDS: dict[str, set[str]] = {
    "postgres": {"password", "private_key", "passphrase"},  # the last two: the SSH tunnel's key login
    "mysql": {"password", "private_key", "passphrase"},
    "http": {"password", "token", "value"},
    "sftp": {"password", "private_key", "passphrase"},
    "s3": {"secret_access_key"},
    "website": set(),  # a public website: nothing secret to configure
    "notion": {"token"},
    "confluence": {"api_token", "token"},
    "github": {"token"},
    "slack": {"token"},
    "google_drive": {"access_token", "client_secret", "refresh_token", "service_account_json"},
    "sharepoint": {"access_token", "client_secret", "refresh_token"},
}
# Names that must never be marked secret wherever they appear.
NEVER_SECRET = {"host", "port", "user", "database", "url", "bucket", "base_url", "email", "client_id", "type", "tenant"}

_DIRECT = ("resolve", "tcp", "tls", "authenticate", "access")


# --- servers that are function-scoped elsewhere, shared by this module ------------------------


@pytest.fixture(scope="module")
def catalog_http() -> Iterator[HttpServer]:
    with start_http_server() as server:
        yield server


@pytest.fixture(scope="module")
def catalog_site(test_ca: TestCA) -> Iterator[Site]:
    with start_site(server_context(*test_ca.issue()), ca_pem=test_ca.pem) as site:
        yield site


@pytest.fixture(scope="module")
def catalog_saas(test_ca: TestCA) -> Iterator[SaasServer]:
    with start_saas_server(test_ca) as server:
        yield server


# --- the cases, one builder per connector -------------------------------------------------------


def _postgres(request: pytest.FixtureRequest) -> Case:
    pg: PostgresServer = request.getfixturevalue("postgres_server")
    return Case(
        "postgres",
        good=pg.config(),
        steps=_DIRECT,
        inline_bad=Failing(pg.config(database="no_such_db"), "not_found", "authenticate", ('database "no_such_db"',)),
        stored_bad=Failing(
            {"password": WRONG}, "authentication_failed", "authenticate", (pg.user, "password"), (WRONG,)
        ),
        secrets=(pg.password,),
        warnings=("weak_authentication",),  # a password login to a server without TLS
    )


def _mysql(request: pytest.FixtureRequest) -> Case:
    db: MariaDB = request.getfixturevalue("mariadb_server")
    return Case(
        "mysql",
        good=db.config(),
        steps=("resolve", "tcp", "authenticate", "access"),
        inline_bad=Failing(
            db.config(database=db.forbidden_database),
            "authorization_failed",
            "access",
            (db.forbidden_database, db.user),
        ),
        stored_bad=Failing({"password": WRONG}, "authentication_failed", "authenticate", (db.user,), (WRONG,)),
        secrets=(db.password,),
    )


def _http(request: pytest.FixtureRequest) -> Case:
    server: HttpServer = request.getfixturevalue("catalog_http")
    auth = {"type": "basic", "username": server.username, "password": server.password}
    return Case(
        "http",
        good={"url": server.url("/protected"), "auth": auth},
        steps=("resolve", "tcp", "tls", "request"),  # tls: skipped in place, an http:// URL
        inline_bad=Failing({"url": server.url("/missing"), "auth": auth}, "not_found", "request", ("404", "/missing")),
        stored_bad=Failing({"auth": {"password": WRONG}}, "authentication_failed", "request", ("401",), (WRONG,)),
        secrets=(server.password,),
        warnings=("weak_authentication",),  # basic credentials to an http:// URL
    )


def _sftp(request: pytest.FixtureRequest) -> Case:
    ssh: SshServer = request.getfixturevalue("ssh_server")
    return Case(
        "sftp",
        good=ssh.sftp_config(host_key=ssh.host_key),
        steps=("resolve", "tcp", "ssh", "authenticate", "access"),
        inline_bad=Failing(ssh.sftp_config(path="/no-such-folder"), "not_found", "access", ("/no-such-folder",)),
        stored_bad=Failing(
            {"auth": {"password": WRONG}}, "authentication_failed", "authenticate", (ssh.user,), (WRONG,)
        ),
        secrets=(ssh.password,),
    )


def _s3(request: pytest.FixtureRequest) -> Case:
    s3: S3Server = request.getfixturevalue("s3_server")
    return Case(
        "s3",
        good=s3.config(),
        steps=_DIRECT,  # tls: skipped in place, an http:// endpoint
        inline_bad=Failing(s3.config(bucket="missing"), "not_found", "access", ("missing",)),
        stored_bad=Failing(
            {"secret_access_key": WRONG}, "authentication_failed", "authenticate", ("secret access key",), (WRONG,)
        ),
        secrets=(s3.secret_key,),
    )


def _website(request: pytest.FixtureRequest) -> Case:
    site: Site = request.getfixturevalue("catalog_site")
    good = {"url": site.url("/docs/"), "ca_cert": site.ca_pem}
    return Case(
        "website",
        good=good,
        steps=("resolve", "tcp", "tls", "robots", "fetch"),
        inline_bad=Failing(good | {"url": site.url("/no-such-page")}, "not_found", "fetch", ("404", "/no-such-page")),
        # A website has no secret: the override is a user agent that robots.txt shuts out.
        stored_bad=Failing({"user_agent": "BadBot"}, "authorization_failed", "robots", ("robots.txt", "BadBot")),
    )


def _notion(request: pytest.FixtureRequest) -> Case:
    saas: SaasServer = request.getfixturevalue("catalog_saas")
    good = {"token": saas.token, "object_id": NOTION_PAGE_ID, "base_url": saas.url("/notion"), "ca_cert": saas.ca_pem}
    missing = str(uuid.uuid4())
    return Case(
        "notion",
        good=good,
        steps=_DIRECT,
        inline_bad=Failing(
            good | {"object_id": missing}, "not_found", "access", (missing, "shared with the integration")
        ),
        stored_bad=Failing({"token": WRONG}, "authentication_failed", "authenticate", ("invalid",), (WRONG,)),
        secrets=(saas.token,),
    )


def _confluence(request: pytest.FixtureRequest) -> Case:
    saas: SaasServer = request.getfixturevalue("catalog_saas")
    good = {
        "base_url": saas.url("/confluence/wiki"),
        "credentials": {"type": "basic", "email": CONFLUENCE_EMAIL, "api_token": saas.token},
        "space_key": CONFLUENCE_SPACE,
        "ca_cert": saas.ca_pem,
    }
    return Case(
        "confluence",
        good=good,
        steps=_DIRECT,
        inline_bad=Failing(good | {"space_key": "NOPE"}, "not_found", "access", ("NOPE",)),
        stored_bad=Failing(
            {"credentials": {"api_token": WRONG}}, "authentication_failed", "authenticate", ("API token",), (WRONG,)
        ),
        secrets=(saas.token,),
    )


def _github(request: pytest.FixtureRequest) -> Case:
    saas: SaasServer = request.getfixturevalue("catalog_saas")
    good = {"token": saas.token, "repository": GITHUB_REPO, "base_url": saas.url("/github"), "ca_cert": saas.ca_pem}
    return Case(
        "github",
        good=good,
        steps=_DIRECT,
        inline_bad=Failing(good | {"repository": "acme/no-such-repo"}, "not_found", "access", ("acme/no-such-repo",)),
        stored_bad=Failing({"token": WRONG}, "authentication_failed", "authenticate", ("Bad credentials",), (WRONG,)),
        secrets=(saas.token,),
    )


def _slack(request: pytest.FixtureRequest) -> Case:
    saas: SaasServer = request.getfixturevalue("catalog_saas")
    good = {
        "token": saas.token,
        "channel_id": SLACK_CHANNEL,
        "base_url": saas.url("/slack/api"),
        "ca_cert": saas.ca_pem,
    }
    return Case(
        "slack",
        good=good,
        steps=_DIRECT,
        inline_bad=Failing(
            good | {"channel_id": SLACK_NOT_MEMBER_CHANNEL},
            "authorization_failed",
            "access",
            ("not a member", "random"),
        ),
        stored_bad=Failing({"token": WRONG}, "authentication_failed", "authenticate", ("invalid_auth",), (WRONG,)),
        secrets=(saas.token,),
    )


def _google_drive(request: pytest.FixtureRequest) -> Case:
    saas: SaasServer = request.getfixturevalue("catalog_saas")
    good = {
        "credentials": {
            "type": "oauth",
            "client_id": saas.client_id,
            "client_secret": saas.client_secret,
            "refresh_token": saas.refresh_token,
            "token_url": saas.url("/google-oauth/token"),
        },
        "folder_id": DRIVE_FOLDER_ID,
        "base_url": saas.url("/google"),
        "ca_cert": saas.ca_pem,
    }
    missing = "1NoSuchFolderNoSuchFolder0000000"
    return Case(
        "google_drive",
        good=good,
        steps=("resolve", "tcp", "tls", "token", "authenticate", "access"),  # OAuth: the token step is planned
        inline_bad=Failing(good | {"folder_id": missing}, "not_found", "access", (missing, DRIVE_EMAIL)),
        stored_bad=Failing(
            {"credentials": {"refresh_token": saas.revoked_refresh_token}},
            "authentication_failed",
            "token",
            ("refresh token", "expired or revoked"),
            (saas.revoked_refresh_token,),
        ),
        secrets=(saas.client_secret, saas.refresh_token),
    )


def _sharepoint(request: pytest.FixtureRequest) -> Case:
    saas: SaasServer = request.getfixturevalue("catalog_saas")
    good = {
        "credentials": {
            "type": "client_credentials",
            "tenant": TENANT,
            "client_id": saas.client_id,
            "client_secret": saas.client_secret,
            "token_url": saas.url(f"/login/{TENANT}/oauth2/v2.0/token"),
        },
        "site": SHAREPOINT_SITE,
        "base_url": saas.url("/graph"),
        "ca_cert": saas.ca_pem,
    }
    missing = "contoso.sharepoint.com:/sites/NoSuchSite"
    return Case(
        "sharepoint",
        good=good,
        steps=("resolve", "tcp", "tls", "token", "authenticate", "access"),  # client credentials: token is planned
        inline_bad=Failing(good | {"site": missing}, "not_found", "access", (missing,)),
        stored_bad=Failing(
            {"credentials": {"client_secret": WRONG}},
            "authentication_failed",
            "token",
            ("client id or secret",),
            (WRONG,),
        ),
        secrets=(saas.client_secret,),
    )


def _through_a_tunnel(name: str) -> Callable[[pytest.FixtureRequest], Case]:
    """The ``name`` database reached through the SSH server as bastion: the tunnel's steps are planned."""

    def build(request: pytest.FixtureRequest) -> Case:
        direct = BUILDERS[name](request)
        ssh: SshServer = request.getfixturevalue("ssh_server")
        tunnel = ssh.tunnel(host_key=ssh.host_key)
        good = direct.good | {"ssh_tunnel": tunnel}
        first, rest = direct.steps[:2], direct.steps[2:]
        return Case(
            name,
            good=good,
            steps=(*first, "ssh", "ssh_auth", "tunnel", *rest),
            # A pinned host key the bastion does not have: stopped before any credential is sent.
            inline_bad=Failing(
                direct.good | {"ssh_tunnel": tunnel | {"host_key": ssh.other_host_key}},
                "unexpected_response",
                "ssh",
                ("host key does not match", "ssh_tunnel.host_key"),
            ),
            stored_bad=Failing(
                {"ssh_tunnel": {"auth": {"password": WRONG}}},
                "authentication_failed",
                "ssh_auth",
                ("bastion", ssh.user),
                (WRONG,),
            ),
            secrets=(*direct.secrets, ssh.password),
        )

    return build


BUILDERS: dict[str, Callable[[pytest.FixtureRequest], Case]] = {
    "postgres": _postgres,
    "mysql": _mysql,
    "http": _http,
    "sftp": _sftp,
    "s3": _s3,
    "website": _website,
    "notion": _notion,
    "confluence": _confluence,
    "github": _github,
    "slack": _slack,
    "google_drive": _google_drive,
    "sharepoint": _sharepoint,
}
BUILDERS["postgres_via_ssh_tunnel"] = _through_a_tunnel("postgres")
BUILDERS["mysql_via_ssh_tunnel"] = _through_a_tunnel("mysql")


@pytest.fixture(params=[*CATALOG, "postgres_via_ssh_tunnel", "mysql_via_ssh_tunnel"])
def case(request: pytest.FixtureRequest) -> Case:
    return BUILDERS[request.param](request)


# --- the catalog -----------------------------------------------------------------------------


def test_the_definitions_list_every_connector_with_its_schema_and_secrets_marked(stack: Stack) -> None:
    with stack.client() as client:
        r = client.get(stack.url("/source-definitions"))
    assert r.status_code == 200, r.text
    definitions = {d["id"]: d for d in r.json()["data"]}
    assert set(CATALOG) <= set(definitions), f"missing: {set(CATALOG) - set(definitions)}"
    registered = all_connectors()
    for name in CATALOG:
        definition = definitions[name]
        spec = definition["connection_specification"]
        assert definition["name"] and definition["category"] in ("database", "files", "web", "saas"), definition
        assert spec["type"] == "object" and spec["properties"] and spec.get("additionalProperties") is False, name
        # Complete: what the API serves is the connector's whole schema.
        assert spec == registered[name].connection_specification(), name
        secret, plain = secret_names(spec)
        assert SECRET_FIELDS[name] <= secret, f"{name}: not marked secret: {SECRET_FIELDS[name] - secret}"
        assert not (secret & NEVER_SECRET), f"{name}: marked secret by mistake: {secret & NEVER_SECRET}"
        assert not (SECRET_FIELDS[name] & plain), f"{name}: a secret field is also unmarked somewhere"
        with stack.client() as client:
            one = client.get(stack.url(f"/source-definitions/{name}"))
        assert one.status_code == 200 and one.json() == definition


# --- every connector, both modes -------------------------------------------------------------


def test_inline_correct_configuration_succeeds(stack: Stack, case: Case) -> None:
    check_inline_success(stack, case)


def test_inline_incorrect_configuration_fails_saying_what_to_fix(stack: Stack, case: Case) -> None:
    check_inline_failure(stack, case)


def test_stored_source_succeeds_and_a_wrong_override_fails_without_being_saved(stack: Stack, case: Case) -> None:
    check_stored(stack, case)
