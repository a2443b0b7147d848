"""Server-supplied text: every parser returns at once on a megabyte of hostile text, and
the secret masker neither mangles messages nor tells where a short secret was."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

import asyncssh
import httpx
import psycopg
import pymysql
import pytest

from connectors.base import CHECK_RESULT, CheckResult, CheckStatus, Failure, Probe, Step, StepStatus, scrub
from connectors.errors import FailureType
from connectors.mysql import MySQLConfig, _Errors
from connectors.oauth import token_error
from connectors.postgres import PostgresConfig, _driver_failure
from connectors.saas import ApiClient, ApiResponse
from connectors.ssh import SshTunnel, _channel_failure, _Where
from connectors.text import (
    MASK,
    MAX_SERVER_TEXT,
    MIN_DISTINCT_SECRET,
    WITHHELD,
    mask_secrets,
    redacted_traceback,
    server_text,
)
from tests.servers.saas import SaasServer, run

T = TypeVar("T")

MEGABYTE = 1_000_000
# Long runs of what the patterns of the parsers quantify, and of what they look for.
HOSTILE = {
    "spaces": " " * MEGABYTE,
    "tabs and newlines": "\t\n" * (MEGABYTE // 2),
    "role then words": "FATAL:  role " + "a " * (MEGABYTE // 2),
    "roles": "role " * (MEGABYTE // 5),
    "databases": "database " * (MEGABYTE // 9),
    "fatal then spaces": "FATAL:" + " " * MEGABYTE,
    "trace words": "Trace ID" * (MEGABYTE // 8),
    "aadsts digits": "AADSTS" + "1" * MEGABYTE + "x",
    "timed": "timed " * (MEGABYTE // 6),
    "letters": "a" * MEGABYTE,
    "controls": "\x01" * MEGABYTE,
}
PROMPT = 1.0  # seconds: generous on a loaded machine; a backtracking pattern takes hours


def in_child(work: Callable[[], T], limit: float = 60.0) -> T:
    """``work()`` run in a forked child killed after ``limit`` s: a pattern that backtracks
    holds the GIL, so it fails the test here instead of hanging it."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=lambda: send.send(work()), daemon=True)
    process.start()
    try:
        if not receive.poll(limit):
            pytest.fail(f"still running after {limit:g} s")
        value: T = receive.recv()
        return value
    finally:
        process.kill()
        process.join()


def timed(parse: Callable[[str], str]) -> Callable[[], dict[str, tuple[float, int]]]:
    """Run ``parse`` on every hostile text: seconds taken and length of the message, by text."""

    def work() -> dict[str, tuple[float, int]]:
        seen = {}
        for name, text in HOSTILE.items():
            started = time.perf_counter()
            message = parse(text)
            seen[name] = (time.perf_counter() - started, len(message))
        return seen

    return work


def _api() -> ApiClient:
    return ApiClient(
        provider="Example",
        base_url="https://example.com",
        probe=Probe((), time.monotonic() + 5),
        http=httpx.AsyncClient(),
    )


def _oauth(text: str) -> str:
    return token_error(_api(), "Example", {"error": "invalid_grant", "error_description": text}, 400, what="it").message


def _oauth_code(text: str) -> str:
    return token_error(_api(), "Example", {"error": text}, 400, what="it").message


def _saas_reason(text: str) -> str:
    response = ApiResponse(400, httpx.Headers(), {"message": text}, text, httpx.URL("https://example.com/x"))
    return _api().answered(response)


def _postgres(text: str) -> str:
    config = PostgresConfig.model_validate(
        {"host": "db.example.com", "database": "app", "user": "reader", "password": "pw"}
    )
    return _driver_failure(psycopg.OperationalError(text), config).message


def _mysql(text: str) -> str:
    config = MySQLConfig.model_validate(
        {"host": "db.example.com", "database": "app", "user": "reader", "password": "pw"}
    )
    return _Errors(config, "db.example.com:3306").failure(pymysql.err.OperationalError(1045, text)).message


