"""The contract every registered connector keeps, checked for each one the registry finds.

The tests are parametrized over ``all_connectors()``, so a connector is covered as soon as
its entry point is declared and its module loads: built-in or third-party, nothing to add
here. Test ids are connector names, so one connector's contract runs with::

    .venv/bin/pytest tests/connectors/test_contract.py -k echo

What is checked, for each connector:

- its configuration's JSON Schema generates and is valid JSON Schema (2020-12), every
  property has a title and a description, every secret field (``SecretStr``) is marked
  ``secret`` / ``writeOnly`` / ``format: password`` and no other field is, and every model
  refuses unknown fields;
- ``example_config(host, port)`` gives a valid configuration (a connector without it FAILS
  here: implement it), which round-trips (masked dump without the secrets, revealed dump
  parses back equal) and never shows a secret in its repr;
- ``planned_steps(config)`` (the steps a check of that configuration runs) is a part of
  the declared ``steps``, in their order, each once;
- pointed at a closed port, the check fails cleanly (a typed failure, not internal_error)
  within its deadline, with every planned step reported once and in order;
- pointed at a server that accepts TCP connections and never answers, it ends in
  ``timeout`` / ``connection_timeout`` within its deadline;
- no secret of the configuration appears in a message, a step, a hint or a repr;
- a failure names only fields its schema has (``fields``; dotted for nested ones), and a
  failure to reach the server names at least one; every warning has a known code, a
  message and a hint;
- one whose API root is configurable (``base_url`` and ``ca_cert``), pointed at a provider
  that answers 503 everywhere, fails ``provider_unavailable``; at one that answers 429 with
  a ``Retry-After`` longer than the deadline, fails ``rate_limited`` with ``retry_after_s``
  at once (it does not wait out what cannot fit);
- it declares where it connects: at least one field marked ``"x-destination": true`` in its
  schema (``connectors.fields.Destination``), and every field named like a host, port, URL
  or endpoint is marked, so a change of it never takes a stored secret along.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import re
import threading
import time
import typing
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, SecretStr

from connectors.base import MASK, CheckResult, CheckStatus, Connector, ConnectorConfig, Probe, StepStatus, run_check
from connectors.errors import FailureType, InvalidConfiguration, ProbeFailure, WarningCode
from connectors.fields import DESTINATION_KEY
from connectors.registry import GROUP, all_connectors
from tests.servers.http import TestCA, server_context
from tests.servers.tcp import HostPort

CONNECTORS = all_connectors()

CLOSED_PORT_TIMEOUT = 3.0
HUNG_TIMEOUT = 1.5
# What a check may take beyond its deadline to close its sockets and build the result.
GRACE = 0.5

each_connector = pytest.mark.parametrize("connector", list(CONNECTORS.values()), ids=list(CONNECTORS))


# --- helpers ----------------------------------------------------------------------------


def example(connector: Connector, host: str = "127.0.0.1", port: int = 9) -> dict[str, Any]:
    """The connector's example configuration, or a test failure telling its author what to add."""
    cls = type(connector)
    try:
        data = connector.example_config(host, port)
    except NotImplementedError:
        data = None
    if data is None:  # failed outside the except block, so the report is this message alone
        pytest.fail(
            f"connector {connector.name!r} ({cls.__module__}.{cls.__qualname__}) does not implement "
            "example_config(host, port). Add a classmethod returning a minimal valid configuration "
            "(plain JSON, dummy secrets filled in) for a server at host:port, so this contract suite "
            "can check it; see Connector.example_config and docs/writing-a-connector.md.",
            pytrace=False,
        )
    assert isinstance(data, dict), f"{cls.__qualname__}.example_config must return a dict, not {type(data).__name__}"
    return data


def parse(connector: Connector, data: dict[str, Any]) -> ConnectorConfig:
    try:
        return connector.parse_config(data)
    except InvalidConfiguration as exc:
        problem = str(exc)
    pytest.fail(f"example_config of {connector.name!r} is not a valid configuration: {problem}", pytrace=False)


