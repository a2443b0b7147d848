"""Finds connectors through the ``sourcecheck.connectors`` entry-point group.

The built-in connectors are declared in this project's ``pyproject.toml`` exactly as a
third-party package declares its own, so there is one way in::

    [project.entry-points."sourcecheck.connectors"]
    postgres = "connectors.postgres:PostgresConnector"
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

from connectors.base import Connector
from connectors.errors import UnknownConnector

GROUP = "sourcecheck.connectors"

log = logging.getLogger(__name__)


@cache
def all_connectors() -> dict[str, Connector]:
    """Every registered connector by name, loaded once per process.

    A plugin that fails to load is logged and left out: one broken third-party package
    must not take every other connector down with it.
    """
    found: dict[str, Connector] = {}
    for ep in entry_points(group=GROUP):
        try:
            cls = ep.load()
        except Exception:
            log.exception("connector plugin %r (%s) failed to load; it is left out", ep.name, ep.value)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Connector)) or cls.name != ep.name:
            log.error("entry point %r of %s is not a Connector named %r; it is left out", ep.name, GROUP, ep.name)
            continue
        found[ep.name] = cls()
    return dict(sorted(found.items()))


def get_connector(name: str) -> Connector:
    """The connector called ``name``; raises UnknownConnector naming the known ones."""
    connectors = all_connectors()
    try:
        return connectors[name]
    except KeyError:
        raise UnknownConnector(name, list(connectors)) from None
