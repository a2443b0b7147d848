"""Field types that many connectors' configurations share: a host, a port, a URL, PEM certificates.

Validated at parse time, so a bad paste is a configuration error (422 naming the field),
never a failed check, and never smuggled into a DSN or URL.
"""

from __future__ import annotations

import re
import ssl
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, GetJsonSchemaHandler, HttpUrl
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# Whitespace, C0/C1 controls and URL/DSN punctuation: a value holding any of them is a URL,
# a user@host, a libpq multi-host list ("a,b") or an injection, not the bare name asked for.
_BAD_HOST = re.compile(r"[\s\x00-\x1f\x7f-\x9f/@?#,;\\\[\]'\"=]")
# "%" only as the zone of an IPv6 literal (fe80::1%eth0), never percent-encoding in a name.
_SCOPED_IPV6 = re.compile(r"[0-9A-Fa-f:.]+%[A-Za-z0-9_.-]+")


def _check_host(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if _BAD_HOST.search(value) or ("%" in value and not _SCOPED_IPV6.fullmatch(value)):
        raise ValueError("must be a bare host name or IP address (no scheme, user, path, list or spaces)")
    if value.count(":") == 1:  # IPv6 literals have at least two colons; one means "host:port"
        raise ValueError("put the port in the port field, not in the host")
    return value


def _check_pem(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None  # forms send "" for an empty field
    if "-----BEGIN CERTIFICATE-----" not in value:
        raise ValueError("must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)")
    try:
        ssl.create_default_context(cadata=value)
    except (ssl.SSLError, ValueError):
        raise ValueError("is not a valid PEM certificate") from None
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _check_name(value: str) -> str:
    # A NUL ends a string in the wire protocols (PostgreSQL would log in to database "rea" for
    # "rea\0der"), and a line break in a name is a bad paste: neither is the name asked for.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


_URL_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def no_whitespace(value: Any) -> Any:
    """Refuse a string holding whitespace, a control character or a backslash (run before parsing).

    The URL parser silently drops surrounding spaces, controls and inner tabs/newlines, and
    reads a backslash as a slash: a pasted URL holding any of them would be checked as a
    different URL than the one shown (and than another parser would see)."""
    if isinstance(value, str) and any(c.isspace() for c in value):
        raise ValueError("must not contain whitespace")
    if isinstance(value, str) and _URL_CONTROL.search(value):
        raise ValueError("must not contain control characters or backslashes")
    return value


def no_userinfo(url: HttpUrl) -> HttpUrl:
    """Refuse a URL with a user name or password: it would be stored and shown in clear."""
    if url.username is not None or url.password is not None:
        raise ValueError("must not contain a user name or password: put credentials in auth")
    return url


Host = Annotated[str, Field(max_length=253), AfterValidator(_check_host)]
"""A bare host name or IP address: no scheme, port, user, path, list or whitespace."""

Port = Annotated[int, Field(ge=1, le=65535)]

Name = Annotated[str, AfterValidator(_check_name)]
"""A database, user or schema name: any text but control characters (lengths are the field's)."""

PemCertificates = Annotated[str | None, AfterValidator(_check_pem)]
"""One or more PEM certificates to trust (a private CA or a self-signed server); "" is None."""

WebUrl = Annotated[HttpUrl, BeforeValidator(no_whitespace), AfterValidator(no_userinfo)]
"""An http:// or https:// URL with no whitespace, control characters or credentials in it."""


DESTINATION_KEY = "x-destination"
"""JSON Schema keyword of a field that decides where a connection goes (see :data:`Destination`)."""


class _DestinationMarker:
    """Marks a field ``"x-destination": true`` in the JSON Schema (pydantic's public hook)."""

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema[DESTINATION_KEY] = True
        return schema


Destination = _DestinationMarker()
"""Annotate a field that decides where the connection goes (host, port, URL, token endpoint,
region...): ``host: Annotated[Host, Destination]``. When a change to the stored source moves
any of them, the API reuses no stored secret (see ``api.sources.check_destination``)."""

DestinationHost = Annotated[Host, Destination]
DestinationPort = Annotated[Port, Destination]