def _annotation_parts(annotation: Any) -> Iterator[Any]:
    """``annotation`` and everything inside it (union members, type arguments, Annotated's type)."""
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _annotation_parts(arg)


def _holds_secret(annotation: Any) -> bool:
    return any(isinstance(part, type) and issubclass(part, SecretStr) for part in _annotation_parts(annotation))


def config_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every model nested in its fields, each once."""
    found: list[type[BaseModel]] = []
    todo = [model]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.append(current)
        for field in current.model_fields.values():
            for part in _annotation_parts(field.annotation):
                if isinstance(part, type) and issubclass(part, BaseModel):
                    todo.append(part)
    return found


def _is_marked_secret(schema: dict[str, Any]) -> bool:
    """The schema of a secret field: the markers on it, or on each non-null branch / item / value."""
    if schema.get("secret") is True and schema.get("writeOnly") is True and schema.get("format") == "password":
        return True
    branches = [b for b in schema.get("anyOf", schema.get("oneOf", [])) if b.get("type") != "null"]
    if branches:
        return all(_is_marked_secret(b) for b in branches)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            return _is_marked_secret(schema[key])
    return False


def _secret_markers(schema: Any) -> list[str]:
    """Every secret marker anywhere in ``schema`` (``$ref``s are not followed)."""
    found: list[str] = []
    if isinstance(schema, dict):
        if "secret" in schema:
            found.append("secret")
        if schema.get("writeOnly") is True:
            found.append("writeOnly")
        if schema.get("format") == "password":
            found.append("format: password")
        for value in schema.values():
            found += _secret_markers(value)
    elif isinstance(schema, list):
        for item in schema:
            found += _secret_markers(item)
    return found


def _all_properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of every property of the top-level object and of every ``$defs`` model."""
    for name, prop in schema.get("properties", {}).items():
        yield name, prop
    for model, definition in schema.get("$defs", {}).items():
        for name, prop in definition.get("properties", {}).items():
            yield f"$defs.{model}.{name}", prop


# host, port, url, endpoint, and every *_host, *_port, *_url, *_endpoint (base_url, token_url...).
_DESTINATION_NAME = re.compile(r"(^|_)(host|port|url|endpoint)$")


def _is_destination(prop: dict[str, Any]) -> bool:
    return prop.get(DESTINATION_KEY) is True or any(_is_destination(b) for b in prop.get("anyOf", ()))


@each_connector
def test_the_destination_fields_are_declared(connector: Connector) -> None:
    properties = list(_all_properties(connector.connection_specification()))
    assert any(_is_destination(prop) for _, prop in properties), (
        f"{connector.name} marks no field as a destination: annotate its host/port/URL fields with "
        "connectors.fields.Destination (or DestinationHost, DestinationPort)"
    )
    unmarked = [
        path
        for path, prop in properties
        if _DESTINATION_NAME.search(path.rsplit(".", 1)[-1]) and not _is_destination(prop)
    ]
    assert not unmarked, (
        f"{connector.name}: fields that decide where it connects are not marked x-destination: {unmarked}"
    )


def _forms(secret: str) -> set[str]:
    """``secret`` as it may slip out: in clear, base64-encoded (Basic auth...), percent-encoded."""
    b64 = base64.b64encode(secret.encode()).decode()
    return {secret, b64, b64.rstrip("="), urllib.parse.quote(secret, safe="")}


def leaks(config: ConnectorConfig, *texts: str) -> list[str]:
    """The secret values of ``config`` found in any of ``texts`` (each only named by its length)."""
    return [
        f"a {len(s)}-character secret"
        for s in config.secret_values()
        if any(form in text for form in _forms(s) for text in texts)
    ]


def result_texts(result: CheckResult, config: ConnectorConfig) -> tuple[str, ...]:
    return (json.dumps(asdict(result), default=str), repr(result), str(result), repr(config), str(config))


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``schema`` and every schema it refers to or combines."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        schema = root.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {})
    yield schema
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, ()):
            yield from _resolve(branch, root)


