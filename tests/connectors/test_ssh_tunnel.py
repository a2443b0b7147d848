"""``postgres`` and ``mysql`` through an SSH bastion: a real SSH server (tests/servers/ssh.py)
forwarding to the throwaway PostgreSQL and MariaDB; and the mysql check's one TCP connection."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import pytest

from connectors.base import MASK, CheckResult, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.network import Address
from connectors.registry import get_connector
from connectors.ssh import Tunnel
from tests import helpers
from tests.helpers import failure, step
from tests.servers.mariadb import MariaDB
from tests.servers.postgres import PostgresServer
from tests.servers.ssh import SshServer
from tests.servers.tcp import HostPort

POSTGRES_STEPS = ["resolve", "tcp", "ssh", "ssh_auth", "tunnel", "tls", "authenticate", "access"]
MYSQL_STEPS = ["resolve", "tcp", "ssh", "ssh_auth", "tunnel", "authenticate", "access"]


async def check(name: str, data: dict[str, Any], timeout: float = 10.0) -> CheckResult:
    return await helpers.check(name, data, timeout)


def key_body(pem: str) -> str:
    return pem.strip().splitlines()[1]


def assert_no_secret(result: CheckResult, *secrets: str) -> None:
    text = json.dumps(asdict(result), default=str) + repr(result)
    for secret in secrets:
        assert secret not in text


def ssh_secrets(server: SshServer) -> tuple[str, ...]:
    return (server.password, server.passphrase, key_body(server.private_key), key_body(server.encrypted_key))


@pytest.fixture
def databases(postgres_server: PostgresServer, mariadb_server: MariaDB) -> dict[str, Any]:
    return {"postgres": postgres_server, "mysql": mariadb_server}


# --- through the tunnel -----------------------------------------------------------------------


async def test_postgres_through_the_tunnel_with_a_password_succeeds(
    ssh_server: SshServer, postgres_server: PostgresServer
) -> None:
    forwards = len(ssh_server.forwards)
    result = await check("postgres", postgres_server.config(ssh_tunnel=ssh_server.tunnel()))

    assert result.status == CheckStatus.SUCCEEDED, result
    assert [s.name for s in result.steps] == POSTGRES_STEPS
    assert all(s.status == StepStatus.SUCCEEDED for s in result.steps)
    bastion = f"{ssh_server.host}:{ssh_server.port}"
    assert step(result, "tcp").message == f"Connected to {bastion}"  # resolve and tcp are the bastion's
    assert ssh_server.host_fingerprint in step(result, "ssh").message and "not pinned" in step(result, "ssh").message
    assert step(result, "ssh_auth").message == f"Logged in to bastion {bastion} as 'tunnel' with a password"
    assert step(result, "tunnel").message == f"The bastion {bastion} reached 127.0.0.1:{postgres_server.port}"
    assert "PostgreSQL 1" in step(result, "authenticate").message
    # The tls step's connection used the tunnel step's channel; libpq's login opened one more.
    assert ssh_server.forwards[forwards:] == [("127.0.0.1", postgres_server.port)] * 2
    assert_no_secret(result, postgres_server.password, *ssh_secrets(ssh_server))


# Another local process connects to the tunnel's listener before the driver does, and tries
# to talk to the database through it (a PostgreSQL SSLRequest: a server answers S or N).
_INTRUDER = """
import socket, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
sock.sendall(bytes.fromhex("0000000804d2162f"))
try:
    print(repr(sock.recv(1)))
except OSError as exc:
    print(type(exc).__name__)
