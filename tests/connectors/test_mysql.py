"""The ``mysql`` connector against a real MariaDB (tests/servers/mariadb.py) and a few
fake servers made here: one that never greets, one that is not MySQL, one without TLS."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

import pymysql
import pytest
from pymysql.constants import CLIENT

from connectors.base import Probe, run_check
from connectors.errors import InvalidConfiguration, ProbeFailure
from connectors.mysql import MYSQL_THREADS, _parse_greeting
from connectors.profile import Profile
from connectors.registry import get_connector
from tests.servers import free_port
from tests.servers.mariadb import MariaDB

MYSQL = get_connector("mysql")
STEPS = ["resolve", "tcp", "authenticate", "access"]
ANYONE = {"database": "app", "user": "someone", "password": "a-long-password"}  # long: run_check masks it in messages


async def check(data: dict[str, Any], timeout: float = 10.0, profile: Profile | None = None) -> dict[str, Any]:
    return asdict(await run_check(MYSQL, MYSQL.parse_config(data), timeout=timeout, profile=profile))


def step(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in result["steps"] if s["name"] == name)


@pytest.fixture
def fake_server() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """Starts a loopback server that runs ``handle(connection)`` in a thread per client; gives its port."""
    listeners: list[socket.socket] = []
    held: list[socket.socket] = []

    def start(handle: Callable[[socket.socket], None]) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return  # closed at teardown
                held.append(conn)
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    for s in listeners + held:
        s.close()


def greeting(capabilities: int, plugin: bytes = b"mysql_native_password") -> bytes:
    """A MySQL protocol 10 handshake packet offering ``capabilities`` and ``plugin`` (native passwords)."""
    payload = (
        b"\x0a5.5.5-10.11.0-FakeDB\x00"
        + struct.pack("<I", 7)
        + b"abcdefgh\x00"
        + struct.pack("<HBHHB", capabilities & 0xFFFF, 45, 2, capabilities >> 16, 21)
        + b"\x00" * 10
        + b"ijklmnopqrst\x00"
        + plugin
        + b"\x00"
    )
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


async def test_a_reader_with_the_right_password_passes_every_step_in_order(mariadb_server: MariaDB) -> None:
    result = await check(mariadb_server.config())
    assert result["status"] == "succeeded", result
    assert [s["name"] for s in result["steps"]] == STEPS
    assert all(s["status"] == "succeeded" for s in result["steps"])
    assert f"Logged in as '{mariadb_server.user}'" in step(result, "authenticate")["message"]
    assert f"SELECT works on '{mariadb_server.table}'" in step(result, "access")["message"]


async def test_a_wrong_password_fails_authentication_naming_the_user_but_never_the_password(
    mariadb_server: MariaDB,
) -> None:
    wrong = "Wr0ng-" + mariadb_server.password
    result = await check(mariadb_server.config(password=wrong))
    assert result["status"] == "failed"
    failure = result["failure"]
    assert failure["type"] == "authentication_failed"
    assert f"Access denied for user '{mariadb_server.user}'" in failure["message"]
    assert f"Check the password for user '{mariadb_server.user}'" in failure["hint"]
    assert failure["retryable"] is False
    assert wrong not in str(result) and mariadb_server.password not in str(result)
    # ssh, ssh_auth and tunnel (declared, for a tunnel) are not planned without one: not shown at all.
    assert [s["name"] for s in result["steps"]] == ["resolve", "tcp", "authenticate", "access"]
    assert [s["status"] for s in result["steps"]] == ["succeeded", "succeeded", "failed", "skipped"]

    # The connector itself keeps the password out, not only run_check's scrubbing.
    probe = Probe(MYSQL.steps, deadline=time.monotonic() + 10)
    with pytest.raises(ProbeFailure) as caught:
        await MYSQL.check(MYSQL.parse_config(mariadb_server.config(password=wrong)), probe)
    assert wrong not in caught.value.message and wrong not in caught.value.hint


async def test_a_password_with_non_ascii_characters_logs_in(mariadb_server: MariaDB) -> None:
    # PyMySQL would send a str as latin-1; servers hash the UTF-8 bytes.
    user, password = "sc_unicode_reader", "pässwörd-€-" + mariadb_server.password
    admin = mariadb_server.admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
            cur.execute(f"GRANT SELECT ON `{mariadb_server.database}`.* TO '{user}'@'%'")
        result = await check(mariadb_server.config(user=user, password=password))
        assert result["status"] == "succeeded", result["failure"]
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()


async def test_an_unknown_database_is_not_found_and_the_hint_lists_the_visible_ones(mariadb_server: MariaDB) -> None:
    # The admin may see every database, so the server admits this one does not exist (1049).
    config = mariadb_server.config(
        user=mariadb_server.admin_user, password=mariadb_server.admin_password, database="no_such_db"
    )
    result = await check(config)
    assert result["failure"]["type"] == "not_found"
    assert "Unknown database 'no_such_db'" in result["failure"]["message"]
    assert mariadb_server.database in result["failure"]["hint"]
    assert step(result, "authenticate")["status"] == "succeeded"
    assert step(result, "access")["status"] == "failed"


async def test_a_database_the_user_has_no_privilege_on_fails_authorization_with_a_grant_hint(
    mariadb_server: MariaDB,
) -> None:
    result = await check(mariadb_server.config(database=mariadb_server.forbidden_database))
    failure = result["failure"]
    assert failure["type"] == "authorization_failed"
    assert mariadb_server.forbidden_database in failure["message"]
    assert f"GRANT SELECT ON {mariadb_server.forbidden_database}.* TO '{mariadb_server.user}'@'%'" in failure["hint"]
    assert step(result, "access")["status"] == "failed"


async def test_an_unknown_database_the_user_may_not_see_says_it_may_be_missing_or_forbidden(
    mariadb_server: MariaDB,
) -> None:
    # MariaDB answers 1044, not 1049, so a limited user cannot probe for database names.
    result = await check(mariadb_server.config(database="no_such_db"))
    assert result["failure"]["type"] == "authorization_failed"
    assert "does not exist" in result["failure"]["hint"]


async def test_a_user_who_may_use_the_database_but_not_read_it_fails_authorization(mariadb_server: MariaDB) -> None:
    user = "sc_insert_only"
    admin = mariadb_server.admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (mariadb_server.password,))
            cur.execute(f"GRANT INSERT ON `{mariadb_server.database}`.* TO '{user}'@'%'")
        result = await check(mariadb_server.config(user=user))
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()
    assert result["failure"]["type"] == "authorization_failed"
    assert "SELECT command denied" in result["failure"]["message"]
    assert f"GRANT SELECT ON {mariadb_server.database}.* TO '{user}'@'%'" in result["failure"]["hint"]


async def test_a_closed_port_is_connection_refused() -> None:
    result = await check({"host": "127.0.0.1", "port": free_port(), **ANYONE})
    assert result["failure"]["type"] == "connection_refused"
    assert "Connection refused" in result["failure"]["message"]
    assert [s["status"] for s in result["steps"]] == ["succeeded", "failed"] + ["skipped"] * 2


async def test_an_unresolvable_host_fails_dns_resolution() -> None:
    result = await check({"host": "nonexistent.invalid", **ANYONE})
    assert result["failure"]["type"] == "dns_resolution_failed"
    assert "nonexistent.invalid" in result["failure"]["message"]


async def test_a_server_that_accepts_but_never_greets_times_out_at_the_deadline(fake_server: Any) -> None:
    port = fake_server(lambda conn: None)  # accepts, holds the socket, says nothing
    started = time.monotonic()
    result = await check({"host": "127.0.0.1", "port": port, **ANYONE}, 1.5)
    assert time.monotonic() - started < 3
    assert result["failure"]["type"] == "timeout"
    assert step(result, "tcp")["status"] == "succeeded"
    assert step(result, "authenticate")["status"] == "failed"


async def test_servers_that_never_greet_hold_no_driver_thread_from_another_check(
    fake_server: Any, mariadb_server: MariaDB
) -> None:
    port = fake_server(lambda conn: None)
    silent = [check({"host": "127.0.0.1", "port": port, **ANYONE}, 4) for _ in range(2 * MYSQL_THREADS)]
    started = time.monotonic()
    healthy, *hung = await asyncio.gather(check(mariadb_server.config(), 10), *silent)
    assert healthy["status"] == "succeeded", healthy["failure"]
    assert healthy["duration_ms"] < 3000  # it did not wait for the silent ones' deadline
    assert {r["failure"]["type"] for r in hung} == {"timeout"}
    assert time.monotonic() - started < 6


async def test_a_server_that_does_not_speak_mysql_is_an_unexpected_response(fake_server: Any) -> None:
    port = fake_server(lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"))
    result = await check({"host": "127.0.0.1", "port": port, **ANYONE}, 5)
    assert result["failure"]["type"] == "unexpected_response"
    assert "does not speak the MySQL protocol" in result["failure"]["message"]


@pytest.fixture
def server_without_tls(fake_server: Any) -> tuple[int, list[bytes]]:
    """A server whose greeting offers no TLS: its port, and what the client sent next (b"" for nothing)."""
    received: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        conn.settimeout(3)
        try:
            conn.sendall(greeting(CLIENT.CAPABILITIES | CLIENT.CONNECT_WITH_DB))  # no CLIENT.SSL
            received.append(conn.recv(4096))
        except OSError:  # reset instead of closed
            received.append(b"")

    return fake_server(handle), received


async def recorded(received: list[bytes]) -> list[bytes]:
    """``received`` once a fake server's handler thread has recorded what the client sent."""
    for _ in range(100):
        if received:
            break
        await asyncio.sleep(0.02)  # lets the loop finish closing the client's socket
    return received