def has_field(schema: dict[str, Any], dotted: str) -> bool:
    """Whether ``dotted`` (``ssh_tunnel.host``) names a property of ``schema``, nested ones included."""
    level = [schema]
    for name in dotted.split("."):
        level = [
            branch["properties"][name]
            for current in level
            for branch in _resolve(current, schema)
            if name in branch.get("properties", {})
        ]
        if not level:
            return False
    return True


def assert_well_formed(connector: Connector, result: CheckResult) -> None:
    """The fields a failure names exist in the schema; each warning has a known code and texts."""
    schema = connector.connection_specification()
    if result.failure is not None:
        unknown = [f for f in result.failure.fields if not has_field(schema, f)]
        assert not unknown, f"{connector.name}: the failure names fields its schema does not have: {unknown}"
    for warning in result.warnings:
        assert warning.code in set(WarningCode), f"{connector.name}: unknown warning code {warning.code!r}"
        assert warning.message.strip() and warning.hint.strip(), f"{connector.name}: a warning without texts"


def assert_failed_cleanly(connector: Connector, config: ConnectorConfig, result: CheckResult) -> None:
    """A failed result with a typed failure, every planned step once and in order, one step blamed."""
    name = connector.name
    assert_well_formed(connector, result)
    assert result.status == CheckStatus.FAILED, f"{name}: expected a failed check, got {result}"
    assert result.failure is not None, f"{name}: a failed result must carry its failure"
    assert result.failure.type != FailureType.INTERNAL_ERROR, (
        f"{name}: an unexpected exception escaped the check (internal_error): turn it into a ProbeFailure "
        f"with a failure type; steps: {[(s.name, s.status.value, s.message) for s in result.steps]}"
    )
    assert result.failure.message.strip() and result.failure.hint.strip(), f"{name}: empty message or hint"
    planned = list(connector.planned_steps(config))
    assert [s.name for s in result.steps] == planned, (
        f"{name}: the steps must be the planned ones (planned_steps(config)), each once, in their order "
        f"{planned}; got {[s.name for s in result.steps]}"
    )
    statuses = [s.status for s in result.steps]
    assert statuses.count(StepStatus.FAILED) == 1, f"{name}: exactly one step must be blamed, got {statuses}"
    failed_at = statuses.index(StepStatus.FAILED)
    assert all(s == StepStatus.SKIPPED for s in statuses[failed_at + 1 :]), (
        f"{name}: the steps after the failed one must be skipped, got {statuses}"
    )
    leaked = leaks(config, *result_texts(result, config))
    assert not leaked, f"{name}: a secret leaked into the result, a message, a step, a hint or a repr"


# --- the declared entry points ------------------------------------------------------------


def _declared() -> list[EntryPoint]:
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


@pytest.mark.parametrize("entry_point", _declared(), ids=lambda ep: ep.name)
def test_every_declared_entry_point_loads(entry_point: EntryPoint) -> None:
    """A connector whose module exists but fails to load would otherwise escape this suite."""
    if entry_point.name in CONNECTORS:
        return
    module = entry_point.module
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"entry point {entry_point.name} = {entry_point.value!r}: module {module} does not exist")
    pytest.fail(
        f"entry point {entry_point.name} = {entry_point.value!r} did not load although {module} exists: "
        f"see the registry's log above, or run: python -c 'import {module}'",
        pytrace=False,
    )


def test_the_built_in_connectors_are_registered() -> None:
    assert {"postgres", "mysql", "http"} <= set(CONNECTORS)


# --- the configuration schema -------------------------------------------------------------


@each_connector
def test_the_schema_is_valid_json_schema(connector: Connector) -> None:
    spec = connector.connection_specification()
    Draft202012Validator.check_schema(spec)  # raises SchemaError naming the bad part
    assert spec.get("type") == "object" and spec.get("properties"), "the configuration must be an object with fields"
    json.dumps(spec)  # served as JSON by the API
    # The schema a form is built from accepts what the model accepts.
    Draft202012Validator(spec).validate(example(connector))


