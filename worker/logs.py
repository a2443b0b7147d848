"""Logs of the API, the workers and the probe children: one line per record, JSON or text.

- **Format.** ``SOURCECHECK_LOG_FORMAT=json`` (the default in production) writes one JSON
  object a line: ``time``, ``level``, ``logger``, ``message``, ``pid``, and the job's
  ``job_id``, ``organization_id``, ``source_id``, ``definition`` when known, plus
  ``exception`` for a traceback. ``text`` (the default in development) writes the same
  as a readable line.
- **Context.** :func:`bind` puts the job's fields into a context variable that every record
  logged in that context carries: the API binds them per request, the worker per task
  (``worker.tasks``), and the probe children per probe (``worker.runner`` sends them along).
- **Secrets.** The configuration never reaches a log (it travels encrypted and connectors
  scrub their messages); as a last line of defence, every line is passed through
  :func:`redact`, which masks whatever looks like a credential: ``Authorization`` and
  ``Bearer`` values, ``password=``/``token=``/``secret:``-style pairs, passwords in URLs,
  sourcecheck API keys, Fernet tokens and PEM private keys.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["json", "text"]

FIELDS = ("job_id", "organization_id", "source_id", "definition")
MASK = "***"

_context: ContextVar[Mapping[str, str] | None] = ContextVar("sourcecheck_log_context", default=None)


# --- context ----------------------------------------------------------------------------


def current() -> dict[str, str]:
    """The fields bound in this context (a copy)."""
    return dict(_context.get() or {})


def bind(**fields: Any) -> Token[Mapping[str, str] | None]:
    """Add ``fields`` (None values are ignored) to this context's log fields."""
    merged = current()
    merged.update({k: str(v) for k, v in fields.items() if v is not None and k in FIELDS})
    return _context.set(merged)


def replace(fields: Mapping[str, Any] | None) -> Token[Mapping[str, str] | None]:
    """Make ``fields`` this context's log fields (nothing with None or {})."""
    return _context.set({k: str(v) for k, v in (fields or {}).items() if v is not None and k in FIELDS})


def reset(token: Token[Mapping[str, str] | None]) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (a field set with ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        # Celery's "Task ... received" line, logged before the task's context exists.
        data = getattr(record, "data", None)
        if (
            getattr(record, "job_id", None) is None
            and isinstance(data, dict)
            and str(data.get("id", "")).startswith("job_")
        ):
            record.job_id = data["id"]
        return True


# --- redaction --------------------------------------------------------------------------

_SECRET_WORDS = r"password|passwd|pwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?"  # noqa: S105  (names, not values)
_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys, whole.
    (
        re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.S),
        "[private key redacted]",
    ),
    # Authorization: Bearer xxx / 'authorization': 'Basic xxx' / Proxy-Authorization=...
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|digest|token|negotiate|apikey)\s+)?[^\s\"',;}\]]+"
        ),
        "\x00auth",
    ),
    # Bearer xxx anywhere else.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    # Fernet tokens (encrypted configurations), early: long, and nothing to see in them.
    (re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}"), "gAAAAA" + MASK),
    # sourcecheck API keys (sck_<key id>_<secret>): the key id stays, it is not secret.
    (re.compile(r"\b(sck_[a-z0-9]{12}_)[A-Za-z0-9_-]{20,}"), r"\1" + MASK),
    # password=xxx, "token": "xxx", client_secret: xxx, pwd='x y' ... (bounded: linear time)
    (
        re.compile(
            r"(?i)((?:" + _SECRET_WORDS + r")[\w.-]{0,40}[\"']?\s{0,8}[:=]\s{0,8})(\"[^\"]*\"|'[^']*'|[^\s\"'&,;)}\]]+)"
        ),
        "\x00kv",
    ),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://[^/\s:@]{0,256}):[^/\s@]{1,512}@"), r"\1:" + MASK + "@"),
]


def _mask_pair(match: re.Match[str]) -> str:
    key, value = match.group(1), match.group(2)
    if value[:1] in "\"'":
        return f"{key}{value[0]}{MASK}{value[0]}"
    return key + MASK


def _mask_header(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2) or ''}{MASK}"


_FUNCTIONS = {"\x00kv": _mask_pair, "\x00auth": _mask_header}


def redact(text: str) -> str:
    """``text`` with whatever looks like a credential replaced by ``***``."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(_FUNCTIONS.get(replacement, replacement), text)
    return text


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact(value)
    if depth > 5:
        return redact(repr(value))
    if isinstance(value, dict):
        return {str(k): _redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class RedactingFilter(logging.Filter):
    """Renders each record's message and masks credentials in it (a last line of defence)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return True
        record.msg, record.args = redact(message), None
        return True


# --- formatters -------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
    "context",
    *FIELDS,
}


class JsonFormatter(logging.Formatter):
    """One JSON object a line; credentials masked in every string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "pid": record.process,
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = str(value)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = _redact_value(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [job=… org=…] message``; credentials masked."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{short}={getattr(record, key)}"
            for key, short in zip(FIELDS, ("job", "org", "source", "definition"), strict=True)
            if getattr(record, key, None) is not None
        ]
        record.__dict__["context"] = f" [{' '.join(parts)}]" if parts else ""
        try:
            return redact(super().format(record))
        finally:
            record.__dict__.pop("context", None)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after setup)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


# --- setup ------------------------------------------------------------------------------


def format_for(profile: str, configured: str | None) -> LogFormat:
    """The configured format, else json in production and text in development."""
    if configured in ("json", "text"):
        return configured  # type: ignore[return-value]
    return "json" if profile == "production" else "text"


def configure(fmt: LogFormat, level: int | str = logging.INFO) -> logging.Handler:
    """Send every record of this process (root logger, uvicorn's loggers) to stderr in
    ``fmt``, with the job's context and credentials masked. Idempotent."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler._sourcecheck = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_sourcecheck", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.captureWarnings(True)  # warnings become records (logger py.warnings), not raw stderr
    # httpx logs every request at INFO: one line per HTTP probe step is noise unless debugging.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING)
    # uvicorn's loggers have handlers of their own: hand their records to ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task", "celery.redirected"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    return handler


def configure_from_settings(default_level: int | str | None = None) -> LogFormat:
    """:func:`configure` from ``SOURCECHECK_LOG_FORMAT``/``SOURCECHECK_LOG_LEVEL`` (the level
    falls back to ``default_level``, then Celery's ``--loglevel``, then INFO)."""
    from worker.settings import get_settings

    try:
        settings = get_settings()
        fmt = format_for(settings.profile, settings.log_format)
        level: int | str = (
            settings.log_level
            if "log_level" in settings.model_fields_set
            else (default_level or os.environ.get("CELERY_LOG_LEVEL") or settings.log_level)
        )
    except Exception:  # invalid settings are reported by whoever needs them; log anyway
        fmt, level = "text", default_level or logging.INFO
    configure(fmt, int(level) if isinstance(level, str) and level.isdigit() else level)
    return fmt