async def test_required_tls_against_a_server_without_tls_fails_before_sending_credentials(
    server_without_tls: tuple[int, list[bytes]],
) -> None:
    port, received = server_without_tls
    result = await check({"host": "127.0.0.1", "port": port, **ANYONE, "ssl_mode": "required"}, 5)
    assert result["failure"]["type"] == "tls_error"
    assert "does not offer TLS" in result["failure"]["message"]
    await recorded(received)
    await asyncio.sleep(0.1)  # a second connection, if any, would show up by now
    assert received == [b""]  # one connection (the tcp step's, reused), and no credential sent on it


async def test_production_requires_tls_by_default_and_says_how_to_opt_out(
    server_without_tls: tuple[int, list[bytes]],
) -> None:
    port, received = server_without_tls
    result = await check({"host": "127.0.0.1", "port": port, **ANYONE}, 5, profile="production")  # no ssl_mode

    assert result["failure"]["type"] == "tls_error"
    assert "sources without an ssl_mode require TLS in production" in result["failure"]["message"]
    assert "set ssl_mode to preferred on this source" in result["failure"]["hint"]
    assert await recorded(received) == [b""]  # the handshake response (with the hashed password) was never sent


def packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def read_packet(conn: socket.socket) -> bytes:
    """One MySQL packet's payload; b"" when the client closed."""
    head = b""
    while len(head) < 4:
        chunk = conn.recv(4 - len(head))
        if not chunk:
            return b""
        head += chunk
    size, body = int.from_bytes(head[:3], "little"), b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            return body
        body += chunk
    return body