@each_connector
def test_every_property_has_a_title_and_a_description(connector: Connector) -> None:
    missing = [
        f"{path}: no {key}"
        for path, prop in _all_properties(connector.connection_specification())
        for key in ("title", "description")
        if not (isinstance(prop.get(key), str) and prop[key].strip())
    ]
    assert not missing, f"{connector.name}: give these fields Field(title=..., description=...): {missing}"


@each_connector
def test_secret_fields_are_marked_and_no_other_field_is(connector: Connector) -> None:
    problems = []
    for model in config_models(connector.config_model):
        properties = model.model_json_schema().get("properties", {})
        for name, field in model.model_fields.items():
            key = field.alias or name
            prop = properties.get(key, {})
            where = f"{model.__name__}.{name}"
            if _holds_secret(field.annotation):
                if not _is_marked_secret(prop):
                    problems.append(f"{where} holds a secret but is not marked: type it as connectors.base.Secret")
            elif markers := _secret_markers(prop):
                problems.append(f"{where} is not a secret but its schema says {markers}")
    assert not problems, f"{connector.name}: {problems}"


@each_connector
def test_every_model_refuses_unknown_fields(connector: Connector) -> None:
    lax = [
        m.__name__
        for m in config_models(connector.config_model)
        if m.model_json_schema().get("additionalProperties") is not False
    ]
    assert not lax, f"{connector.name}: these models accept unknown fields (set extra='forbid'): {lax}"
    data = example(connector)
    parse(connector, data)
    data["no_such_field"] = "x"
    with pytest.raises(InvalidConfiguration) as info:
        connector.parse_config(data)
    assert [e.field for e in info.value.errors] == ["no_such_field"]


# --- the example configuration ------------------------------------------------------------


@each_connector
def test_the_example_config_round_trips_without_showing_a_secret(connector: Connector) -> None:
    config = parse(connector, example(connector))
    secrets = config.secret_values()
    declares_secrets = any(
        _holds_secret(f.annotation) for m in config_models(connector.config_model) for f in m.model_fields.values()
    )
    if declares_secrets:
        assert secrets, (
            f"{connector.name}: example_config should fill in a secret field (a dummy value) "
            "so this suite can check that secrets never leak"
        )
    masked = config.masked()
    leaked = leaks(config, json.dumps(masked), repr(config), str(config))
    assert not leaked, f"{connector.name}: a secret shows in the masked dump or the repr"
    if secrets:
        assert MASK in json.dumps(masked)
    revealed = config.revealed()
    assert connector.parse_config(json.loads(json.dumps(revealed))) == config


# --- the step plan ------------------------------------------------------------------------


def assert_valid_plan(connector: Connector, config: ConnectorConfig) -> None:
    """``planned_steps(config)``: a tuple of declared steps, each once, in the declared order."""
    name = connector.name
    planned = connector.planned_steps(config)
    assert isinstance(planned, tuple) and planned, (
        f"{name}: planned_steps must return a non-empty tuple, got {planned!r}"
    )
    unknown = [s for s in planned if s not in connector.steps]
    assert not unknown, f"{name}: planned_steps names steps that are not declared in steps: {unknown}"
    assert len(set(planned)) == len(planned), f"{name}: planned_steps names a step twice: {list(planned)}"
    declared_order = [s for s in connector.steps if s in planned]
    assert list(planned) == declared_order, (
        f"{name}: planned_steps must keep the declared order {declared_order}, got {list(planned)}"
    )


class _PlanConfig(ConnectorConfig):
    optional: bool = False


