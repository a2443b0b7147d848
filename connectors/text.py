"""Text that comes from a server, and secrets in the messages made of it.

Everything a source sends back (an OAuth ``error_description``, a driver's error message,
an SSH banner, a body) is untrusted and of any length. Every connector cuts it with
:func:`server_text` before it parses it or puts it in a message, and every regular
expression applied to it runs in linear time, so a megabyte of hostile text costs nothing.

:func:`mask_secrets` takes a configuration's secrets out of a message without telling the
reader where they were: see :data:`MIN_DISTINCT_SECRET`; :func:`redacted_traceback` out of a
traceback.
"""

from __future__ import annotations

import re
import traceback
import urllib.parse
from collections.abc import Iterable

MASK = "**********"

MAX_SERVER_TEXT = 4096
"""Characters of server-supplied text (an error description, a driver's message, a banner,
a body) kept before it is parsed; the rest is dropped. Messages quote a few hundred at most."""

MIN_DISTINCT_SECRET = 8
"""Length from which a secret is told apart from ordinary text. A secret this long is masked
wherever it appears, inside other text too. A shorter one is masked only where it stands as
a token of its own (quoted, after ``=`` or ``:``, in a URL's userinfo, a whole word); a
message in which it still appears inside other text (the password ``x`` in
``nonexistent.invalid``) is replaced as a whole by :data:`WITHHELD`, so the message is
neither mangled nor a clue to the secret."""

WITHHELD = "The message was withheld because it may contain a secret of the configuration."
"""What a message becomes when a short secret appears in it where it cannot be masked."""


def server_text(text: str | bytes | None, limit: int = MAX_SERVER_TEXT) -> str:
    """``text`` cut to ``limit`` characters (bytes are decoded, undecodable ones replaced):
    what every parser of server-supplied text works on."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        # 4 bytes at most per character: enough bytes for ``limit`` characters.
        return text[: limit * 4].decode("utf-8", errors="replace")[:limit]
    return text[:limit]


def secret_forms(secret: str) -> set[str]:
    """``secret`` as a driver may echo it: as is, and percent-encoded as in a connection
    URL (``postgresql://user:p%40ss@host``)."""
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret), urllib.parse.quote(secret)}


def _mask_tokens(text: str, forms: list[str]) -> str:
    """``text`` with each occurrence of one of ``forms`` (longest first) that no letter, digit
    or ``_`` touches masked, masks already in place left alone. Literals between fixed-width
    lookarounds: linear."""
    alternatives = "|".join(re.escape(form) for form in forms)
    return re.sub(rf"{re.escape(MASK)}|(?<!\w)(?:{alternatives})(?!\w)", MASK, text)


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (in every form of :func:`secret_forms`) masked as
    :data:`MIN_DISTINCT_SECRET` says, or :data:`WITHHELD` when a short one cannot be."""
    forms = sorted({form for secret in secrets if secret for form in secret_forms(secret)}, key=len, reverse=True)
    if not text or not forms:
        return text
    for form in forms:
        if len(form) >= MIN_DISTINCT_SECRET:
            text = text.replace(form, MASK)
    short = [form for form in forms if len(form) < MIN_DISTINCT_SECRET]
    if short:
        text = _mask_tokens(text, short)
        rest = text.replace(MASK, "\0")  # what is not a mask: a short secret must not remain in it
        if any(form in rest for form in short):
            return WITHHELD
    return text


def redacted_traceback(exc: BaseException, secrets: Iterable[str]) -> str:
    """``exc``'s traceback as Python prints it, chained and grouped exceptions included, each
    exception's message cut (:func:`server_text`) and masked (:func:`mask_secrets`). The frames
    name code, never a value (no locals), so only the messages can hold a secret."""
    secrets = list(secrets)
    parts: list[str] = []
    seen: set[int] = set()

    def add(error: BaseException) -> None:
        seen.add(id(error))
        cause, context = error.__cause__, None if error.__suppress_context__ else error.__context__
        if cause is not None and id(cause) not in seen:
            add(cause)
            parts.append("\nThe above exception was the direct cause of the following exception:\n\n")
        elif context is not None and id(context) not in seen:
            add(context)
            parts.append("\nDuring handling of the above exception, another exception occurred:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(error.__traceback__))
        try:
            message = mask_secrets(server_text(str(error)), secrets)
        except Exception:  # a broken __str__ must not hide the traceback
            message = "<the message could not be read>"
        kind = type(error)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        parts.append(f"{name}: {message}\n" if message else f"{name}\n")
        for inner in error.exceptions if isinstance(error, BaseExceptionGroup) else ():
            if id(inner) not in seen:
                parts.append("\nInside the group above:\n")
                add(inner)

    add(exc)
    return "".join(parts)