@pytest.fixture(params=["mysql_clear_password", "dialog"])
def cleartext_switch(fake_server: Any, request: pytest.FixtureRequest) -> tuple[int, list[bytes], str]:
    """A MySQL-speaking server without TLS that answers the login with an auth switch to a
    plugin that sends the password as it is; it records what the client sends after the switch."""
    after_switch: list[bytes] = []
    plugin: str = request.param
    switch = b"\xfe" + plugin.encode() + b"\x00" + (b"\x04Password: " if plugin == "dialog" else b"")

    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            conn.sendall(greeting(CLIENT.CAPABILITIES | CLIENT.CONNECT_WITH_DB))  # no CLIENT.SSL
            read_packet(conn)  # the handshake response: a native password hash
            conn.sendall(packet(2, switch))
            after_switch.append(read_packet(conn))
            conn.sendall(packet(4, b"\xff\x15\x04#28000Access denied"))
        except OSError:
            after_switch.append(b"")

    return fake_server(handle), after_switch, plugin


@pytest.mark.parametrize("profile", ["development", "production"])
async def test_an_auth_switch_to_a_cleartext_password_without_tls_is_never_answered(
    cleartext_switch: tuple[int, list[bytes], str], mariadb_server: MariaDB, profile: Profile
) -> None:
    port, after_switch, plugin = cleartext_switch
    # Opted out of TLS on purpose (development: the default prefers TLS, the server has none).
    mode = {"ssl_mode": "disabled"} if profile == "production" else {}
    started = time.monotonic()
    attacked, healthy = await asyncio.gather(
        check({"host": "127.0.0.1", "port": port, **ANYONE, **mode}, 5, profile=profile),
        check(mariadb_server.config(ssl_mode="preferred"), 10, profile=profile),  # another tenant's
    )

    assert healthy["status"] == "succeeded", healthy["failure"]
    assert time.monotonic() - started < 8
    assert attacked["failure"]["type"] == "authentication_failed"
    assert f"asked for the password in cleartext ({plugin})" in attacked["failure"]["message"]
    assert "without TLS: it was not sent" in attacked["failure"]["message"]
    assert await recorded(after_switch) == [b""]
    assert ANYONE["password"] not in repr(attacked)