"""


async def test_another_local_process_gets_nothing_from_the_tunnels_listener(
    ssh_server: SshServer, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[str] = []
    listen = Tunnel.listen

    async def listen_then_intrude(tunnel: Tunnel) -> Address:
        address = await listen(tunnel)
        intruder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _INTRUDER, str(address.port), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await intruder.communicate()
        answers.append(out.decode().strip())
        return address

    monkeypatch.setattr(Tunnel, "listen", listen_then_intrude)  # observes: the port, while the check runs
    forwards = len(ssh_server.forwards)
    result = await check("postgres", postgres_server.config(ssh_tunnel=ssh_server.tunnel()), timeout=20)

    # Closed: an end of file, or a reset when the close found its request unread.
    assert answers in (["b''"], ["ConnectionResetError"]), "the intruder must get no byte of the database"
    assert result.status == CheckStatus.SUCCEEDED, result
    assert ssh_server.forwards[forwards:] == [("127.0.0.1", postgres_server.port)] * 2  # the driver's only


async def test_postgres_through_the_tunnel_with_a_key_and_a_pinned_host_key_succeeds(
    ssh_server: SshServer, postgres_server: PostgresServer
) -> None:
    tunnel = ssh_server.tunnel(auth=ssh_server.key_auth(), host_key=ssh_server.host_key)
    result = await check("postgres", postgres_server.config(ssh_tunnel=tunnel, ssl_mode="disable"))

    assert result.status == CheckStatus.SUCCEEDED, result
    assert "matches the pinned ssh_tunnel.host_key" in step(result, "ssh").message
    assert "with the private key ssh-ed25519" in step(result, "ssh_auth").message
    assert step(result, "tls").status == StepStatus.SKIPPED
    assert_no_secret(result, postgres_server.password, *ssh_secrets(ssh_server))


async def test_postgres_verify_full_through_the_tunnel_checks_the_certificate_against_the_host(
    ssh_server: SshServer, postgres_tls_server: PostgresServer
) -> None:
    # "localhost" is resolved by the bastion; the certificate is checked against it, not 127.0.0.1.
    config = postgres_tls_server.config(
        host="localhost",
        ssl_mode="verify-full",
        ssl_root_cert=postgres_tls_server.ca_cert,
        ssh_tunnel=ssh_server.tunnel(),
    )
    result = await check("postgres", config)

    assert result.status == CheckStatus.SUCCEEDED, result
    assert "issuer and host name verified" in step(result, "tls").message
    assert "no TLS" not in step(result, "authenticate").message


async def test_mysql_through_the_tunnel_opens_exactly_one_connection_to_the_database(
    ssh_server: SshServer, mariadb_server: MariaDB
) -> None:
    forwards = len(ssh_server.forwards)
    result = await check("mysql", mariadb_server.config(ssh_tunnel=ssh_server.tunnel()))

    assert result.status == CheckStatus.SUCCEEDED, result
    assert [s.name for s in result.steps] == MYSQL_STEPS
    assert all(s.status == StepStatus.SUCCEEDED for s in result.steps)
    assert f"SELECT works on '{mariadb_server.table}'" in step(result, "access").message
    assert ssh_server.forwards[forwards:] == [("127.0.0.1", mariadb_server.port)]
    assert_no_secret(result, mariadb_server.password, *ssh_secrets(ssh_server))


async def test_mysql_through_the_tunnel_with_an_encrypted_key_and_a_pinned_fingerprint_succeeds(
    ssh_server: SshServer, mariadb_server: MariaDB
) -> None:
    tunnel = ssh_server.tunnel(auth=ssh_server.key_auth(encrypted=True), host_key=ssh_server.host_fingerprint)
    result = await check("mysql", mariadb_server.config(ssh_tunnel=tunnel))

    assert result.status == CheckStatus.SUCCEEDED, result
    assert "matches the pinned ssh_tunnel.host_key" in step(result, "ssh").message
    assert_no_secret(result, mariadb_server.password, *ssh_secrets(ssh_server))


async def test_mysql_verify_identity_through_the_tunnel_logs_in_over_tls(
    ssh_server: SshServer, mariadb_server: MariaDB
) -> None:
    if mariadb_server.ca_pem is None:
        pytest.skip("the MariaDB in use has no TLS (only the throwaway server has)")
    config = mariadb_server.config(
        host="localhost", ssl_mode="verify_identity", ssl_ca=mariadb_server.ca_pem, ssh_tunnel=ssh_server.tunnel()
    )
    result = await check("mysql", config)

    assert result.status == CheckStatus.SUCCEEDED, result
    assert "(TLS 1." in step(result, "authenticate").message


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["postgres", "mysql"])
async def test_a_wrong_bastion_password_fails_authentication_naming_the_bastion(
    name: str, ssh_server: SshServer, databases: dict[str, Any]
) -> None:
    db = databases[name]
    wrong = "wrong-" + ssh_server.password
    result = await check(name, db.config(ssh_tunnel=ssh_server.tunnel(auth=ssh_server.password_auth(wrong))))

    assert failure(result).type == FailureType.AUTHENTICATION_FAILED
    assert failure(result).message == (
        f"SSH authentication failed for user 'tunnel' on bastion {ssh_server.host}:{ssh_server.port}"
    )
    assert step(result, "ssh").status == StepStatus.SUCCEEDED
    assert step(result, "ssh_auth").status == StepStatus.FAILED
    assert all(step(result, n).status == StepStatus.SKIPPED for n in ("tunnel", "authenticate", "access"))
    assert_no_secret(result, wrong, db.password, *ssh_secrets(ssh_server))


@pytest.mark.parametrize("name", ["postgres", "mysql"])
async def test_a_bastion_host_key_that_does_not_match_the_pin_fails_before_logging_in(
    name: str, ssh_server: SshServer, databases: dict[str, Any]
) -> None:
    attempts = len(ssh_server.auth_attempts)
    tunnel = ssh_server.tunnel(host_key=ssh_server.other_host_key)
    result = await check(name, databases[name].config(ssh_tunnel=tunnel))

    assert failure(result).type == FailureType.UNEXPECTED_RESPONSE
    assert failure(result).message.startswith(
        "The SSH server's host key does not match the pinned key (possible man-in-the-middle): "
        f"bastion {ssh_server.host}:{ssh_server.port} presented ssh-ed25519 {ssh_server.host_fingerprint}"
    )
    assert "ssh_tunnel.host_key" in failure(result).hint
    assert step(result, "ssh").status == StepStatus.FAILED
    assert step(result, "ssh_auth").status == StepStatus.SKIPPED
    assert ssh_server.auth_attempts[attempts:] == []  # the bastion never saw the password


@pytest.mark.parametrize("name", ["postgres", "mysql"])
async def test_a_database_the_bastion_cannot_reach_is_connection_refused_naming_the_bastion(
    name: str, ssh_server: SshServer, databases: dict[str, Any], closed_port: int
) -> None:
    result = await check(name, databases[name].config(port=closed_port, ssh_tunnel=ssh_server.tunnel()))

    assert failure(result).type == FailureType.CONNECTION_REFUSED
    assert failure(result).message.startswith(
        f"The bastion {ssh_server.host}:{ssh_server.port} could not reach 127.0.0.1:{closed_port}"
    )
    assert "as seen from the bastion" in failure(result).hint
    assert step(result, "ssh_auth").status == StepStatus.SUCCEEDED
    assert step(result, "tunnel").status == StepStatus.FAILED
    assert step(result, "authenticate").status == StepStatus.SKIPPED


async def test_a_bastion_that_refuses_connections_fails_its_tcp_step(
    postgres_server: PostgresServer, ssh_server: SshServer, closed_port: int
) -> None:
    result = await check("postgres", postgres_server.config(ssh_tunnel=ssh_server.tunnel(port=closed_port)), 3)

    assert failure(result).type == FailureType.CONNECTION_REFUSED
    assert f"127.0.0.1:{closed_port}" in failure(result).message
    assert [s.status.value for s in result.steps] == ["succeeded", "failed"] + ["skipped"] * 6


@pytest.mark.parametrize(("name", "stuck_in"), [("postgres", "tls"), ("mysql", "authenticate")])
async def test_a_database_that_never_answers_through_the_tunnel_times_out_at_the_deadline(
    name: str, stuck_in: str, ssh_server: SshServer, databases: dict[str, Any], hung_server: HostPort
) -> None:
    config = databases[name].config(port=hung_server.port, ssh_tunnel=ssh_server.tunnel())
    started = time.monotonic()
    result = await check(name, config, timeout=1.5)
    elapsed = time.monotonic() - started

    assert failure(result).type == FailureType.TIMEOUT
    assert step(result, "tunnel").status == StepStatus.SUCCEEDED
    assert step(result, stuck_in).status == StepStatus.FAILED
    assert 1.4 < elapsed < 2.5  # the tunnel is torn down within the grace


async def test_a_bastion_that_never_answers_times_out_in_the_ssh_step(
    postgres_server: PostgresServer, ssh_server: SshServer, hung_server: HostPort
) -> None:
    tunnel = ssh_server.tunnel(host=hung_server.host, port=hung_server.port)
    started = time.monotonic()
    result = await check("postgres", postgres_server.config(ssh_tunnel=tunnel), timeout=1.5)

    assert failure(result).type == FailureType.TIMEOUT
    assert failure(result).message == "No answer within 1.5 s during step 'ssh'"
    assert failure(result).fields == ["ssh_tunnel.host", "ssh_tunnel.port"]  # not the database's
    assert time.monotonic() - started < 2.5


# --- one TCP connection per mysql check ---------------------------------------------------------


@pytest.fixture
async def counting_proxy(mariadb_server: MariaDB) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP proxy to the MariaDB that counts the connections it accepts: (its port, the count)."""
    accepted = [0]
    tasks: set[asyncio.Task[Any]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            up_reader, up_writer = await asyncio.open_connection(mariadb_server.host, mariadb_server.port)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except asyncio.CancelledError:
            return  # at teardown; Python 3.11's server would log a cancelled handler as an error

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1]), accepted
    server.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("right_password", [True, False])
