"""The types every connector is built from: its configuration, its steps, its result.

A connector is a subclass of :class:`Connector` with a pydantic configuration model and
an ``async def check(config, probe)`` that runs named steps through the :class:`Probe`.
:func:`run_check` is the one way to run a check: it enforces the deadline, turns a
:class:`~connectors.errors.ProbeFailure` into a failed :class:`CheckResult`, logs an
unexpected exception (a bug) with a redacted traceback but keeps its text out of the result,
and scrubs every secret value from every message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from connectors.egress import EgressPolicy
from connectors.egress import using as using_egress
from connectors.errors import (
    DEFAULT_HINTS,
    RETRYABLE,
    FailureType,
    FieldError,
    InvalidConfiguration,
    ProbeFailure,
    WarningCode,
)
from connectors.fields import DESTINATION_KEY
from connectors.profile import Profile
from connectors.profile import using as using_profile
from connectors.text import MASK, mask_secrets, redacted_traceback

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
MIN_TIMEOUT = 0.5
MAX_TIMEOUT = 60.0

FIRST_BYTES = 1024
"""How much of the first object a file-like source reads (a ranged read where the protocol
has one): enough to prove it can be downloaded, little enough to cost nothing."""

MAX_WARNINGS = 20
"""Warnings one result keeps: a check that finds more reports the first ones."""


def _refuse_mask(value: SecretStr) -> SecretStr:
    if value.get_secret_value() == MASK:
        raise ValueError("the masked placeholder was sent instead of the secret; send the real value")
    return value


def _serialize_secret(value: SecretStr, info: SerializationInfo) -> str:
    if info.context and info.context.get("reveal_secrets"):
        return value.get_secret_value()
    return MASK


Secret = Annotated[
    SecretStr,
    AfterValidator(_refuse_mask),
    PlainSerializer(_serialize_secret, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "password", "writeOnly": True, "secret": True}),
]
"""A secret configuration field: masked in every dump unless asked to reveal, marked
``"secret": true`` in the JSON Schema so forms render a password input."""


class ConnectorConfig(BaseModel):
    """Base of every connector's configuration: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, str_strip_whitespace=False)

    def masked(self) -> dict[str, Any]:
        """The configuration as JSON with every secret replaced by the mask."""
        return self.model_dump(mode="json")

    def revealed(self) -> dict[str, Any]:
        """The configuration as JSON with the secrets in clear (encrypt before it travels)."""
        return self.model_dump(mode="json", context={"reveal_secrets": True})

    def secret_values(self) -> list[str]:
        """Every non-empty secret value in this configuration, nested models included."""
        return [v for v in _iter_secrets(self) if v]