async def test_a_greeting_that_asks_for_a_cleartext_password_without_tls_gets_no_handshake_response(
    fake_server: Any,
) -> None:
    received: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        conn.settimeout(3)
        try:
            conn.sendall(greeting(CLIENT.CAPABILITIES | CLIENT.CONNECT_WITH_DB, b"mysql_clear_password"))
            received.append(read_packet(conn))
        except OSError:
            received.append(b"")

    port = fake_server(handle)
    result = await check({"host": "127.0.0.1", "port": port, **ANYONE, "ssl_mode": "disabled"}, 5)

    assert result["failure"]["type"] == "authentication_failed"
    assert "in cleartext" in result["failure"]["message"]
    assert result["failure"]["fields"] == ["ssl_mode", "user"]
    assert await recorded(received) == [b""]


async def test_an_explicit_opt_out_logs_in_without_tls_in_production(mariadb_server: MariaDB) -> None:
    for mode in ("preferred", "disabled"):
        result = await check(mariadb_server.config(ssl_mode=mode), profile="production")
        assert result["status"] == "succeeded", (mode, result["failure"])


async def test_production_default_logs_in_over_tls(mariadb_server: MariaDB) -> None:
    server = tls_server(mariadb_server)
    result = await check(server.config(), profile="production")  # no ssl_mode: required
    assert result["status"] == "succeeded", result["failure"]
    assert "(TLS 1." in step(result, "authenticate")["message"]


def tls_server(mariadb_server: MariaDB) -> MariaDB:
    if mariadb_server.ca_pem is None:
        pytest.skip("the MariaDB in use has no TLS (only the throwaway server has)")
    return mariadb_server


async def test_ssl_mode_required_logs_in_over_tls_and_disabled_does_not(mariadb_server: MariaDB) -> None:
    server = tls_server(mariadb_server)
    required = await check(server.config(ssl_mode="required"))
    assert required["status"] == "succeeded", required["failure"]
    assert "(TLS 1." in step(required, "authenticate")["message"]
    disabled = await check(server.config(ssl_mode="disabled"))
    assert "(no TLS)" in step(disabled, "authenticate")["message"]


async def test_verify_identity_accepts_a_certificate_naming_the_host(mariadb_server: MariaDB) -> None:
    server = tls_server(mariadb_server)
    result = await check(server.config(host="localhost", ssl_mode="verify_identity", ssl_ca=server.ca_pem))
    assert result["status"] == "succeeded", result["failure"]