def _ssh_channel(text: str) -> str:
    tunnel = SshTunnel.model_validate(
        {"host": "bastion.example.com", "user": "jump", "auth": {"type": "password", "password": "pw"}}
    )
    error = asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, text)
    return _channel_failure(error, "db", 5432, _Where(tunnel, "bastion", "ssh_tunnel.")).message


def _masked(text: str) -> str:
    return mask_secrets(text, ["a", "x", "role", "long-secret-value"])


PARSERS: dict[str, Callable[[str], str]] = {
    "oauth error_description": _oauth,
    "oauth error code": _oauth_code,
    "saas provider message": _saas_reason,
    "postgres driver message": _postgres,
    "mysql server message": _mysql,
    "ssh channel refusal": _ssh_channel,
    "secret masking": _masked,
}


@pytest.mark.parametrize("parser", PARSERS)
def test_each_parser_returns_promptly_on_a_megabyte_of_hostile_text(parser: str) -> None:
    seen = in_child(timed(PARSERS[parser]))
    slow = {name: round(seconds, 2) for name, (seconds, _) in seen.items() if seconds >= PROMPT}
    assert not slow, f"{parser} took seconds on {slow}"
    if parser != "secret masking":  # it keeps what it is given; the others cut it
        long = {name: length for name, (_, length) in seen.items() if length > MAX_SERVER_TEXT + 1000}
        assert not long, f"{parser} made messages this long: {long}"


def test_server_text_cuts_strings_and_bytes_to_the_bound() -> None:
    assert server_text("x" * (MAX_SERVER_TEXT + 10)) == "x" * MAX_SERVER_TEXT
    assert server_text(("é" * MAX_SERVER_TEXT * 2).encode()) == "é" * MAX_SERVER_TEXT
    assert server_text(None) == "" and server_text("short", 3) == "sho"


def test_the_oauth_trace_lines_are_still_cut_from_a_description() -> None:
    description = "AADSTS700082: The refresh token has expired.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 3"
    assert _oauth(description) == "Example refused it: AADSTS700082: The refresh token has expired."


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('FATAL:  role "ghost" does not exist', FailureType.AUTHENTICATION_FAILED),
        ('FATAL:  database "nope" does not exist', FailureType.NOT_FOUND),
        ('FATAL:  password authentication failed for user "reader"', FailureType.AUTHENTICATION_FAILED),
        ("FATAL:  role\nx does not exist", FailureType.UNEXPECTED_RESPONSE),  # not on one line
    ],
)
def test_postgres_login_failures_are_still_recognised_by_their_text(text: str, kind: FailureType) -> None:
    config = PostgresConfig.model_validate({"host": "db.example.com", "database": "app", "user": "u", "password": "pw"})
    assert _driver_failure(psycopg.OperationalError(text), config).type == kind


# --- the attack, end to end -------------------------------------------------------------


def _attack(server: SaasServer) -> tuple[dict[str, Any], float, dict[str, Any], float]:
    async def timed_check(config: dict[str, Any]) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        result = await run("google_drive", config, timeout=10)
        return asdict(result), time.perf_counter() - started

    base = {
        "folder_id": "1AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        "base_url": server.url("/google"),
        "ca_cert": server.ca_pem,
    }
    hostile = {
        **base,
        "credentials": {
            "type": "oauth",
            "client_id": server.client_id,
            "client_secret": server.client_secret,
            "refresh_token": server.refresh_token,
            "token_url": server.url("/hostile-oauth/token"),
        },
    }
    healthy = {**base, "credentials": {"type": "token", "access_token": server.token}}

    async def both() -> tuple[dict[str, Any], float, dict[str, Any], float]:
        (bad, bad_s), (good, good_s) = await asyncio.gather(timed_check(hostile), timed_check(healthy))
        return bad, bad_s, good, good_s

    return asyncio.run(both())


