"""Finds connectors through the ``sourcecheck.connectors`` entry-point group.

The built-in connectors are declared in this project's ``pyproject.toml`` exactly as a
third-party package declares its own, so there is one way in::

    [project.entry-points."sourcecheck.connectors"]
    postgres = "connectors.postgres:PostgresConnector"
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from connectors.base import Connector
from connectors.errors import UnknownConnector

GROUP = "sourcecheck.connectors"


@cache
def all_connectors() -> dict[str, Connector]:
    """Every registered connector by name, loaded once per process."""
    found: dict[str, Connector] = {}
    for ep in entry_points(group=GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise TypeError(f"entry point {ep.name!r} of {GROUP} is not a Connector subclass: {cls!r}")
        connector = cls()
        if connector.name != ep.name:
            raise TypeError(f"entry point {ep.name!r} loads connector named {connector.name!r}")
        found[ep.name] = connector
    return dict(sorted(found.items()))


def get_connector(name: str) -> Connector:
    """The connector called ``name``; raises UnknownConnector naming the known ones."""
    connectors = all_connectors()
    try:
        return connectors[name]
    except KeyError:
        raise UnknownConnector(name, list(connectors)) from None