async def test_verify_identity_rejects_a_certificate_for_another_host_but_verify_ca_accepts_it(
    mariadb_server: MariaDB,
) -> None:
    server = tls_server(mariadb_server)  # its certificate names localhost, not 127.0.0.1
    identity = await check(server.config(ssl_mode="verify_identity", ssl_ca=server.ca_pem))
    assert identity["failure"]["type"] == "tls_error"
    assert "not valid for host 127.0.0.1" in identity["failure"]["message"]
    ca_only = await check(server.config(ssl_mode="verify_ca", ssl_ca=server.ca_pem))
    assert ca_only["status"] == "succeeded", ca_only["failure"]


async def test_verify_ca_rejects_a_certificate_from_an_authority_it_does_not_trust(mariadb_server: MariaDB) -> None:
    server = tls_server(mariadb_server)
    result = await check(server.config(ssl_mode="verify_ca"))  # the system's CAs only
    assert result["failure"]["type"] == "tls_error"
    assert "ssl_ca" in result["failure"]["message"] + result["failure"]["hint"]
    assert step(result, "authenticate")["status"] == "failed"


def test_the_schema_marks_the_password_as_secret() -> None:
    schema = MYSQL.connection_specification()
    assert schema["properties"]["password"]["secret"] is True
    assert set(schema["required"]) == {"host", "database", "user", "password"}
    assert schema["properties"]["port"]["default"] == 3306


@pytest.mark.parametrize("host", ["db host", "reader@db", "db/app", "db?ssl=1", "", "db\n"])
def test_the_config_rejects_a_host_that_is_not_a_bare_name(host: str) -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        MYSQL.parse_config({"host": host, **ANYONE})
    assert [e.field for e in caught.value.errors] == ["host"]


def test_the_config_rejects_a_ca_that_would_be_ignored_or_is_not_pem() -> None:
    base = {"host": "db", **ANYONE}
    with pytest.raises(InvalidConfiguration, match="only used with ssl_mode verify_ca"):
        MYSQL.parse_config({**base, "ssl_ca": _ANY_CA, "ssl_mode": "required"})
    with pytest.raises(InvalidConfiguration, match="PEM certificate"):
        MYSQL.parse_config({**base, "ssl_ca": "hello", "ssl_mode": "verify_ca"})
    assert MYSQL.parse_config({**base, "ssl_ca": _ANY_CA, "ssl_mode": "verify_ca"}).ssl_ca == _ANY_CA  # type: ignore[attr-defined]


# Any well-formed certificate does for the configuration checks (dates are not looked at).
_ANY_CA = """-----BEGIN CERTIFICATE-----
MIIBoTCCAUegAwIBAgIUH8Qpzw0FLkIMJMwnSOZj75CEkpcwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTc291cmNlY2hlY2sgdGVzdCBDQTAeFw0yNjExMjYwNDIwMDNa
Fw0yNjExMjgwNDI1MDNaMB4xHDAaBgNVBAMME3NvdXJjZWNoZWNrIHRlc3QgQ0Ew
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASNDa53r+B84rHWHmla5pDZP19aKsUB
WiTWKwHnNaGrC6ldzaK2AycGlBQM4lXG8oY2YdqS4qtY2fsDOEkgUKWwo2MwYTAP
BgNVHRMBAf8EBTADAQH/MB0GA1UdDgQWBBTaKFtS7Xq1ZdcKlBSoRWkibiPHlTAf
BgNVHSMEGDAWgBTaKFtS7Xq1ZdcKlBSoRWkibiPHlTAOBgNVHQ8BAf8EBAMCAQYw
CgYIKoZIzj0EAwIDSAAwRQIhANZkgSW5fdCdetvuesKkxVsRbMS3Q3dOMam4d82P
UuWLAiAEtnYp/TAH2HjaDcpwa5e84RAvzo6ZMOL+W6Su90ybeQ==
-----END CERTIFICATE-----
"""