class _PlannedConnector(Connector):
    """Declares a, b (only with ``optional``), c, d; fails in c, or ends after a without ``optional``."""

    name = "planned"
    title = "Planned"
    config_model = _PlanConfig
    steps = ("a", "b", "c", "d")

    def planned_steps(self, config: _PlanConfig) -> tuple[str, ...]:
        return self.steps if config.optional else ("a", "c", "d")

    async def check(self, config: _PlanConfig, probe: Probe) -> None:
        async with probe.step("a"):
            pass
        if config.optional:
            async with probe.step("b"):
                pass
        async with probe.step("c"):
            raise ProbeFailure(FailureType.NOT_FOUND, "no c")


async def test_run_check_reports_the_planned_steps_only() -> None:
    connector = _PlannedConnector()
    without = await run_check(connector, _PlanConfig(), timeout=2)
    assert [(s.name, s.status) for s in without.steps] == [
        ("a", StepStatus.SUCCEEDED),
        ("c", StepStatus.FAILED),
        ("d", StepStatus.SKIPPED),
    ]
    with_option = await run_check(connector, _PlanConfig(optional=True), timeout=2)
    assert [s.name for s in with_option.steps] == ["a", "b", "c", "d"]


async def test_a_broken_plan_falls_back_to_the_declared_steps() -> None:
    class Broken(_PlannedConnector):
        def planned_steps(self, config: _PlanConfig) -> tuple[str, ...]:
            raise KeyError("oops")

    result = await run_check(Broken(), _PlanConfig(), timeout=2)
    assert result.failure is not None and result.failure.type == FailureType.NOT_FOUND  # the check still ran
    assert [(s.name, s.status) for s in result.steps] == [
        ("a", StepStatus.SUCCEEDED),
        ("b", StepStatus.SKIPPED),
        ("c", StepStatus.FAILED),
        ("d", StepStatus.SKIPPED),
    ]


@each_connector
def test_the_steps_are_declared_once_each(connector: Connector) -> None:
    steps = connector.steps
    assert isinstance(steps, tuple) and steps, f"{connector.name}: steps must be a non-empty tuple of step names"
    assert all(isinstance(s, str) and s for s in steps), f"{connector.name}: every step name must be a non-empty str"
    assert len(set(steps)) == len(steps), f"{connector.name}: a step is declared twice: {list(steps)}"


@each_connector
def test_the_planned_steps_are_declared_steps_in_order(connector: Connector) -> None:
    assert_valid_plan(connector, parse(connector, example(connector)))


# Configurations beyond the examples whose plan differs, as overrides of example_config(host, port)
# (a tunnel's bastion at the same host and port). Each variant's plan is checked, and so is how
# a check of it fails at a closed port.
def _tunnel(host: str, port: int) -> dict[str, Any]:
    return {"ssh_tunnel": {"host": host, "port": port, "user": "u", "auth": {"type": "password", "password": "p-1"}}}


_GOOGLE_OAUTH = {"type": "oauth", "client_id": "c", "client_secret": "s-1", "refresh_token": "r-1"}
_MS = {"tenant": "contoso.onmicrosoft.com", "client_id": "c", "client_secret": "s-1"}
_NO_TLS_NO_TUNNEL = ("resolve", "tcp", "authenticate", "access")
_WITH_TOKEN = ("resolve", "tcp", "tls", "token", "authenticate", "access")
_WITHOUT_TOKEN = ("resolve", "tcp", "tls", "authenticate", "access")

PLAN_VARIANTS: list[tuple[str, str, typing.Callable[[str, int], dict[str, Any]], tuple[str, ...]]] = [
    ("postgres", "direct", lambda h, p: {}, ("resolve", "tcp", "tls", "authenticate", "access")),
    ("postgres", "tunnel", _tunnel, ("resolve", "tcp", "ssh", "ssh_auth", "tunnel", "tls", "authenticate", "access")),
    ("mysql", "direct", lambda h, p: {}, _NO_TLS_NO_TUNNEL),
    ("mysql", "tunnel", _tunnel, ("resolve", "tcp", "ssh", "ssh_auth", "tunnel", "authenticate", "access")),
    ("google_drive", "access_token", lambda h, p: {}, _WITHOUT_TOKEN),
    ("google_drive", "oauth", lambda h, p: {"credentials": _GOOGLE_OAUTH}, _WITH_TOKEN),
    ("sharepoint", "access_token", lambda h, p: {}, _WITHOUT_TOKEN),
    (
        "sharepoint",
        "oauth",
        lambda h, p: {"credentials": {"type": "oauth", **_MS, "refresh_token": "r-1"}},
        _WITH_TOKEN,
    ),
    (
        "sharepoint",
        "client_credentials",
        lambda h, p: {"credentials": {"type": "client_credentials", **_MS}},
        _WITH_TOKEN,
    ),
]
each_variant = pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        pytest.param(name, overrides, expected, id=f"{name}-{variant}")
        for name, variant, overrides, expected in PLAN_VARIANTS
    ],
)


