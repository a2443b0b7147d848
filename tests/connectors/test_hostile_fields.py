"""Hostile values in the fields that say where to connect, for every registered connector.

Every host-like field (a bare host, a URL, an endpoint, a site) must refuse whitespace,
control characters and URL/DSN punctuation at parse time (a 422 naming the field), so no
value is smuggled into a DSN, a URL or a request line, and nothing is checked other than
what the user sees. Fields are found by name in each connector's schema, so a new
connector's ``host``/``*_url`` fields are covered without being listed here.
"""

from __future__ import annotations

import copy
import re
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from connectors import fields, saas, sharepoint
from connectors.base import Connector
from connectors.errors import InvalidConfiguration
from connectors.registry import all_connectors

CONNECTORS = all_connectors()

BAD_HOSTS = [
    "",
    "exa mple.com",
    "example.com\n",
    "exam\x00ple.com",
    "exam\x01ple.com",
    "exam\x7fple.com",
    "exam\x85ple.com",
    "exa\tmple.com",
    "example.com\r\nX-Injected: 1",
    "user@example.com",
    "example.com/path",
    "example.com?x=1",
    "example.com#f",
    "a.example.com,b.example.com",
    "example.com;x",
    "host=evil dbname=x",
    "a'b",
    'a"b',
    "a\\b",
    "ex%41mple.com",
    "%65xample.com",
    "fe80::1%eth0/x",
    "example.com:5432",
    "[::1]",
    "x" * 254,
]
BAD_URLS = [
    "http://exa mple.com/",
    "http://example.com/\n",
    "\thttp://example.com/",
    "http://example.com/\x00",
    "\x00http://example.com/",
    "http://exam\x00ple.com/",
    "http://exam\x01ple.com/",
    "http://example.com/\x7f",
    "http://exam\x85ple.com/",
    "http://example.com/\r\nX: y",
    "http://user:pw@example.com/",
    "http://user@example.com/",
    "http://example.com\\@evil.com/",
    "javascript:alert(1)",
    "file:///etc/passwd",
    "gopher://example.com/",
    "ftp://example.com/",
    "http://[::1/",
    "http://ex%00ample.com/",
    "not a url",
]
HOST_FIELD = re.compile(r"(^|_)host$")
URL_FIELD = re.compile(r"url$|endpoint")


def _fields(connector: Connector) -> list[tuple[str, list[str]]]:
    """(dotted path, hostile values) for each host-like field, ssh_tunnel.host included."""
    found: list[tuple[str, list[str]]] = []
    for name in connector.config_model.model_fields:
        if HOST_FIELD.search(name):
            found.append((name, BAD_HOSTS))
        elif URL_FIELD.search(name):
            found.append((name, BAD_URLS))
        elif name == "ssh_tunnel":
            found.append(("ssh_tunnel.host", BAD_HOSTS))
    return found


CASES = [(c.name, path, value) for c in CONNECTORS.values() for path, values in _fields(c) for value in values]


def _with(data: dict[str, Any], path: str, value: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    if path == "ssh_tunnel.host":
        data["ssh_tunnel"] = {"host": value, "user": "tunnel", "auth": {"type": "password", "password": "pw"}}
    else:
        data[path] = value
    return data


def test_every_network_connector_has_a_host_like_field() -> None:
    without = [c.name for c in CONNECTORS.values() if not _fields(c) and c.name not in ("faulty",)]
    assert without == [], "a connector without a host/url field: add its field's name to HOST_FIELD or URL_FIELD"


@pytest.mark.parametrize(("name", "path", "value"), CASES, ids=[f"{n}-{p}-{i}" for i, (n, p, _) in enumerate(CASES)])
def test_a_hostile_host_or_url_is_refused_naming_its_field(name: str, path: str, value: str) -> None:
    connector = CONNECTORS[name]
    base = connector.example_config("db.example.com", 5432)
    if path.endswith("host"):
        good = "db.example.com"
    elif path in base:
        good = base[path]
    else:  # an optional URL (a sitemap) on the same site as the required one
        good = base["url"] + "sitemap.xml" if "url" in base else "https://db.example.com/x"
    connector.parse_config(_with(base, path, good))  # the field accepts a good value: the refusal is the value's
    with pytest.raises(InvalidConfiguration) as caught:
        connector.parse_config(_with(base, path, value))
    assert any(e.field == path or e.field.startswith(path + ".") for e in caught.value.errors), caught.value.errors
    if value:  # the value is never echoed back
        assert value not in str(caught.value)


@pytest.mark.parametrize("name", ["postgres", "mysql"])
@pytest.mark.parametrize("field", ["database", "user"])
@pytest.mark.parametrize("value", ["rea\x00der", "reader\n", "rea\x1bder"])
def test_database_names_refuse_control_characters(name: str, field: str, value: str) -> None:
    """A NUL truncates a name on the wire: PostgreSQL would be asked for database "rea"."""
    connector = CONNECTORS[name]
    data = connector.example_config("db.example.com", 5432) | {field: value}
    with pytest.raises(InvalidConfiguration) as caught:
        connector.parse_config(data)
    assert [e.field for e in caught.value.errors] == [field]


# --- structure: every host-like field, nested ones included, uses a vetted validator -------

VETTED = {fields._check_host, saas._check_base_url, fields.no_whitespace, sharepoint._site}
"""fields.Host, saas.BaseUrl, the HttpUrl fields of http/s3/website, sharepoint's site."""
HOST_LIKE = re.compile(r"(^|_)(host|url|site)$|endpoint")


def _validators(annotation: Any) -> set[Any]:
    found: set[Any] = set()
    todo = [annotation]
    while todo:
        current = todo.pop()
        if typing.get_origin(current) is typing.Annotated:
            found |= {getattr(m, "func", None) for m in current.__metadata__}
        todo += list(typing.get_args(current))
    return found


def _models(annotation: Any) -> list[type[BaseModel]]:
    found, todo = [], [annotation]
    while todo:
        current = todo.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            found.append(current)
        todo += list(typing.get_args(current))
    return found


def _host_like_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, set[Any]]]:
    found = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        if HOST_LIKE.search(name) and name != "host_key":
            found.append((path, _validators(info.annotation) | {getattr(m, "func", None) for m in info.metadata}))
        for nested in _models(info.annotation):
            found += _host_like_fields(nested, f"{path}.")
    return found


@pytest.mark.parametrize("name", sorted(CONNECTORS))
def test_every_host_like_field_uses_a_vetted_validator(name: str) -> None:
    fields_ = _host_like_fields(CONNECTORS[name].config_model)
    unvetted = [path for path, validators in fields_ if not validators & VETTED]
    assert unvetted == [], f"{name}: host-like fields without fields.Host, saas.BaseUrl or an equivalent: {unvetted}"
