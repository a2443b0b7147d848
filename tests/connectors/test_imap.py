"""The ``imap`` connector against a real Dovecot (tests/servers/imap.py) and a scripted server."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from connectors.base import CheckResult, CheckStatus, StepStatus
from connectors.errors import FailureType, WarningCode
from tests import helpers
from tests.helpers import failure, messages, step
from tests.servers.http import TestCA, server_context
from tests.servers.imap import XOAUTH2_TOKEN, Dovecot, start_scripted_imap


async def check(data: dict[str, Any], timeout: float = 10.0) -> CheckResult:
    return await helpers.check("imap", data, timeout)


STEPS = ["resolve", "tcp", "tls", "authenticate", "access"]


def codes(result: CheckResult) -> list[WarningCode]:
    return [w.code for w in result.warnings]


def assert_succeeded(result: CheckResult) -> None:
    assert result.status == CheckStatus.SUCCEEDED, result.failure


# --- success ------------------------------------------------------------------------------------


async def test_a_password_login_over_tls_examines_the_folder_and_reads_its_first_message(imap_server: Dovecot) -> None:
    result = await check(imap_server.config())
    assert_succeeded(result)
    assert [s.name for s in result.steps] == STEPS
    assert all(s.status == StepStatus.SUCCEEDED for s in result.steps)
    assert "TLS 1.3" in (step(result, "tls").message or "")
    assert "LOGIN" in (step(result, "authenticate").message or "")
    access = step(result, "access").message or ""
    assert "1 messages" in access and "read 205 bytes" in access, access
    assert result.warnings == []
    assert imap_server.password not in messages(result)


async def test_starttls_and_authenticate_plain_succeed(imap_server: Dovecot) -> None:
    auth = {"type": "password", "password": imap_server.password, "method": "plain"}
    result = await check(imap_server.config(port=imap_server.port, security="starttls", auth=auth))
    assert_succeeded(result)
    assert "AUTHENTICATE PLAIN" in (step(result, "authenticate").message or "")
    assert result.warnings == []


async def test_a_plaintext_login_succeeds_with_a_weak_authentication_warning(imap_server: Dovecot) -> None:
    result = await check(imap_server.config(port=imap_server.port, security="none"))
    assert_succeeded(result)
    assert [s.name for s in result.steps] == ["resolve", "tcp", "authenticate", "access"]
    assert codes(result) == [WarningCode.WEAK_AUTHENTICATION]
    assert "in clear text" in result.warnings[0].message


async def test_an_empty_folder_succeeds_with_an_empty_location_warning(imap_server: Dovecot) -> None:
    result = await check(imap_server.config(folder=imap_server.empty_folder))
    assert_succeeded(result)
    assert codes(result) == [WarningCode.EMPTY_LOCATION]
    assert "no messages" in (step(result, "access").message or "")


async def test_xoauth2_with_a_valid_token_logs_in() -> None:
    with start_scripted_imap("xoauth2") as server:
        result = await check(server.config())
    assert_succeeded(result)
    assert "XOAUTH2" in (step(result, "authenticate").message or "")
    assert "3 messages" in (step(result, "access").message or "")
    assert codes(result) == [WarningCode.WEAK_AUTHENTICATION]  # the scripted server has no TLS


# --- failures -----------------------------------------------------------------------------------


async def test_a_wrong_password_fails_authentication_naming_user_and_password(imap_server: Dovecot) -> None:
    wrong = "Wrong-Password-1f3a"
    result = await check(imap_server.config(auth={"type": "password", "password": wrong}))
    f = failure(result)
    assert f.type == FailureType.AUTHENTICATION_FAILED and step(result, "authenticate").status == StepStatus.FAILED
    assert set(f.fields or []) == {"username", "auth.password"}
    assert wrong not in messages(result)


async def test_a_wrong_xoauth2_token_fails_with_the_scope_the_provider_asked_for() -> None:
    with start_scripted_imap("xoauth2") as server:
        result = await check(server.config(auth={"type": "xoauth2", "access_token": "ya29.expired-token-000"}))
    f = failure(result)
    assert f.type == FailureType.AUTHENTICATION_FAILED
    assert "https://mail.google.com/" in f.message and "401" in f.message
    assert set(f.fields or []) == {"username", "auth.access_token"}
    assert XOAUTH2_TOKEN not in messages(result)


async def test_a_missing_folder_fails_with_not_found_naming_the_folder(imap_server: Dovecot) -> None:
    result = await check(imap_server.config(folder="Archive/Missing"))
    f = failure(result)
    assert (
        f.type == FailureType.NOT_FOUND
        and step(result, "access").status == StepStatus.FAILED
        and f.fields == ["folder"]
    )
    assert "Archive/Missing" in f.message


async def test_a_message_the_server_cannot_read_fails_the_first_byte_read(imap_server: Dovecot) -> None:
    result = await check(imap_server.config(folder=imap_server.locked_folder))
    f = failure(result)
    assert (
        f.type == FailureType.AUTHORIZATION_FAILED
        and step(result, "access").status == StepStatus.FAILED
        and f.fields == ["folder"]
    )
    assert "could not be read" in f.message


async def test_the_first_byte_read_can_be_turned_off(imap_server: Dovecot) -> None:
    result = await check(imap_server.config(folder=imap_server.locked_folder, read_first_message=False))
    assert_succeeded(result)


async def test_a_server_with_logindisabled_fails_clearly_before_sending_the_password() -> None:
    with start_scripted_imap("logindisabled") as server:
        result = await check(server.config(auth={"type": "password", "password": "pw-never-sent-42"}))
    f = failure(result)
    assert f.type == FailureType.AUTHENTICATION_FAILED and "LOGINDISABLED" in f.message
    assert "security" in (f.fields or [])


async def test_an_unavailable_server_is_provider_unavailable_and_retryable() -> None:
    with start_scripted_imap("unavailable") as server:
        result = await check(server.config(auth={"type": "password", "password": "pw-unavailable-42"}))
    f = failure(result)
    assert f.type == FailureType.PROVIDER_UNAVAILABLE and f.retryable


async def test_an_untrusted_certificate_fails_tls_naming_the_tls_fields(imap_server: Dovecot) -> None:
    result = await check(imap_server.config(ca_cert=None))
    f = failure(result)
    assert f.type == FailureType.TLS_ERROR and step(result, "tls").status == StepStatus.FAILED
    assert "ca_cert" in (f.fields or [])
    assert step(result, "authenticate").status == StepStatus.SKIPPED


async def test_tls_on_the_plain_port_fails_with_tls_error(imap_server: Dovecot) -> None:
    result = await check(imap_server.config(port=imap_server.port))
    assert failure(result).type == FailureType.TLS_ERROR


async def test_a_certificate_expiring_within_14_days_is_a_warning(test_ca: TestCA) -> None:
    now = dt.datetime.now(dt.UTC)
    cert = test_ca.issue(not_before=now - dt.timedelta(days=80), not_after=now + dt.timedelta(days=5))
    with start_scripted_imap("xoauth2", tls=server_context(*cert)) as server:
        result = await check(server.config(security="tls", ca_cert=test_ca.pem))
    assert_succeeded(result)
    assert codes(result) == [WarningCode.CERTIFICATE_EXPIRING]


# --- hostile servers: bounded --------------------------------------------------------------------


async def test_a_huge_greeting_line_is_refused_not_read() -> None:
    with start_scripted_imap("long_line") as server:
        result = await check(server.config())
    f = failure(result)
    assert f.type == FailureType.UNEXPECTED_RESPONSE and "line longer than" in f.message


async def test_an_endless_flood_of_untagged_lines_is_cut_off() -> None:
    with start_scripted_imap("flood") as server:
        started = time.monotonic()
        result = await check(server.config())
    f = failure(result)
    assert f.type == FailureType.UNEXPECTED_RESPONSE and "KiB in one check" in f.message
    assert time.monotonic() - started < 5


async def test_a_huge_literal_is_refused_before_it_is_read() -> None:
    with start_scripted_imap("big_literal") as server:
        result = await check(server.config())
    f = failure(result)
    assert f.type == FailureType.AUTHORIZATION_FAILED or f.type == FailureType.UNEXPECTED_RESPONSE
    assert "999999999" in f.message


async def test_a_silent_server_times_out_by_the_deadline(imap_server: Dovecot) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:
        started = time.monotonic()
        result = await check(imap_server.config(port=silent.getsockname()[1], security="none"), timeout=1.5)
    assert failure(result).type == FailureType.TIMEOUT
    assert time.monotonic() - started < 2.5