@each_variant
def test_a_step_of_an_option_left_out_is_not_planned(
    name: str, overrides: typing.Callable[[str, int], dict[str, Any]], expected: tuple[str, ...]
) -> None:
    if name not in CONNECTORS:
        pytest.skip(f"{name} is not registered")
    connector = CONNECTORS[name]
    config = parse(connector, example(connector) | overrides("127.0.0.1", 9))
    assert_valid_plan(connector, config)
    assert connector.planned_steps(config) == expected


@each_variant
async def test_each_plan_variant_fails_cleanly_at_a_closed_port(
    name: str, overrides: typing.Callable[[str, int], dict[str, Any]], expected: tuple[str, ...], closed_port: int
) -> None:
    if name not in CONNECTORS:
        pytest.skip(f"{name} is not registered")
    connector = CONNECTORS[name]
    config = parse(connector, example(connector, "127.0.0.1", closed_port) | overrides("127.0.0.1", closed_port))
    result = await run_check(connector, config, timeout=CLOSED_PORT_TIMEOUT)
    assert_failed_cleanly(connector, config, result)
    assert [s.name for s in result.steps] == list(expected)


# --- failing cleanly and in time ------------------------------------------------------------


@each_connector
async def test_a_closed_port_fails_cleanly_within_the_deadline(connector: Connector, closed_port: int) -> None:
    config = parse(connector, example(connector, "127.0.0.1", closed_port))
    started = time.perf_counter()
    result = await run_check(connector, config, timeout=CLOSED_PORT_TIMEOUT)
    elapsed = time.perf_counter() - started
    assert_failed_cleanly(connector, config, result)
    assert elapsed < CLOSED_PORT_TIMEOUT + GRACE, (
        f"{connector.name}: took {elapsed:.2f} s, deadline {CLOSED_PORT_TIMEOUT} s"
    )
    assert result.failure is not None and result.failure.fields, (
        f"{connector.name}: a server that cannot be reached must name the fields to check (host, port, URL)"
    )


@each_connector
async def test_a_server_that_never_answers_times_out_within_the_deadline(
    connector: Connector, hung_server: HostPort
) -> None:
    config = parse(connector, example(connector, hung_server.host, hung_server.port))
    started = time.perf_counter()
    result = await run_check(connector, config, timeout=HUNG_TIMEOUT)
    elapsed = time.perf_counter() - started
    assert_failed_cleanly(connector, config, result)
    assert result.failure is not None
    assert result.failure.type in (FailureType.TIMEOUT, FailureType.CONNECTION_TIMEOUT), (
        f"{connector.name}: a silent server must end in timeout or connection_timeout, got {result.failure}"
    )
    assert elapsed < 2 * HUNG_TIMEOUT, f"{connector.name}: took {elapsed:.2f} s, deadline {HUNG_TIMEOUT} s"


# --- the provider's own state ------------------------------------------------------------------


_API_ROOTS = ("base_url", "endpoint_url", "url")


def _api_root(connector: Connector) -> str | None:
    """The field holding the HTTPS root a connector talks to, when its trusted CA is a field too."""
    properties = set(connector.connection_specification().get("properties", {}))
    roots = [name for name in _API_ROOTS if name in properties]
    return roots[0] if roots and "ca_cert" in properties else None