def _iter_secrets(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _iter_secrets(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _iter_secrets(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _iter_secrets(item)


Path = tuple[str, ...]
"""Where a value sits in a configuration: ``("ssh_tunnel", "auth", "password")``."""


def _branches(schema: dict[str, Any], root: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``schema`` and every schema it refers to or combines (``$ref``, ``anyOf``, ``oneOf``, ``allOf``)."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        schema = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
    yield schema
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, ()):
            yield from _branches(branch, root)


def _marked(schema: dict[str, Any], root: dict[str, Any], keyword: str) -> bool:
    return any(branch.get(keyword) is True for branch in _branches(schema, root))


def _object_schema(schema: dict[str, Any], root: dict[str, Any], value: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema ``value`` follows: the branch whose ``type`` constant it has, or the only one."""
    objects = [b for b in _branches(schema, root) if "properties" in b]
    for branch in objects:
        kind = branch["properties"].get("type", {})
        if "const" in kind and kind["const"] == value.get("type"):
            return branch
    return objects[0] if len(objects) == 1 else None


def _walk(
    schema: dict[str, Any], root: dict[str, Any], data: dict[str, Any], prefix: Path = ()
) -> Iterator[tuple[Path, dict[str, Any], Any]]:
    """Every ``(path, property schema, value)`` of ``data``, nested objects included."""
    for name, prop in schema.get("properties", {}).items():
        if name not in data:
            continue
        value, path = data[name], (*prefix, name)
        yield path, prop, value
        nested = _object_schema(prop, root, value) if isinstance(value, dict) else None
        if nested is not None:
            yield from _walk(nested, root, value, path)


def destination_of(schema: dict[str, Any], data: dict[str, Any]) -> dict[Path, Any]:
    """Where a configuration (JSON, as :meth:`ConnectorConfig.revealed` dumps it) connects to:
    the value of every field its JSON Schema marks ``"x-destination": true`` (see
    :data:`connectors.fields.Destination`), and the ``type`` of every nested object (another
    kind of tunnel or credentials is another way out). Two configurations with equal
    destinations connect to the same places."""
    return {
        path: value
        for path, prop, value in _walk(schema, schema, data)
        if path[-1] == "type" and len(path) > 1 or _marked(prop, schema, DESTINATION_KEY)
    }


def secret_paths(schema: dict[str, Any], data: dict[str, Any]) -> list[Path]:
    """The path of every secret field (``"secret": true`` in the schema) ``data`` fills in."""
    return [
        path
        for path, prop, value in _walk(schema, schema, data)
        if value not in (None, "") and _marked(prop, schema, "secret")
    ]


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class CheckStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class Step:
    """One named stage of a check, as the caller sees it."""

    name: str
    status: StepStatus
    duration_ms: float = 0.0
    message: str | None = None


@dataclass
class Failure:
    """Why a check failed: a fixed type, a human message, a hint, whether to retry, and the
    configuration fields it is about."""

    type: FailureType
    message: str
    hint: str
    retryable: bool
    fields: list[str] = field(default_factory=list)
    retry_after_s: float | None = None

    @classmethod
    def of(
        cls,
        type: FailureType,
        message: str,
        *,
        hint: str | None = None,
        retryable: bool | None = None,
        fields: list[str] | tuple[str, ...] = (),
        retry_after_s: float | None = None,
    ) -> Failure:
        """A failure of ``type``, with that type's default hint and retry rule unless given."""
        return cls(
            type=type,
            message=message,
            hint=hint or DEFAULT_HINTS[type],
            retryable=RETRYABLE[type] if retryable is None else retryable,
            fields=list(fields),
            retry_after_s=retry_after_s,
        )


@dataclass
class CheckWarning:
    """A finding that does not fail the check but that the user should act on (a token that
    expires soon, an empty folder): a fixed code, a message and what to do."""

    code: WarningCode
    message: str
    hint: str


@dataclass
class CheckResult:
    """The outcome of one check. ``failure`` is set exactly when ``status`` is failed."""

    status: CheckStatus
    steps: list[Step] = field(default_factory=list)
    failure: Failure | None = None
    duration_ms: float = 0.0
    warnings: list[CheckWarning] = field(default_factory=list)


CHECK_RESULT: TypeAdapter[CheckResult] = TypeAdapter(CheckResult)
"""A CheckResult's JSON form, both ways: what the worker stores in Redis and the API reads."""


RUNNING = "running"
"""The status a :class:`StepEvent` has when its step starts (a Step itself is never running)."""


@dataclass(frozen=True)
class PlanEvent:
    """A check starts: the steps it plans, in order."""

    steps: tuple[str, ...]
    event: ClassVar[str] = "plan"

    def data(self) -> dict[str, Any]:
        return {"steps": list(self.steps)}


@dataclass(frozen=True)
class StepEvent:
    """A step starts (``status`` running, nothing else) or ends (its status, duration in whole
    milliseconds and message)."""

    name: str
    status: str
    duration_ms: int | None = None
    message: str | None = None
    event: ClassVar[str] = "step"

    @classmethod
    def ended(cls, step: Step) -> StepEvent:
        return cls(step.name, step.status, round(step.duration_ms), step.message)

    def data(self) -> dict[str, Any]:
        if self.status == RUNNING:
            return {"name": self.name, "status": RUNNING}
        return {"name": self.name, "status": self.status, "duration_ms": self.duration_ms, "message": self.message}


@dataclass(frozen=True)
class WarningEvent:
    """A warning, as it is found."""

    code: str
    message: str
    hint: str
    event: ClassVar[str] = "warning"

    def data(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


ProbeEvent = PlanEvent | StepEvent | WarningEvent
"""What a check reports as it goes (the live stream of a test: docs/execution-model.md)."""
Listener = Callable[[ProbeEvent], None]


def event_json(event: ProbeEvent) -> str:
    """An event's data as one line of JSON (what the stream's ``data:`` carries)."""
    return json.dumps(event.data(), separators=(",", ":"), ensure_ascii=False)


CANCEL_REASON = "sourcecheck: the test was cancelled"
"""The message of the cancellation :func:`cancel_check` sends; run_check tells it from any other."""


class Watch:
    """Watches a check that :func:`run_check` runs, from any moment: :meth:`attach` a
    listener (before or during the check) and it is told what happened so far, then each
    event as it comes, secrets masked as in the result. A check nobody watches builds no event."""

    def __init__(self, listener: Listener | None = None) -> None:
        self._listener = listener
        self._probe: Probe | None = None
        self._config: ConnectorConfig | None = None

    def attach(self, listener: Listener) -> None:
        """Tell ``listener`` this check's events (one listener; a second is ignored)."""
        if self._listener is not None:
            return
        self._listener = listener
        if self._probe is not None and self._config is not None:
            self._probe.attach(_scrubbing(listener, self._config))

    def started(self, probe: Probe, config: ConnectorConfig) -> None:
        """run_check's: the check's probe is made."""
        self._probe, self._config = probe, config
        if self._listener is not None:
            probe.attach(_scrubbing(self._listener, config))


def cancel_check(task: asyncio.Task[Any]) -> None:
    """Stop the check that ``task`` runs through :func:`run_check`: it ends failed, type
    ``cancelled`` (the step that ran failed, the rest skipped), as a result, not an exception."""
    task.cancel(CANCEL_REASON)


class Probe:
    """Runs and records the steps of one check. Connectors use :meth:`step`."""

    def __init__(self, step_names: tuple[str, ...], deadline: float) -> None:
        self.step_names = step_names
        self.deadline = deadline  # time.monotonic() value
        self.steps: list[Step] = []
        self.current: Step | None = None
        self.warnings: list[CheckWarning] = []
        self.about: dict[str, list[str]] = {}
        """The configuration fields each step is about (see :meth:`step`), by step name."""
        self.listener: Listener | None = None  # told each step's start and end and each warning (see attach)
        self._open: set[int] = set()  # the ids of the steps that started and have not ended
        self._told_steps: set[int] = set()  # the ids of the steps whose end was told

    def attach(self, listener: Listener) -> None:
        """Start telling ``listener``: what happened so far (the plan, the steps begun or
        ended, the warnings), then each event as it comes."""
        self.listener = listener
        self.emit(PlanEvent(self.step_names))
        for step in self.steps:
            if step.status != StepStatus.SKIPPED:
                self.emit(StepEvent(step.name, RUNNING))
            if id(step) not in self._open:
                self._tell_end(step)
        for warning in self.warnings:
            self.emit(WarningEvent(warning.code, warning.message, warning.hint))

    def emit(self, event: ProbeEvent) -> None:
        """Tell the listener, if any; a listener's fault never disturbs the check."""
        if self.listener is None:
            return
        try:
            self.listener(event)
        except Exception:
            log.exception("a probe listener failed; its events are dropped")
            self.listener = None

    def remaining(self) -> float:
        """Seconds left before the check's deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def warn(self, code: WarningCode, message: str, *, hint: str) -> None:
        """Record a warning: the check goes on, and a succeeded result carries it (a failed one
        too: what was found before the failure stays true). run_check masks secrets in it."""
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(CheckWarning(code=code, message=message, hint=hint))
            self.emit(WarningEvent(code, message, hint))

    @asynccontextmanager
    async def step(
        self, name: str, success_message: str | None = None, *, fields: Sequence[str] = ()
    ) -> AsyncIterator[Step]:
        """Time a step; a ProbeFailure inside marks it failed and ends the check.

        ``fields``: the configuration fields the step is about (``["ssh_tunnel.host",
        "ssh_tunnel.port"]``), named by the failure run_check reports when the deadline ends
        the check during it (a ProbeFailure names its own)."""
        if fields:
            self.about[name] = list(fields)
        self._tell_recorded()
        step = Step(name=name, status=StepStatus.SUCCEEDED, message=success_message)
        self.steps.append(step)
        self.current = step
        self._open.add(id(step))
        self.emit(StepEvent(name, RUNNING))
        started = time.perf_counter()
        ended = False  # by the step itself; any other exception is reported by run_check
        try:
            yield step
        except ProbeFailure as failure:
            step.status = StepStatus.FAILED
            step.message = failure.message
            ended = True
            raise
        else:
            self.current = None  # left set on any exception: run_check blames this step
            ended = True
        finally:
            step.duration_ms = round((time.perf_counter() - started) * 1000, 2)
            if ended:
                self._open.discard(id(step))
                self._tell_end(step)

    def report_unended(self) -> None:
        """Tell the end of every step not told yet: the ones a timeout, a bug or a cancel
        stopped (run_check calls it once it has marked them)."""
        self._open.clear()
        self._tell_recorded()

    def _tell_recorded(self) -> None:
        """Tell the steps a connector recorded itself (a ``tls`` skipped for a plain URL)
        before the next step starts, so that they come in their order."""
        if self.listener is None:
            return
        for step in self.steps:
            if id(step) not in self._told_steps and id(step) not in self._open:
                self._tell_end(step)

    def _tell_end(self, step: Step) -> None:
        self._told_steps.add(id(step))
        self.emit(StepEvent.ended(step))


class Connector(ABC):
    """A kind of source that can be checked.

    Subclasses set the class attributes and implement :meth:`check`. Everything else
    (deadline, result, secret scrubbing) is done by :func:`run_check`.
    """

    name: ClassVar[str]
    """Stable identifier, also the source definition id (``postgres``)."""
    title: ClassVar[str]
    category: ClassVar[str] = "other"
    """database, files, web or saas: how a catalog groups it."""
    icon: ClassVar[str | None] = None
    """Name of an icon a front end can show (default: the connector's name)."""
    documentation_url: ClassVar[str | None] = None
    config_model: ClassVar[type[ConnectorConfig]]
    steps: ClassVar[tuple[str, ...]]
    """The names of every step :meth:`check` can run, in order (the catalog's view: see :meth:`planned_steps`)."""

    def planned_steps(self, config: Any) -> tuple[str, ...]:
        """The steps :meth:`check` runs for ``config``, in order: :attr:`steps`, or a part of it.

        :func:`run_check` orders the result by this plan and, when the check fails, reports
        every planned step not reached as skipped. Override it when a step belongs to an
        option the configuration may leave out, so a result shows no step that could never
        have run: the SSH steps without ``ssh_tunnel``, ``token`` without OAuth credentials.
        A planned step that does not apply to this configuration but says something the user
        should know (no ``tls`` for an ``http://`` URL) stays in the plan and is recorded in
        its place as skipped, with a message.
        """
        return self.steps

    def parse_config(self, data: dict[str, Any]) -> ConnectorConfig:
        """Validate ``data`` against the configuration model, collecting every field error.

        Raises :class:`InvalidConfiguration` naming the fields, never their values.
        """
        try:
            return self.config_model.model_validate(data)
        except ValidationError as exc:
            errors = [
                FieldError(field=".".join(str(p) for p in err["loc"]) or "(root)", message=err["msg"])
                for err in exc.errors(include_input=False, include_url=False)
            ]
        raise InvalidConfiguration(errors) from None

    def connection_specification(self) -> dict[str, Any]:
        """The JSON Schema of the configuration; secret fields carry ``"secret": true``."""
        return self.config_model.model_json_schema()

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        """A minimal valid configuration (the JSON a client would send) for a server at ``host:port``.

        Every connector implements it: the contract suite (``tests/connectors/test_contract.py``)
        parses it, round-trips it, and points the connector at a closed port and at a server that
        never answers, to prove a check fails cleanly, in time and without leaking a secret.

        - Aim every network connection of the check at ``host`` and ``port``. A connector that
          talks to a fixed service (a SaaS API) needs a field that overrides its base URL.
        - Fill every required field, and fill in at least one secret field (dummy values, e.g.
          ``"example-password"``) so the suite can check secrets never leak.
        - Return plain JSON values, as a form or the API would send them; nothing is contacted.
        """
        raise NotImplementedError(
            f"{cls.__name__} does not implement example_config(host, port): add a classmethod returning a "
            "minimal valid configuration for a server at host:port (see docs/writing-a-connector.md)"
        )

    @abstractmethod
    async def check(self, config: Any, probe: Probe) -> None:
        """Run the steps in order; raise ProbeFailure inside a step to fail the check."""


def _plan(connector: Connector, config: ConnectorConfig) -> tuple[str, ...]:
    """``connector.planned_steps(config)``; all its declared steps if that hook is broken
    (the check still runs, and the contract suite catches the bug)."""
    try:
        return tuple(connector.planned_steps(config))
    except Exception as exc:  # its text is not logged: it may hold a configuration value
        log.error(
            "%s.planned_steps raised %s: reporting all its declared steps", type(connector).__name__, type(exc).__name__
        )
        return tuple(connector.steps)


def step_for_timeout(step: str) -> FailureType:
    # A deadline hit while the TCP handshake is still going on means nothing answered.
    return FailureType.CONNECTION_TIMEOUT if step == "tcp" else FailureType.TIMEOUT


async def run_check(
    connector: Connector,
    config: ConnectorConfig,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    egress: EgressPolicy | None = None,
    profile: Profile | None = None,
    watch: Watch | None = None,
) -> CheckResult:
    """Run ``connector``'s check on ``config`` and return its result; never raises for
    the source's faults. The check ends by ``timeout`` seconds (asyncio-cancellable code),
    or when :func:`cancel_check` cancels it (failed, type ``cancelled``).

    ``watch`` lets a listener be told, as they happen, the plan, each step's start and end
    (the skipped ones last) and each warning, with secrets masked as in the result (see
    :class:`Watch`).

    ``egress`` is the policy of the addresses the check may connect to (see
    :mod:`connectors.egress`); None keeps the current one, by default
    :data:`~connectors.egress.DEFAULT_POLICY` (everything but link-local and cloud metadata).
    ``profile`` is the service's (see :mod:`connectors.profile`); None keeps the current one."""
    started = time.perf_counter()
    planned = _plan(connector, config)
    probe = Probe(planned, deadline=time.monotonic() + timeout)
    if watch is not None:
        watch.started(probe, config)
    failure: Failure | None = None
    deadline = asyncio.timeout(timeout)
    try:
        with using_egress(egress), using_profile(profile):
            async with deadline:
                await connector.check(config, probe)
    except ProbeFailure as exc:
        failure = Failure.of(
            exc.type,
            exc.message,
            hint=exc.hint,
            retryable=exc.retryable,
            fields=exc.fields,
            retry_after_s=exc.retry_after_s,
        )
    except TimeoutError:
        step = probe.current
        name = step.name if step else "check"
        kind = step_for_timeout(name)
        if deadline.expired():
            message = f"No answer within {timeout:g} s during step '{name}'"
        else:  # a driver's own, shorter timeout
            message = f"Timed out during step '{name}'"
        if step is not None:
            step.status = StepStatus.FAILED
            step.message = message
        failure = Failure.of(kind, message, fields=probe.about.get(step.name, []) if step else [])
    except asyncio.CancelledError as exc:
        if CANCEL_REASON not in exc.args:
            raise  # not ours to turn into a result (the loop or a caller's cancellation)
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        step = probe.current
        name = step.name if step else "check"
        if step is not None:
            step.status = StepStatus.FAILED
            step.message = "cancelled"
        failure = Failure.of(FailureType.CANCELLED, f"The test was cancelled during step '{name}'")
    except Exception as exc:  # a bug in the connector: its text may hold a secret
        step = probe.current
        if step is not None:
            step.status = StepStatus.FAILED
            step.message = "internal error"
        if not isinstance(exc, MemoryError):  # the process's, not the connector's: its runner reports it
            _log_bug(connector, step, exc, config)
        failure = Failure.of(FailureType.INTERNAL_ERROR, f"The check stopped on an unexpected {type(exc).__name__}")
    if failure is not None and not failure.fields and failure.type in _ABOUT_THE_DESTINATION:
        failure.fields = _destination_fields(connector, config)
    probe.report_unended()
    reached = {s.name for s in probe.steps}
    skipped = [Step(name=n, status=StepStatus.SKIPPED) for n in planned if n not in reached and failure]
    for step in skipped:
        probe.emit(StepEvent.ended(step))  # not recorded in the probe: told once, here
    steps = probe.steps + skipped
    order = {name: i for i, name in enumerate(planned)}
    steps.sort(key=lambda s: order.get(s.name, len(order)))  # stable: undeclared steps keep their place at the end
    result = CheckResult(
        status=CheckStatus.FAILED if failure else CheckStatus.SUCCEEDED,
        steps=steps,
        failure=failure,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        warnings=probe.warnings,
    )
    return scrub(result, config.secret_values())


# Failures about reaching the source: when a connector does not name the fields, they are its
# destination fields (host and port, the URL), which is where a form should point.
_ABOUT_THE_DESTINATION = frozenset(
    {
        FailureType.DNS_RESOLUTION_FAILED,
        FailureType.CONNECTION_REFUSED,
        FailureType.CONNECTION_TIMEOUT,
        FailureType.HOST_UNREACHABLE,
        FailureType.EGRESS_BLOCKED,
    }
)


def _destination_fields(connector: Connector, config: ConnectorConfig) -> list[str]:
    """The dotted names of ``config``'s destination fields (see :func:`destination_of`)."""
    try:
        paths = destination_of(connector.connection_specification(), config.revealed())
    except Exception:  # a broken schema hook: the failure is still reported, without fields
        log.error("%s: its destination fields could not be read", type(connector).__name__)
        return []
    return [".".join(path) for path in paths if path[-1] != "type"]


def _log_bug(connector: Connector, step: Step | None, exc: Exception, config: ConnectorConfig) -> None:
    """Log a connector's unexpected exception with its connector, its step and its traceback,
    every secret of ``config`` masked in it."""
    log.error(
        "connector %s raised %s in step %s (reported as internal_error)\n%s",
        connector.name,
        type(exc).__name__,
        step.name if step else "(none)",
        redacted_traceback(exc, config.secret_values()),
    )


def _scrubbing(listener: Listener, config: ConnectorConfig) -> Listener:
    """``listener``, given every event with the secrets of ``config`` masked as :func:`scrub` masks them."""
    secrets = config.secret_values()

    def clean(text: str | None) -> str | None:
        return mask_secrets(text, secrets) if text and secrets else text

    def told(event: ProbeEvent) -> None:
        if isinstance(event, StepEvent) and event.message:
            event = StepEvent(event.name, event.status, event.duration_ms, clean(event.message))
        elif isinstance(event, WarningEvent):
            event = WarningEvent(event.code, clean(event.message) or "", clean(event.hint) or "")
        listener(event)

    return told


def scrub(result: CheckResult, secrets: list[str]) -> CheckResult:
    """Mask every secret value in every message of ``result`` (see
    :func:`connectors.text.mask_secrets`: a message a short secret cannot be masked in is
    withheld)."""
    secrets = [secret for secret in secrets if secret]

    def clean(text: str | None) -> str | None:
        return mask_secrets(text, secrets) if text else text

    for step in result.steps:
        step.message = clean(step.message)
    for warning in result.warnings:
        warning.message = clean(warning.message) or ""
        warning.hint = clean(warning.hint) or ""
    if result.failure:
        result.failure.message = clean(result.failure.message) or ""
        result.failure.hint = clean(result.failure.hint) or ""
    return result
