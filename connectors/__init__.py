"""Connectivity checks for data sources, usable from plain Python (no queue, no web).

>>> import asyncio
>>> from connectors import get_connector, run_check
>>> pg = get_connector("postgres")
>>> config = pg.parse_config({"host": "db.example.com", "user": "reader", ...})
>>> result = asyncio.run(run_check(pg, config, timeout=5))
"""

from connectors.base import CheckResult, CheckStatus, Connector, ConnectorConfig, Probe, Secret, run_check
from connectors.errors import FailureType, InvalidConfiguration, ProbeFailure, UnknownConnector
from connectors.registry import all_connectors, get_connector

__all__ = [
    "CheckResult",
    "CheckStatus",
    "Connector",
    "ConnectorConfig",
    "FailureType",
    "InvalidConfiguration",
    "Probe",
    "ProbeFailure",
    "Secret",
    "UnknownConnector",
    "all_connectors",
    "get_connector",
    "run_check",
]