async def test_a_mysql_check_makes_exactly_one_tcp_connection_to_the_server(
    mariadb_server: MariaDB, counting_proxy: tuple[int, list[int]], right_password: bool
) -> None:
    # MariaDB counts a connection that closes before logging in as a connect error of the
    # client's host, and blocks the host after max_connect_errors: no probe connection first.
    port, accepted = counting_proxy
    password = mariadb_server.password if right_password else "wrong-" + mariadb_server.password
    result = await check("mysql", mariadb_server.config(host="127.0.0.1", port=port, password=password))

    assert result.status == (CheckStatus.SUCCEEDED if right_password else CheckStatus.FAILED), result
    assert step(result, "tcp").status == StepStatus.SUCCEEDED
    assert accepted == [1]


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["postgres", "mysql"])
def test_every_tunnel_field_has_a_title_a_description_and_examples(name: str) -> None:
    schema = get_connector(name).connection_specification()
    tunnel = schema["properties"]["ssh_tunnel"]
    assert tunnel["default"] is None and tunnel["title"] and tunnel["description"] and tunnel["examples"]
    fields = list(schema["$defs"]["SshTunnel"]["properties"].items())
    for model in ("SshPassword", "SshPrivateKey"):
        fields += list(schema["$defs"][model]["properties"].items())
    missing = [
        (field, key) for field, prop in fields for key in ("title", "description", "examples") if key not in prop
    ]
    assert not missing
    assert "recommended" in schema["$defs"]["SshTunnel"]["properties"]["host_key"]["description"]
    assert set(schema["$defs"]["SshTunnel"]["required"]) == {"host", "user", "auth"}


