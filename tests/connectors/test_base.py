"""Unit tests of the connector core: secrets, run_check, scrub, the network steps, the registry."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import asdict
from importlib.metadata import EntryPoint
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from connectors import registry
from connectors.base import (
    CHECK_RESULT,
    MASK,
    CheckResult,
    CheckStatus,
    CheckWarning,
    Connector,
    ConnectorConfig,
    Failure,
    Probe,
    Secret,
    Step,
    StepStatus,
    run_check,
    scrub,
)
from connectors.errors import (
    DEFAULT_HINTS,
    RETRYABLE,
    FailureType,
    InvalidConfiguration,
    ProbeFailure,
    UnknownConnector,
    WarningCode,
)
from connectors.network import Address, connect_tcp, resolve
from tests.servers.tcp import HostPort

PASSWORD = "hunter2-pw"

# --- a connector whose check is a function the test chooses ---------------------------


class Nested(BaseModel):
    token: Secret


class FakeConfig(ConnectorConfig):
    user: str = "reader"
    password: Secret
    nested: list[Nested] = []


class FakeConnector(Connector):
    name = "fake"
    title = "Fake"
    config_model = FakeConfig
    steps: ClassVar[tuple[str, ...]] = ("one", "two", "three")
    behaviour: ClassVar[Any] = None

    async def check(self, config: Any, probe: Probe) -> None:
        await type(self).behaviour(config, probe)


async def run(behaviour: Any, timeout: float = 5.0) -> CheckResult:
    FakeConnector.behaviour = behaviour
    return await run_check(FakeConnector(), FakeConfig(password=SecretStr(PASSWORD)), timeout=timeout)


# --- secrets in configurations --------------------------------------------------------


def test_a_secret_is_masked_in_a_json_dump() -> None:
    config = FakeConfig.model_validate({"password": "hunter2", "nested": [{"token": "tok-1"}]})
    assert config.model_dump(mode="json") == {"user": "reader", "password": MASK, "nested": [{"token": MASK}]}
    assert config.masked() == config.model_dump(mode="json")


def test_a_secret_is_revealed_only_when_asked_in_the_context() -> None:
    config = FakeConfig.model_validate({"password": "hunter2", "nested": [{"token": "tok-1"}]})
    assert config.model_dump(mode="json", context={"reveal_secrets": True})["password"] == "hunter2"
    assert config.revealed()["nested"] == [{"token": "tok-1"}]


def test_a_revealed_dump_validates_back_to_the_same_config() -> None:
    config = FakeConfig.model_validate({"password": "hunter2"})
    assert FakeConfig.model_validate(config.revealed()).password.get_secret_value() == "hunter2"


def test_the_mask_is_refused_as_a_secret_value() -> None:
    with pytest.raises(ValidationError, match="masked placeholder"):
        FakeConfig.model_validate({"password": MASK})


def test_secret_values_finds_nested_secrets_and_skips_empty_ones() -> None:
    config = FakeConfig.model_validate({"password": "", "nested": [{"token": "tok-1"}, {"token": "tok-2"}]})
    assert config.secret_values() == ["tok-1", "tok-2"]


def test_the_schema_marks_a_secret_field_as_a_password() -> None:
    spec = FakeConfig.model_json_schema()["properties"]["password"]
    assert spec["secret"] is True and spec["format"] == "password" and spec["writeOnly"] is True
    assert "secret" not in FakeConfig.model_json_schema()["properties"]["user"]


def test_parse_config_names_every_bad_field_but_never_its_value() -> None:
    with pytest.raises(InvalidConfiguration) as info:
        FakeConnector().parse_config({"user": ["not-a-string-VALUE"], "unknown": "extra-VALUE"})
    fields = {e.field for e in info.value.errors}
    assert fields == {"user", "password", "unknown"}
    assert "VALUE" not in str(info.value)


# --- run_check ------------------------------------------------------------------------


async def test_a_check_that_runs_every_step_succeeds_with_no_skipped_step() -> None:
    async def behaviour(config: Any, probe: Probe) -> None:
        for name in ("one", "two", "three"):
            async with probe.step(name, success_message=f"{name} done"):
                pass

    result = await run(behaviour)
    assert result.status == CheckStatus.SUCCEEDED and result.failure is None
    assert [(s.name, s.status, s.message) for s in result.steps] == [
        ("one", StepStatus.SUCCEEDED, "one done"),
        ("two", StepStatus.SUCCEEDED, "two done"),
        ("three", StepStatus.SUCCEEDED, "three done"),
    ]


async def test_a_probe_failure_fails_its_step_and_skips_the_rest() -> None:
    async def behaviour(config: Any, probe: Probe) -> None:
        async with probe.step("one"):
            pass
        async with probe.step("two"):
            raise ProbeFailure(FailureType.NOT_FOUND, "no such table")

    result = await run(behaviour)
    assert result.status == CheckStatus.FAILED
    assert result.failure == Failure(
        FailureType.NOT_FOUND, "no such table", DEFAULT_HINTS[FailureType.NOT_FOUND], RETRYABLE[FailureType.NOT_FOUND]
    )
    assert [(s.name, s.status) for s in result.steps] == [
        ("one", StepStatus.SUCCEEDED),
        ("two", StepStatus.FAILED),
        ("three", StepStatus.SKIPPED),
    ]
    assert result.steps[1].message == "no such table"


async def test_a_secret_in_a_failure_message_is_scrubbed() -> None:
    async def behaviour(config: Any, probe: Probe) -> None:
        async with probe.step("one"):
            raise ProbeFailure(
                FailureType.AUTHENTICATION_FAILED,
                f"bad password {config.password.get_secret_value()}",
                hint=f"hint {PASSWORD}",
            )

    result = await run(behaviour)
    assert result.failure is not None
    assert result.failure.message == f"bad password {MASK}"
    assert result.failure.hint == f"hint {MASK}"
    assert result.steps[0].message == f"bad password {MASK}"


async def test_an_unexpected_exception_is_an_internal_error_without_its_text() -> None:
    async def behaviour(config: Any, probe: Probe) -> None:
        async with probe.step("one"):
            raise RuntimeError("driver said: password=SPILLED")

    result = await run(behaviour)
    assert result.failure is not None
    assert result.failure.type == FailureType.INTERNAL_ERROR
    assert result.failure.message == "The check stopped on an unexpected RuntimeError"
    assert "SPILLED" not in str(asdict(result))
    assert (result.steps[0].status, result.steps[0].message) == (StepStatus.FAILED, "internal error")


async def test_an_unexpected_exception_is_logged_with_its_connector_step_and_traceback_but_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def driver_call(password: str) -> None:
        try:
            raise ConnectionError(f"login with {password} refused")
        except ConnectionError:
            raise KeyError(f"no handler for {password}")  # noqa: B904 - the implicit chain is what is tested

    async def behaviour(config: Any, probe: Probe) -> None:
        async with probe.step("one"):
            pass
        async with probe.step("two"):
            driver_call(config.password.get_secret_value())

    with caplog.at_level(logging.ERROR, logger="connectors.base"):
        result = await run(behaviour)

    assert result.failure is not None and result.failure.type == FailureType.INTERNAL_ERROR
    [record] = [r for r in caplog.records if r.name == "connectors.base"]
    logged = record.getMessage()
    assert logged.startswith("connector fake raised KeyError in step two (reported as internal_error)")
    assert "in driver_call" in logged and "in behaviour" in logged  # the frames
    assert "ConnectionError: login with" in logged and "During handling" in logged  # the exception it replaced
    assert PASSWORD not in caplog.text and MASK in logged


async def test_a_deadline_during_tcp_is_connection_timeout() -> None:
    async def behaviour(config: Any, probe: Probe) -> None:
        async with probe.step("tcp"):
            await asyncio.sleep(10)

    result = await run(behaviour, timeout=0.5)
    assert result.failure is not None and result.failure.type == FailureType.CONNECTION_TIMEOUT
    assert result.failure.message == "No answer within 0.5 s during step 'tcp'"
    assert result.duration_ms < 2000


async def test_a_deadline_during_another_step_is_timeout_and_blames_it() -> None:
    async def behaviour(config: Any, probe: Probe) -> None:
        async with probe.step("one"):
            pass
        async with probe.step("two"):
            await asyncio.sleep(10)

    result = await run(behaviour, timeout=0.5)
    assert result.failure is not None and result.failure.type == FailureType.TIMEOUT and result.failure.retryable
    assert [(s.name, s.status) for s in result.steps] == [
        ("one", StepStatus.SUCCEEDED),
        ("two", StepStatus.FAILED),
        ("three", StepStatus.SKIPPED),
    ]
    assert result.steps[1].message == "No answer within 0.5 s during step 'two'"


async def test_a_deadline_during_a_step_names_the_fields_that_step_is_about() -> None:
    async def behaviour(config: Any, probe: Probe) -> None:
        async with probe.step("one", fields=["user"]):
            pass
        async with probe.step("two", fields=["nested.0.host", "nested.0.port"]):
            await asyncio.sleep(10)

    result = await run(behaviour, timeout=0.3)
    assert result.failure is not None and result.failure.type == FailureType.TIMEOUT
    assert result.failure.fields == ["nested.0.host", "nested.0.port"]


async def test_probe_remaining_counts_down_to_the_deadline() -> None:
    seen: list[float] = []

    async def behaviour(config: Any, probe: Probe) -> None:
        seen.append(probe.remaining())

    await run(behaviour, timeout=3)
    assert 2.5 < seen[0] <= 3


def test_scrub_replaces_every_secret_everywhere_longest_first() -> None:
    result = CheckResult(
        status=CheckStatus.FAILED,
        steps=[Step("one", StepStatus.FAILED, message="abcdef and abc")],
        failure=Failure(FailureType.TIMEOUT, "abcdef", "hint abc", True),
    )
    scrub(result, ["abc", "abcdef"])
    assert result.steps[0].message == f"{MASK} and {MASK}"
    assert result.failure is not None
    assert (result.failure.message, result.failure.hint) == (MASK, f"hint {MASK}")


def test_scrub_masks_a_secret_echoed_percent_encoded_in_a_connection_url() -> None:
    secret = "p@ss/w rd%+"
    echoed = "could not connect to postgresql://reader:p%40ss%2Fw%20rd%25%2B@db:5432/app (form: p%40ss%2Fw+rd%25%2B)"
    result = CheckResult(
        status=CheckStatus.FAILED, failure=Failure(FailureType.AUTHENTICATION_FAILED, echoed, "h", False)
    )
    scrub(result, [secret])
    assert result.failure is not None
    assert result.failure.message == f"could not connect to postgresql://reader:{MASK}@db:5432/app (form: {MASK})"


def test_a_result_survives_a_round_trip_through_json() -> None:
    result = CheckResult(
        status=CheckStatus.FAILED,
        steps=[Step("one", StepStatus.FAILED, 1.5, "m"), Step("two", StepStatus.SKIPPED)],
        failure=Failure(FailureType.TLS_ERROR, "m", "h", False, fields=["ca_cert"]),
        duration_ms=2.0,
        warnings=[CheckWarning(WarningCode.TOKEN_EXPIRING, "w", "wh")],
    )
    assert CHECK_RESULT.validate_json(CHECK_RESULT.dump_json(result)) == result
    assert json.loads(CHECK_RESULT.dump_json(result)) == {  # the form stored in Redis
        "status": "failed",
        "steps": [
            {"name": "one", "status": "failed", "duration_ms": 1.5, "message": "m"},
            {"name": "two", "status": "skipped", "duration_ms": 0.0, "message": None},
        ],
        "failure": {
            "type": "tls_error",
            "message": "m",
            "hint": "h",
            "retryable": False,
            "fields": ["ca_cert"],
            "retry_after_s": None,
        },
        "duration_ms": 2.0,
        "warnings": [{"code": "token_expiring", "message": "w", "hint": "wh"}],
    }


def test_every_failure_type_has_a_hint_and_a_retry_rule() -> None:
    assert set(DEFAULT_HINTS) == set(FailureType) == set(RETRYABLE)


# --- network steps --------------------------------------------------------------------


async def test_resolve_lists_ipv4_addresses_first() -> None:
    probe = Probe(("resolve",), deadline=float("inf"))
    addresses = await resolve(probe, "localhost", 80)
    assert addresses[0].ip == "127.0.0.1" and addresses[0].family == socket.AF_INET
    assert probe.steps[0].message is not None and probe.steps[0].message.startswith("localhost resolved to 127.0.0.1")


async def test_resolve_fails_for_an_unknown_host() -> None:
    probe = Probe(("resolve",), deadline=float("inf"))
    with pytest.raises(ProbeFailure) as info:
        await resolve(probe, "nonexistent.invalid", 80)
    assert info.value.type == FailureType.DNS_RESOLUTION_FAILED
    assert probe.steps[0].status == StepStatus.FAILED


async def test_connect_tcp_reports_connection_refused(closed_port: int) -> None:
    probe = Probe(("tcp",), deadline=float("inf"))
    with pytest.raises(ProbeFailure) as info:
        await connect_tcp(probe, [Address("127.0.0.1", "127.0.0.1", closed_port, socket.AF_INET)])
    assert info.value.type == FailureType.CONNECTION_REFUSED
    assert info.value.message == f"Connection refused (127.0.0.1:{closed_port})"


async def test_connect_tcp_moves_on_to_the_next_address(closed_port: int, hung_server: HostPort) -> None:
    probe = Probe(("tcp",), deadline=float("inf"))
    refused = Address("h", "127.0.0.1", closed_port, socket.AF_INET)
    listening = Address("h", hung_server.host, hung_server.port, socket.AF_INET)
    assert await connect_tcp(probe, [refused, listening]) == listening
    assert probe.steps[0].message == f"Connected to 127.0.0.1:{hung_server.port}"


# --- registry -------------------------------------------------------------------------


class NotAConnector:
    pass


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[EntryPoint]]:
    """Replace the installed entry points with the list the test fills in."""
    points: list[EntryPoint] = []
    monkeypatch.setattr(registry, "entry_points", lambda group: [p for p in points if p.group == group])
    registry.all_connectors.cache_clear()
    yield points
    registry.all_connectors.cache_clear()


def point(name: str, target: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"{__name__}:{target}", group=registry.GROUP)


def test_an_unknown_connector_error_names_the_known_ones(fake_entry_points: list[EntryPoint]) -> None:
    fake_entry_points.append(point("fake", "FakeConnector"))
    with pytest.raises(UnknownConnector) as info:
        registry.get_connector("nope")
    assert str(info.value) == "unknown source definition 'nope'; known: fake"
    assert isinstance(registry.get_connector("fake"), FakeConnector)


@pytest.mark.parametrize(
    ("name", "target"),
    [("odd", "NotAConnector"), ("other", "FakeConnector"), ("gone", "NoSuchAttribute")],
    ids=["not-a-connector", "wrong-name", "fails-to-load"],
)
def test_a_broken_entry_point_is_logged_and_left_out(
    fake_entry_points: list[EntryPoint], caplog: pytest.LogCaptureFixture, name: str, target: str
) -> None:
    fake_entry_points += [point("fake", "FakeConnector"), point(name, target)]
    assert list(registry.all_connectors()) == ["fake"]
    assert any(name in record.getMessage() for record in caplog.records if record.levelname == "ERROR")


def test_the_installed_registry_lists_the_http_connector() -> None:
    assert "http" in registry.all_connectors()


class _Warns(Connector):
    name = "warns"
    title = "Warns"
    steps = ("one", "two")

    class config_model(ConnectorConfig):
        token: Secret

    async def check(self, config: Any, probe: Probe) -> None:
        async with probe.step("one"):
            probe.warn(
                WarningCode.TOKEN_EXPIRING,
                f"the token {config.token.get_secret_value()} expires tomorrow",
                hint="renew it",
            )
        async with probe.step("two"):
            raise ProbeFailure(FailureType.RATE_LIMITED, "slow down", fields=("token",), retry_after_s=30.0)


async def test_warnings_fields_and_retry_after_reach_the_result_with_secrets_masked() -> None:
    connector = _Warns()
    result = await run_check(connector, connector.parse_config({"token": "tok-secret-1234"}), timeout=5)
    assert [w.code for w in result.warnings] == [WarningCode.TOKEN_EXPIRING]
    assert "tok-secret-1234" not in result.warnings[0].message and MASK in result.warnings[0].message
    assert result.failure is not None
    assert (result.failure.type, result.failure.fields, result.failure.retry_after_s) == (
        FailureType.RATE_LIMITED,
        ["token"],
        30.0,
    )
    assert result.failure.retryable is True


def test_a_probe_keeps_a_bounded_number_of_warnings() -> None:
    from connectors.base import MAX_WARNINGS

    probe = Probe(("one",), deadline=0)
    for i in range(MAX_WARNINGS * 5):
        probe.warn(WarningCode.EMPTY_LOCATION, f"w{i}", hint="h")
    assert len(probe.warnings) == MAX_WARNINGS
