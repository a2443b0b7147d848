"""The ftp connector against real pyftpdlib servers (tests/servers/ftp.py): explicit and implicit
FTPS, plain FTP, a server advertising a wrong PASV address, one behind a NAT that forwards the
control port only, and hostile servers of its own that answer without end."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from connectors import get_connector, run_check
from connectors.base import FIRST_BYTES, CheckResult, StepStatus
from connectors.errors import FailureType, WarningCode
from tests.helpers import failed_at
from tests.servers.ftp import MASQUERADE, FtpServer

STEPS = ["resolve", "tcp", "tls", "authenticate", "access"]


def _check(config: dict[str, Any], timeout: float = 10) -> CheckResult:
    ftp = get_connector("ftp")
    return asyncio.run(run_check(ftp, ftp.parse_config(config), timeout=timeout))


def _succeeded(result: CheckResult) -> dict[str, str | None]:
    assert result.status == "succeeded", result
    assert [s.name for s in result.steps] == STEPS
    return {s.name: s.message for s in result.steps}


def _failed(result: CheckResult, type: FailureType, step: str, fields: set[str]) -> str:
    assert [s.name for s in result.steps] == STEPS
    return failed_at(result, type, step, fields)


def _codes(result: CheckResult) -> list[WarningCode]:
    return [w.code for w in result.warnings]


def test_explicit_ftps_logs_in_lists_the_folder_and_reads_its_first_file(ftp_server: FtpServer) -> None:
    messages = _succeeded(_check(ftp_server.config()))
    assert "AUTH TLS: TLS 1." in str(messages["tls"]) and "not verified" not in str(messages["tls"])
    assert "PROT P" in str(messages["authenticate"])
    assert "(3 entries; read 14 bytes of 'a.csv')" in str(messages["access"])


def test_a_certificate_ending_within_14_days_is_a_warning_after_auth_tls(ftp_server: FtpServer) -> None:
    result = _check(ftp_server.config(port=ftp_server.expiring_port))
    _succeeded(result)
    assert _codes(result) == [WarningCode.CERTIFICATE_EXPIRING]
    assert "renew" in result.warnings[0].hint


def test_implicit_ftps_speaks_tls_from_the_first_byte(ftp_server: FtpServer) -> None:
    result = _check(ftp_server.config(tls="implicit", port=ftp_server.implicit_port))
    assert "read 14 bytes of 'a.csv'" in str(_succeeded(result)["access"])
    assert not result.warnings


def test_plain_ftp_with_a_password_succeeds_with_a_weak_authentication_warning(ftp_server: FtpServer) -> None:
    result = _check(ftp_server.config(tls="none"))
    messages = _succeeded(result)
    assert result.steps[2].status == StepStatus.SKIPPED and messages["tls"]
    assert _codes(result) == [WarningCode.WEAK_AUTHENTICATION]
    assert "clear text" in result.warnings[0].message and "explicit" in result.warnings[0].hint


def test_an_anonymous_login_needs_no_password_and_is_not_weak(ftp_server: FtpServer) -> None:
    config = ftp_server.config(tls="none", username="anonymous", password=None, folder="")
    result = _check(config)
    assert "the login folder is readable (3 entries" in str(_succeeded(result)["access"]).lower()
    assert not result.warnings


def test_an_untrusted_certificate_fails_the_tls_step(ftp_server: FtpServer) -> None:
    result = _check(ftp_server.config(ca_cert=None))
    message = _failed(result, FailureType.TLS_ERROR, "tls", {"ca_cert", "verify_tls"})
    assert "unknown authority" in message or "self-signed" in message


def test_a_wrong_password_fails_naming_username_and_password(ftp_server: FtpServer) -> None:
    result = _check(ftp_server.config(password="Wrong-Secret-7d41c9"))
    message = _failed(result, FailureType.AUTHENTICATION_FAILED, "authenticate", {"username", "password"})
    assert "530" in message and ftp_server.user in message
    assert "Wrong-Secret-7d41c9" not in repr(result)


def test_a_missing_folder_is_not_found_naming_folder(ftp_server: FtpServer) -> None:
    message = _failed(_check(ftp_server.config(folder="/nope")), FailureType.NOT_FOUND, "access", {"folder"})
    assert "'/nope'" in message and "550" in message


def test_a_folder_that_may_not_be_listed_fails_with_authorization_failed(ftp_server: FtpServer) -> None:
    message = _failed(
        _check(ftp_server.config(folder="/nolist")), FailureType.AUTHORIZATION_FAILED, "access", {"folder"}
    )
    assert "MLSD: 550" in message


def test_files_that_cannot_be_downloaded_fail_the_first_byte_read(ftp_server: FtpServer) -> None:
    result = _check(ftp_server.config(folder="/noread"))
    message = _failed(result, FailureType.AUTHORIZATION_FAILED, "access", {"username", "folder"})
    assert "RETR 'r.csv': 550" in message and "may list" in message


def test_an_empty_folder_succeeds_with_an_empty_location_warning(ftp_server: FtpServer) -> None:
    result = _check(ftp_server.config(folder="/empty"))
    assert "no files" in str(_succeeded(result)["access"])
    assert _codes(result) == [WarningCode.EMPTY_LOCATION]


def test_a_large_file_is_read_for_its_first_bytes_only_and_the_session_stays_usable(ftp_server: FtpServer) -> None:
    result = _check(ftp_server.config(folder="/big"), timeout=5)
    assert f"read {FIRST_BYTES} bytes of 'big.bin'" in str(_succeeded(result)["access"])


def test_a_listing_longer_than_the_bound_is_cut_and_the_session_stays_in_step(ftp_server: FtpServer) -> None:
    access = str(_succeeded(_check(ftp_server.config(folder="/crowded"), timeout=5))["access"])
    assert "(1000+ entries; read 2 bytes of 'file-0" in access


def test_over_ipv6_the_data_channel_is_opened_by_epsv(ftp_server: FtpServer) -> None:
    result = _check(ftp_server.config(host="::1", port=ftp_server.ipv6_port, tls="none"))
    assert "read 14 bytes of 'a.csv'" in str(_succeeded(result)["access"])


def test_a_wrong_pasv_address_is_ignored_and_said(ftp_server: FtpServer) -> None:
    result = _check(ftp_server.config(tls="none", port=ftp_server.masquerading_port))
    access = str(_succeeded(result)["access"])
    assert f"advertised {MASQUERADE}" in access and "ignored" in access


def test_a_data_channel_behind_nat_fails_clearly_with_a_passive_mode_hint(ftp_server: FtpServer) -> None:
    result = _check(ftp_server.config(tls="none", port=ftp_server.nat_port))
    message = _failed(result, FailureType.CONNECTION_REFUSED, "access", {"host"})
    assert "passive data channel" in message and "advertised 127.0.0.2" in message
    assert result.failure is not None and not result.failure.retryable
    assert "passive port range" in result.failure.hint and "NAT" in result.failure.hint
    assert result.steps[3].status == StepStatus.SUCCEEDED  # the login worked: only the data channel did not


# --- hostile servers ------------------------------------------------------------------------------


@pytest.fixture
def hostile() -> Iterator[tuple[list[bytes], int]]:
    """A server that sends ``payload[0]`` to every connection (then holds it open)."""
    payload: list[bytes] = [b""]
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            try:
                conn.sendall(payload[0])
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield payload, int(listener.getsockname()[1])
    finally:
        listener.close()
        for conn in held:
            conn.close()


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        (b"220-welcome\r\n" + b"220-more\r\n" * 5000, "more than 100 lines"),
        (b"220 " + b"x" * 200_000, "line too long"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "did not answer like an FTP server"),
    ],
)
def test_a_hostile_greeting_is_bounded(hostile: tuple[list[bytes], int], payload: bytes, said: str) -> None:
    holder, port = hostile
    holder[0] = payload
    result = _check({"host": "127.0.0.1", "port": port, "tls": "none", "folder": "/"}, timeout=5)
    assert result.status == "failed" and result.failure is not None
    assert result.failure.type == FailureType.UNEXPECTED_RESPONSE and said in result.failure.message, result.failure
    assert result.duration_ms < 2000