def test_the_tunnels_secrets_are_masked_and_round_trip(ssh_server: SshServer, postgres_server: PostgresServer) -> None:
    connector = get_connector("postgres")
    tunnel = ssh_server.tunnel(auth=ssh_server.key_auth(encrypted=True))
    config = connector.parse_config(postgres_server.config(ssh_tunnel=tunnel))

    masked = config.masked()
    assert masked["ssh_tunnel"]["auth"] == {"type": "private_key", "private_key": MASK, "passphrase": MASK}
    shown = json.dumps(masked) + repr(config) + str(config)
    assert ssh_server.passphrase not in shown and key_body(ssh_server.encrypted_key) not in shown
    assert set(config.secret_values()) >= {ssh_server.passphrase, ssh_server.encrypted_key}
    assert connector.parse_config(config.revealed()) == config


@pytest.mark.parametrize(
    ("tunnel", "field"),
    [
        (
            {"host": "bastion", "user": "u", "auth": {"type": "password", "password": "p"}, "host_key": "nope"},
            "ssh_tunnel.host_key",
        ),
        ({"host": "u@bastion", "user": "u", "auth": {"type": "password", "password": "p"}}, "ssh_tunnel.host"),
        (
            {"host": "bastion", "user": "u", "auth": {"type": "password", "password": "p"}, "extra": 1},
            "ssh_tunnel.extra",
        ),
        ({"host": "bastion", "user": "u"}, "ssh_tunnel.auth"),
    ],
)
def test_the_config_names_the_bad_tunnel_field(tunnel: dict[str, Any], field: str) -> None:
    base = {"host": "db", "database": "app", "user": "reader", "password": "pw"}
    for name in ("postgres", "mysql"):
        with pytest.raises(InvalidConfiguration) as caught:
            get_connector(name).parse_config({**base, "ssh_tunnel": tunnel})
        assert [e.field for e in caught.value.errors] == [field]