def _api_connectors() -> list[Connector]:
    """The connectors whose API root and trusted CA are configuration fields (SaaS, object stores, WebDAV...)."""
    return [c for c in CONNECTORS.values() if _api_root(c)]


@contextlib.contextmanager
def _refusing_provider(test_ca: TestCA, status: int, headers: dict[str, str]) -> Iterator[str]:
    """An HTTPS server answering every request ``status`` with ``headers``; yields its base URL."""

    class Refuse(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = json.dumps({"error": {"message": "try later"}, "message": "try later"}).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = do_OPTIONS = do_PROPFIND = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    httpd.daemon_threads = True
    httpd.socket = server_context(*test_ca.issue()).wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _aimed(connector: Connector, base_url: str, test_ca: TestCA) -> ConnectorConfig:
    port = int(base_url.rsplit(":", 1)[1])
    data = example(connector, "127.0.0.1", port) | {"ca_cert": test_ca.pem}
    root = _api_root(connector)
    assert root is not None
    # An emulator's example may be plain HTTP (Azurite, SeaweedFS): the refusing provider speaks HTTPS.
    data[root] = str(data[root]).replace("http://", "https://", 1)
    return parse(connector, data)


each_api_connector = pytest.mark.parametrize("connector", _api_connectors(), ids=lambda c: c.name)


@each_api_connector
async def test_a_provider_outage_is_provider_unavailable(connector: Connector, test_ca: TestCA) -> None:
    with _refusing_provider(test_ca, 503, {}) as base_url:
        config = _aimed(connector, base_url, test_ca)
        result = await run_check(connector, config, timeout=CLOSED_PORT_TIMEOUT)
    assert_failed_cleanly(connector, config, result)
    assert result.failure is not None
    assert (result.failure.type, result.failure.retryable) == (FailureType.PROVIDER_UNAVAILABLE, True), result


@each_api_connector
async def test_a_rate_limit_longer_than_the_deadline_fails_at_once_saying_when(
    connector: Connector, test_ca: TestCA
) -> None:
    with _refusing_provider(test_ca, 429, {"Retry-After": "3600"}) as base_url:
        config = _aimed(connector, base_url, test_ca)
        started = time.perf_counter()
        result = await run_check(connector, config, timeout=CLOSED_PORT_TIMEOUT)
        elapsed = time.perf_counter() - started
    assert_failed_cleanly(connector, config, result)
    assert result.failure is not None
    assert (result.failure.type, result.failure.retryable) == (FailureType.RATE_LIMITED, True), result
    assert result.failure.retry_after_s == 3600
    assert elapsed < CLOSED_PORT_TIMEOUT, f"{connector.name}: waited for a Retry-After that could not fit"


@each_api_connector
async def test_a_refused_credential_is_authentication_failed_naming_the_fields_to_fix(
    connector: Connector, test_ca: TestCA
) -> None:
    if connector.name == "s3":
        pytest.skip("S3 refuses a credential with 403 and an XML code, never 401: tests/connectors/test_s3.py")
    with _refusing_provider(test_ca, 401, {"WWW-Authenticate": "Bearer"}) as base_url:
        config = _aimed(connector, base_url, test_ca)
        result = await run_check(connector, config, timeout=CLOSED_PORT_TIMEOUT)
    assert_failed_cleanly(connector, config, result)
    assert result.failure is not None
    assert result.failure.type == FailureType.AUTHENTICATION_FAILED, result
    assert result.failure.fields, f"{connector.name}: a refused credential must name its field(s) for a form"


def test_every_failure_type_and_warning_code_is_documented() -> None:
    with open("docs/failure-types.md", encoding="utf-8") as doc:
        text = doc.read()
    missing = [t.value for t in FailureType if f"| `{t.value}` |" not in text]
    missing += [w.value for w in WarningCode if f"| `{w.value}` |" not in text]
    assert not missing, f"docs/failure-types.md does not describe {missing}"
