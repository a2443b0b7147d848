"""The postgres connector against a real throwaway cluster (fixture postgres_server) and
against tiny fake servers for what a healthy cluster cannot show (silence, bad certificates)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.base import CheckResult, CheckStatus, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, WarningCode
from connectors.profile import Profile
from connectors.registry import get_connector
from tests import helpers
from tests.helpers import step
from tests.servers import free_port
from tests.servers.pgwire import CleartextPostgres
from tests.servers.postgres import PostgresServer


async def check(data: dict[str, Any], timeout: float = 10.0, profile: Profile | None = None) -> CheckResult:
    return await helpers.check("postgres", data, timeout, profile=profile)


def failure_type(result: CheckResult) -> FailureType:
    return helpers.failure(result).type


STEPS = ["resolve", "tcp", "tls", "authenticate", "access"]


# --- against the real cluster -------------------------------------------------------


async def test_valid_credentials_succeed_with_every_step_in_order(postgres_server: PostgresServer) -> None:
    result = await check(postgres_server.config())

    assert result.status == CheckStatus.SUCCEEDED, result
    assert result.failure is None
    assert [s.name for s in result.steps] == STEPS
    assert all(s.status == StepStatus.SUCCEEDED for s in result.steps)
    assert "does not offer TLS" in step(result, "tls").message  # prefer, and the cluster has no TLS
    assert "PostgreSQL 1" in step(result, "authenticate").message


async def test_ssl_mode_disable_skips_the_tls_step(postgres_server: PostgresServer) -> None:
    result = await check(postgres_server.config(ssl_mode="disable"))

    assert result.status == CheckStatus.SUCCEEDED, result
    assert [s.name for s in result.steps] == STEPS
    assert [s.status for s in result.steps] == [StepStatus.SUCCEEDED] * 2 + [StepStatus.SKIPPED] + [
        StepStatus.SUCCEEDED
    ] * 2
    assert "disable" in step(result, "tls").message


async def test_wrong_password_fails_with_authentication_failed(postgres_server: PostgresServer) -> None:
    wrong = "not-the-pw-" + postgres_server.password
    result = await check(postgres_server.config(password=wrong))

    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None
    assert result.failure.message == 'password authentication failed for user "reader"'
    assert "Check the password for user 'reader'" in result.failure.hint
    assert result.failure.retryable is False
    assert result.failure.fields == ["user", "password"]  # what a form points at
    assert step(result, "authenticate").status == StepStatus.FAILED
    assert step(result, "access").status == StepStatus.SKIPPED
    everything = repr(asdict(result))
    assert wrong not in everything and postgres_server.password not in everything


async def test_unknown_database_fails_with_not_found(postgres_server: PostgresServer) -> None:
    result = await check(postgres_server.config(database="no_such_db"))

    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert result.failure.message == 'database "no_such_db" does not exist'
    assert result.failure.fields == ["database"]


async def test_user_without_connect_privilege_fails_with_authorization_failed(postgres_server: PostgresServer) -> None:
    result = await check(
        postgres_server.config(user=postgres_server.outsider, password=postgres_server.outsider_password)
    )

    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert 'permission denied for database "app"' in result.failure.message
    assert "GRANT CONNECT ON DATABASE app TO outsider" in result.failure.hint


async def test_schema_without_usage_fails_with_authorization_failed(postgres_server: PostgresServer) -> None:
    result = await check(postgres_server.config(schema_name=postgres_server.locked_schema))

    assert failure_type(result) == FailureType.AUTHORIZATION_FAILED
    assert result.failure is not None
    assert result.failure.message == 'user "reader" has no USAGE privilege on schema "locked"'
    assert "GRANT USAGE ON SCHEMA locked TO reader" in result.failure.hint
    assert step(result, "authenticate").status == StepStatus.SUCCEEDED
    assert step(result, "access").status == StepStatus.FAILED


async def test_missing_schema_fails_with_not_found(postgres_server: PostgresServer) -> None:
    result = await check(postgres_server.config(schema_name="nowhere"))

    assert failure_type(result) == FailureType.NOT_FOUND
    assert result.failure is not None
    assert 'schema "nowhere" does not exist' in result.failure.message


async def test_ssl_mode_require_against_a_server_without_ssl_fails_with_tls_error(
    postgres_server: PostgresServer,
) -> None:
    result = await check(postgres_server.config(ssl_mode="require"))

    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None
    assert "does not support SSL" in result.failure.message
    assert step(result, "tls").status == StepStatus.FAILED
    assert step(result, "authenticate").status == StepStatus.SKIPPED


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_verify_full_with_the_servers_ca_succeeds_over_tls(
    postgres_tls_server: PostgresServer, host: str
) -> None:
    result = await check(
        postgres_tls_server.config(host=host, ssl_mode="verify-full", ssl_root_cert=postgres_tls_server.ca_cert)
    )

    assert result.status == CheckStatus.SUCCEEDED, result
    assert "issuer and host name verified" in step(result, "tls").message
    assert "(PostgreSQL" in step(result, "authenticate").message
    assert "no TLS" not in step(result, "authenticate").message  # the login itself went over TLS


async def test_verify_full_without_the_servers_ca_fails_with_tls_error(postgres_tls_server: PostgresServer) -> None:
    result = await check(postgres_tls_server.config(ssl_mode="verify-full"))

    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None
    assert "is not trusted" in result.failure.message
    assert step(result, "authenticate").status == StepStatus.SKIPPED  # the password was never sent


async def test_ssl_mode_require_logs_in_over_tls_without_verifying(postgres_tls_server: PostgresServer) -> None:
    result = await check(postgres_tls_server.config(ssl_mode="require"))

    assert result.status == CheckStatus.SUCCEEDED, result
    assert "certificate not verified" in step(result, "tls").message
    assert "no TLS" not in step(result, "authenticate").message


# --- network failures ---------------------------------------------------------------------


async def test_closed_port_fails_with_connection_refused() -> None:
    result = await check(
        {"host": "127.0.0.1", "port": free_port(), "database": "app", "user": "reader", "password": "pw"}
    )

    assert failure_type(result) == FailureType.CONNECTION_REFUSED
    assert result.failure is not None
    assert "Connection refused" in result.failure.message
    assert step(result, "tcp").status == StepStatus.FAILED


async def test_unresolvable_host_fails_with_dns_resolution_failed() -> None:
    result = await check({"host": "nonexistent.invalid", "database": "app", "user": "reader", "password": "pw"})

    assert failure_type(result) == FailureType.DNS_RESOLUTION_FAILED
    # Every later planned step is reported skipped; without ssh_tunnel, no SSH step is planned.
    assert [s.name for s in result.steps] == STEPS
    assert [s.status for s in result.steps] == [StepStatus.FAILED] + [StepStatus.SKIPPED] * 4


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never sends a byte (held until the test ends)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize(("ssl_mode", "stuck_in"), [("prefer", "tls"), ("disable", "authenticate")])
async def test_server_that_accepts_and_never_answers_fails_with_timeout_at_the_deadline(
    silent_server: int, ssl_mode: str, stuck_in: str
) -> None:
    started = time.monotonic()
    result = await check(
        {
            "host": "127.0.0.1",
            "port": silent_server,
            "database": "app",
            "user": "reader",
            "password": "pw",
            "ssl_mode": ssl_mode,
        },
        timeout=1.5,
    )
    elapsed = time.monotonic() - started

    assert failure_type(result) == FailureType.TIMEOUT
    assert step(result, "tcp").status == StepStatus.SUCCEEDED
    assert step(result, stuck_in).status == StepStatus.FAILED
    assert 1.4 < elapsed < 3.0


# --- certificates, with a fake server that speaks only the SSLRequest and TLS ------------


@dataclass(frozen=True)
class Certs:
    ca_pem: str
    ca: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey


def _cert(
    subject: str, issuer: Certs | None, *, days: tuple[int, int] = (-1, 30), san: str = "localhost"
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.ca.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(issuer.ca_key if issuer else key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def ca() -> Certs:
    cert, key = _cert("sourcecheck test CA", None)
    return Certs(cert.public_bytes(serialization.Encoding.PEM).decode(), cert, key)


@pytest.fixture
async def tls_server(tmp_path: Any) -> AsyncIterator[Any]:
    """Start a fake PostgreSQL server presenting (cert, key): answers 'S', does TLS, then hangs up."""
    servers: list[asyncio.Server] = []

    async def start(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> int:
        cert_file, key_file = tmp_path / "server.crt", tmp_path / "server.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                request = await reader.readexactly(8)
                if request == struct.pack("!ii", 8, 80877103):
                    writer.write(b"S")
                    await writer.drain()
                    await writer.start_tls(context)
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()


async def test_prefer_holds_the_login_to_the_tls_the_tls_step_found(ca: Certs, tmp_path: Any) -> None:
    # The server offers TLS to the tls step, then refuses it to the login and asks for the
    # password in cleartext: a downgrade in between. The login keeps to TLS instead.
    cert, key = _cert("localhost", ca)
    (tmp_path / "s.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "s.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    with CleartextPostgres(tls_once=context) as server:
        result = await check({"host": "localhost", "port": server.address.port, **ANYONE, "ssl_mode": "prefer"}, 5)

        assert "established" in step(result, "tls").message
        assert failure_type(result) == FailureType.TLS_ERROR
        assert result.failure is not None and "SSL" in result.failure.message
        assert server.startups == 0
        assert server.passwords == []


def tls_config(port: int, ssl_mode: str, root: str | None = None) -> dict[str, Any]:
    return {
        "host": "localhost",
        "port": port,
        "database": "app",
        "user": "reader",
        "password": "pw",
        "ssl_mode": ssl_mode,
        "ssl_root_cert": root,
    }


async def test_self_signed_certificate_fails_verification_with_tls_error(tls_server: Any) -> None:
    port = await tls_server(*_cert("localhost", None))
    result = await check(tls_config(port, "verify-full"))

    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None
    assert result.failure.message == "The server's certificate is not trusted (self-signed)"
    assert "ssl_root_cert" in result.failure.hint
    assert step(result, "tls").status == StepStatus.FAILED


async def test_expired_certificate_fails_with_tls_error(tls_server: Any, ca: Certs) -> None:
    port = await tls_server(*_cert("localhost", ca, days=(-30, -1)))
    result = await check(tls_config(port, "verify-ca", ca.ca_pem))

    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None
    assert result.failure.message == "The server's certificate has expired"


async def test_certificate_for_another_host_fails_verify_full_with_tls_error(tls_server: Any, ca: Certs) -> None:
    port = await tls_server(*_cert("db.example.com", ca, san="db.example.com"))
    result = await check(tls_config(port, "verify-full", ca.ca_pem))

    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None
    assert result.failure.message == "The server's certificate is not valid for host 'localhost'"


async def test_certificate_for_another_host_passes_verify_ca(tls_server: Any, ca: Certs) -> None:
    port = await tls_server(*_cert("db.example.com", ca, san="db.example.com"))
    result = await check(tls_config(port, "verify-ca", ca.ca_pem))

    assert step(result, "tls").status == StepStatus.SUCCEEDED
    assert "issuer verified" in step(result, "tls").message
    assert step(result, "authenticate").status == StepStatus.FAILED  # the fake server hangs up after TLS
    assert result.failure is not None
    assert not result.failure.message.startswith("connection")  # libpq's "connection to server at ..." is cut


async def test_ssl_mode_require_does_not_verify_the_certificate(tls_server: Any) -> None:
    port = await tls_server(*_cert("localhost", None))
    result = await check(tls_config(port, "require"))

    assert step(result, "tls").status == StepStatus.SUCCEEDED
    assert "not verified" in step(result, "tls").message


# --- no silent downgrade: TLS by default in production, never a cleartext password without TLS ---

ANYONE = {"database": "app", "user": "reader", "password": "a-long-password"}


@pytest.fixture
def cleartext_server() -> Iterator[CleartextPostgres]:
    with CleartextPostgres() as server:
        yield server


async def test_production_refuses_a_server_without_tls_by_default_and_never_logs_in(
    cleartext_server: CleartextPostgres,
) -> None:
    config = {"host": "127.0.0.1", "port": cleartext_server.address.port, **ANYONE}
    result = await check(config, 5, profile="production")

    assert failure_type(result) == FailureType.TLS_ERROR
    assert result.failure is not None
    assert "require it in production" in result.failure.message
    assert result.failure.hint is not None and "ssl_mode to 'prefer' or 'disable'" in result.failure.hint
    assert step(result, "authenticate").status == StepStatus.SKIPPED
    assert cleartext_server.startups == 0  # no login was even tried
    assert cleartext_server.passwords == []


async def test_a_cleartext_password_request_without_tls_is_never_answered(
    cleartext_server: CleartextPostgres, postgres_server: PostgresServer
) -> None:
    # The user opted out of TLS on purpose; the server (or whoever answers there) asks for the
    # password as it is. Another tenant's healthy check runs meanwhile.
    config = {"host": "127.0.0.1", "port": cleartext_server.address.port, **ANYONE, "ssl_mode": "disable"}
    started = time.monotonic()
    attacked, healthy = await asyncio.gather(
        check(config, 5, profile="production"),
        check(postgres_server.config(ssl_mode="prefer"), 10, profile="production"),
    )

    assert healthy.status == CheckStatus.SUCCEEDED, healthy
    assert time.monotonic() - started < 8
    assert failure_type(attacked) == FailureType.AUTHENTICATION_FAILED
    assert attacked.failure is not None
    assert "asked for the password in cleartext over a connection without TLS" in attacked.failure.message
    assert attacked.failure.fields == ["ssl_mode", "user"]
    assert step(attacked, "tls").status == StepStatus.SKIPPED
    assert cleartext_server.startups == 1
    assert cleartext_server.passwords == []


async def test_development_prefers_tls_and_still_refuses_a_cleartext_password_without_it(
    cleartext_server: CleartextPostgres,
) -> None:
    config = {"host": "127.0.0.1", "port": cleartext_server.address.port, **ANYONE}
    result = await check(config, 5, profile="development")

    assert "does not offer TLS" in step(result, "tls").message  # prefer: goes on without TLS
    assert failure_type(result) == FailureType.AUTHENTICATION_FAILED
    assert result.failure is not None and "in cleartext" in result.failure.message
    assert cleartext_server.startups == 1
    assert cleartext_server.passwords == []


async def test_production_default_logs_in_over_tls(postgres_tls_server: PostgresServer) -> None:
    result = await check(postgres_tls_server.config(), profile="production")  # no ssl_mode: require

    assert result.status == CheckStatus.SUCCEEDED, result
    assert "established" in step(result, "tls").message
    assert "(PostgreSQL 1" in step(result, "authenticate").message and ", TLS)" in step(result, "authenticate").message


@pytest.mark.parametrize("ssl_mode", ["prefer", "disable"])
async def test_an_explicit_opt_out_still_logs_in_without_tls_in_production(
    postgres_server: PostgresServer, ssl_mode: str
) -> None:
    result = await check(postgres_server.config(ssl_mode=ssl_mode), profile="production")

    assert result.status == CheckStatus.SUCCEEDED, result  # scram-sha-256: no cleartext password
    assert "no TLS" in step(result, "authenticate").message


def test_the_bundled_libpq_knows_require_auth() -> None:
    # require_auth (the cleartext refusal) came with libpq 16.
    assert psycopg.pq.version() >= 160000


# --- configuration -------------------------------------------------------------------------


def test_schema_marks_the_password_secret() -> None:
    schema = get_connector("postgres").connection_specification()

    password = schema["properties"]["password"]
    assert password["secret"] is True
    assert password["format"] == "password"
    assert set(schema["required"]) == {"host", "database", "user", "password"}
    assert schema["properties"]["schema_name"]["title"] == "Schema"
    assert schema["properties"]["ssl_mode"]["default"] is None  # the profile decides


@pytest.mark.parametrize(
    "host", ["db host", "reader@db", "db/app", "db?sslmode=disable", "", "db\n", "a,b", "db:5432", "postgres://db"]
)
def test_config_rejects_a_host_that_is_not_a_bare_name(host: str) -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        get_connector("postgres").parse_config({"host": host, "database": "app", "user": "reader", "password": "pw"})

    assert [e.field for e in caught.value.errors] == ["host"]


@pytest.mark.parametrize("host", ["db.example.com", "10.0.0.1", "::1", "fe80::1%eth0", "localhost"])
def test_config_accepts_host_names_and_ip_addresses(host: str) -> None:
    config = get_connector("postgres").parse_config(
        {"host": host, "database": "app", "user": "reader", "password": "pw"}
    )

    assert config.host == host  # type: ignore[attr-defined]


def test_config_rejects_a_root_certificate_that_is_not_pem() -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        get_connector("postgres").parse_config(
            {"host": "db", "database": "app", "user": "reader", "password": "pw", "ssl_root_cert": "not a cert"}
        )

    assert [e.field for e in caught.value.errors] == ["ssl_root_cert"]


async def test_a_verified_certificate_that_expires_within_two_weeks_is_warned_about(tls_server: Any, ca: Certs) -> None:
    port = await tls_server(*_cert("localhost", ca, days=(-30, 3)))
    result = await check(tls_config(port, "verify-full", ca.ca_pem))

    assert step(result, "tls").status == StepStatus.SUCCEEDED  # the fake server then hangs up: the login fails
    [warning] = result.warnings
    assert warning.code == WarningCode.CERTIFICATE_EXPIRING
    assert "localhost" in warning.message and "in 2 days" in warning.message
    assert "ssl_cert_file" in warning.hint


async def test_a_certificate_valid_for_a_month_is_not_warned_about(postgres_tls_server: PostgresServer) -> None:
    result = await check(
        postgres_tls_server.config(host="localhost", ssl_mode="verify-full", ssl_root_cert=postgres_tls_server.ca_cert)
    )
    assert result.status == CheckStatus.SUCCEEDED, result
    assert result.warnings == []


async def test_an_unverified_certificate_is_not_warned_about(tls_server: Any, ca: Certs) -> None:
    port = await tls_server(*_cert("localhost", ca, days=(-30, 3)))
    result = await check(tls_config(port, "require"))
    assert step(result, "tls").status == StepStatus.SUCCEEDED
    assert result.warnings == []


async def test_a_password_login_without_tls_is_warned_about_as_weak(postgres_server: PostgresServer) -> None:
    result = await check(postgres_server.config(ssl_mode="disable"))
    assert result.status == CheckStatus.SUCCEEDED, result
    [warning] = [w for w in result.warnings if w.code == WarningCode.WEAK_AUTHENTICATION]
    assert "without TLS" in warning.message and "ssl_mode" in warning.hint


async def test_a_password_login_over_tls_is_not_warned_about(postgres_tls_server: PostgresServer) -> None:
    result = await check(postgres_tls_server.config(ssl_mode="require"))
    assert result.status == CheckStatus.SUCCEEDED, result
    assert [w for w in result.warnings if w.code == WarningCode.WEAK_AUTHENTICATION] == []


async def test_network_and_tls_failures_name_their_fields(
    postgres_server: PostgresServer, postgres_tls_server: PostgresServer, closed_port: int
) -> None:
    unresolvable = await check(postgres_server.config(host="db.invalid"), 3)
    assert unresolvable.failure is not None and unresolvable.failure.fields == ["host"]
    refused = await check(postgres_server.config(port=closed_port), 3)
    assert refused.failure is not None and refused.failure.fields == ["host", "port"]
    untrusted = await check(postgres_tls_server.config(ssl_mode="verify-full"))
    assert untrusted.failure is not None and untrusted.failure.fields == ["ssl_root_cert", "ssl_mode"]
    no_tls = await check(postgres_server.config(ssl_mode="require"))
    assert no_tls.failure is not None and no_tls.failure.fields == ["ssl_mode"]