# --- warnings and fields ------------------------------------------------------------------------


async def test_an_unpinned_bastion_key_is_warned_about_with_the_fingerprint_to_pin(
    ssh_server: SshServer, postgres_server: PostgresServer
) -> None:
    result = await check("postgres", postgres_server.config(ssh_tunnel=ssh_server.tunnel(), ssl_mode="disable"))

    assert result.status == CheckStatus.SUCCEEDED, result
    [warning] = [w for w in result.warnings if w.code == WarningCode.UNPINNED_HOST_KEY]
    assert f"ssh-ed25519 {ssh_server.host_fingerprint}" in warning.message
    assert f"bastion {ssh_server.host}:{ssh_server.port}" in warning.message
    assert f"Set ssh_tunnel.host_key to {ssh_server.host_fingerprint}" in warning.hint
    # What the hint says to pin is what host_key accepts, and it then matches.
    pinned = ssh_server.tunnel(host_key=ssh_server.host_fingerprint)
    again = await check("postgres", postgres_server.config(ssh_tunnel=pinned, ssl_mode="disable"))
    assert again.status == CheckStatus.SUCCEEDED, again
    assert [w for w in again.warnings if w.code == WarningCode.UNPINNED_HOST_KEY] == []


@pytest.mark.parametrize("name", ["postgres", "mysql"])
async def test_tunnel_failures_name_the_fields_to_fix(
    name: str, ssh_server: SshServer, databases: dict[str, Any], closed_port: int
) -> None:
    db = databases[name]
    wrong = ssh_server.tunnel(auth=ssh_server.password_auth("wrong-" + ssh_server.password))
    assert failure(await check(name, db.config(ssh_tunnel=wrong))).fields == [
        "ssh_tunnel.user",
        "ssh_tunnel.auth.password",
    ]
    mismatch = ssh_server.tunnel(host_key=ssh_server.other_host_key)
    assert failure(await check(name, db.config(ssh_tunnel=mismatch))).fields == ["ssh_tunnel.host_key"]
    bastion_closed = ssh_server.tunnel(port=closed_port)
    assert failure(await check(name, db.config(ssh_tunnel=bastion_closed), 3)).fields == [
        "ssh_tunnel.host",
        "ssh_tunnel.port",
    ]
    unreachable_db = await check(name, db.config(port=closed_port, ssh_tunnel=ssh_server.tunnel()))
    assert failure(unreachable_db).fields == ["host", "port"]
    unresolvable = ssh_server.tunnel(host="bastion.invalid")
    assert failure(await check(name, db.config(ssh_tunnel=unresolvable), 3)).fields == ["ssh_tunnel.host"]


async def test_an_sftp_login_without_a_pinned_key_is_warned_about_too(ssh_server: SshServer) -> None:
    result = await check("sftp", ssh_server.sftp_config())  # sftp logs in through the same ssh_login
    assert result.status == CheckStatus.SUCCEEDED, result
    [warning] = [w for w in result.warnings if w.code == WarningCode.UNPINNED_HOST_KEY]
    assert ssh_server.host_fingerprint in warning.message
    assert "Set host_key to" in warning.hint
    pinned = await check("sftp", ssh_server.sftp_config(host_key=ssh_server.host_key))
    assert [w for w in pinned.warnings if w.code == WarningCode.UNPINNED_HOST_KEY] == []