def test_a_megabyte_error_description_fails_promptly_while_another_check_succeeds(saas_server: SaasServer) -> None:
    bad, bad_s, good, good_s = in_child(lambda: _attack(saas_server))
    bad_result, good_result = CHECK_RESULT.validate_python(bad), CHECK_RESULT.validate_python(good)
    assert bad_result.status == CheckStatus.FAILED and bad_result.failure is not None
    assert bad_result.failure.type == FailureType.AUTHENTICATION_FAILED
    assert bad_result.failure.message.startswith("Google refused the refresh token: Token has been revoked")
    assert len(bad_result.failure.message) < 1000
    assert bad_s < 5
    assert good_result.status == CheckStatus.SUCCEEDED, good_result.failure
    assert good_s < 5


# --- the secret masker --------------------------------------------------------------------


def _scrubbed(message: str, *secrets: str) -> str:
    result = CheckResult(
        status=CheckStatus.FAILED,
        steps=[Step("one", StepStatus.FAILED, message=message)],
        failure=Failure(FailureType.DNS_RESOLUTION_FAILED, message, "hint", False),
    )
    scrub(result, list(secrets))
    assert result.failure is not None and result.failure.message == result.steps[0].message
    return result.failure.message


def test_a_one_character_password_does_not_mangle_a_host_name_nor_tell_where_it_is() -> None:
    message = "Could not resolve host 'nonexistent.invalid' (Name or service not known)"
    scrubbed = _scrubbed(message, "x")
    assert scrubbed == WITHHELD
    assert MASK not in scrubbed and "x" not in scrubbed.replace("configuration", "")


def test_a_short_password_absent_from_the_message_leaves_it_as_it_is() -> None:
    message = "Could not resolve host 'db.invalid' (Name or service not known)"
    assert _scrubbed(message, "q") == message


@pytest.mark.parametrize(
    ("echoed", "expected"),
    [
        ("password 'hu2' rejected", f"password '{MASK}' rejected"),
        ('password "hu2" rejected', f'password "{MASK}" rejected'),
        ("connect failed: user=reader password=hu2 host=db", f"connect failed: user=reader password={MASK} host=db"),
        ("bad option password: hu2", f"bad option password: {MASK}"),
        ("postgresql://reader:hu2@db:5432/app", f"postgresql://reader:{MASK}@db:5432/app"),
        ("postgresql://reader:p%40s@db/app", f"postgresql://reader:{MASK}@db/app"),  # percent-encoded p@s
        ("the secret hu2, again: hu2.", f"the secret {MASK}, again: {MASK}."),
    ],
)
def test_a_short_secret_echoed_as_a_token_is_masked(echoed: str, expected: str) -> None:
    secret = "p@s" if "%40" in echoed else "hu2"
    assert _scrubbed(echoed, secret) == expected


def test_a_short_secret_also_inside_another_word_withholds_the_whole_message() -> None:
    assert _scrubbed("password 'hu2' rejected for user hu2bert", "hu2") == WITHHELD


def test_a_long_secret_is_masked_anywhere_even_inside_other_text() -> None:
    secret = "s3cr3t-value"
    assert len(secret) >= MIN_DISTINCT_SECRET
    assert _scrubbed(f"token=abc{secret}def and '{secret}'", secret) == f"token=abc{MASK}def and '{MASK}'"


def test_a_secret_that_is_part_of_the_mask_does_not_break_it() -> None:
    assert _scrubbed("password '*' rejected", "*") == f"password '{MASK}' rejected"


def test_a_redacted_traceback_masks_each_message_of_the_chain_and_withholds_one_it_cannot_mask() -> None:
    secret = "".join(["h", "u", "2"])  # not in this file's source lines, which the traceback quotes

    def fail() -> None:
        try:
            raise ValueError(f"token={secret} refused")
        except ValueError as exc:
            raise ExceptionGroup("probe", [RuntimeError(f"user {secret}bert unknown")]) from exc

    with pytest.raises(ExceptionGroup) as caught:
        fail()
    text = redacted_traceback(caught.value, [secret])

    assert f"ValueError: token={MASK} refused" in text
    assert "direct cause" in text and "in fail" in text
    assert f"RuntimeError: {WITHHELD}" in text  # inside the group, and inside another word: withheld
    assert secret not in text