@pytest.mark.parametrize("plugin", [b"mysql_native_password", b"caching_sha2_password", b"mysql_clear_password", b""])
@pytest.mark.parametrize("tls", [True, False])
def test_the_greeting_is_read_as_the_driver_reads_it(plugin: bytes, tls: bool) -> None:
    """The connector decides TLS and refuses cleartext from its own reading of the greeting:
    it must see the plugin and the TLS offer the driver then acts on."""
    capabilities = CLIENT.CAPABILITIES | CLIENT.CONNECT_WITH_DB | (CLIENT.SSL if tls else 0)
    packet_ = greeting(capabilities, plugin)
    mine, theirs = socket.socketpair()
    with mine, theirs:
        mine.sendall(packet_)
        driver = pymysql.Connection(user="u", defer_connect=True)
        driver._sock, driver._rfile, driver._next_seq_id = theirs, theirs.makefile("rb"), 0
        driver._read_timeout = driver._current_timeout = None
        driver._get_server_information()  # what connect() reads first
        ours = _parse_greeting(packet_)
        assert ours.plugin == driver._auth_plugin_name
        assert ours.offers_tls == bool(driver.server_capabilities & CLIENT.SSL) == tls
        assert ours.version == driver.server_version
        driver._rfile.close()


async def test_a_verified_certificate_that_expires_within_two_weeks_is_warned_about(mariadb_server: MariaDB) -> None:
    server = tls_server(mariadb_server)  # its certificate ends two days after the server started
    result = await check(server.config(host="localhost", ssl_mode="verify_identity", ssl_ca=server.ca_pem))
    assert result["status"] == "succeeded", result["failure"]
    [warning] = result["warnings"]
    assert warning["code"] == "certificate_expiring"
    assert "localhost" in warning["message"] and "expires on" in warning["message"]
    assert "ssl_cert" in warning["hint"]


async def test_an_unverified_certificate_is_not_warned_about(mariadb_server: MariaDB) -> None:
    result = await check(tls_server(mariadb_server).config(ssl_mode="required"))
    assert result["status"] == "succeeded", result["failure"]
    assert [w for w in result["warnings"] if w["code"] == "certificate_expiring"] == []


async def test_a_password_login_without_tls_is_warned_about_as_weak(mariadb_server: MariaDB) -> None:
    server = tls_server(mariadb_server)
    plain = await check(server.config(ssl_mode="disabled"))
    assert plain["status"] == "succeeded", plain["failure"]
    [warning] = [w for w in plain["warnings"] if w["code"] == "weak_authentication"]
    assert "without TLS" in warning["message"] and "ssl_mode" in warning["hint"]
    assert server.password not in str(plain)
    secured = await check(server.config(ssl_mode="required"))
    assert [w for w in secured["warnings"] if w["code"] == "weak_authentication"] == []


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"password": "wrong"}, ["user", "password"]),
        ({"database": "no_such_db"}, ["user", "database"]),  # 1044: missing or forbidden
    ],
)
async def test_a_server_refusal_names_the_fields_to_fix(
    mariadb_server: MariaDB, overrides: dict[str, str], fields: list[str]
) -> None:
    result = await check(mariadb_server.config(**overrides))
    assert result["failure"]["fields"] == fields


async def test_an_unknown_database_names_the_database(mariadb_server: MariaDB) -> None:
    config = mariadb_server.config(
        user=mariadb_server.admin_user, password=mariadb_server.admin_password, database="no_such_db"
    )
    assert (await check(config))["failure"]["fields"] == ["database"]


async def test_network_and_tls_failures_name_their_fields(mariadb_server: MariaDB, closed_port: int) -> None:
    assert (await check(mariadb_server.config(host="db.invalid")))["failure"]["fields"] == ["host"]
    assert (await check(mariadb_server.config(port=closed_port)))["failure"]["fields"] == ["host", "port"]
    untrusted = await check(tls_server(mariadb_server).config(ssl_mode="verify_ca"))  # the system's CAs only
    assert untrusted["failure"]["fields"] == ["ssl_ca", "ssl_mode"]
