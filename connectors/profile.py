"""The service profile a check runs under: ``development`` or ``production``.

Some defaults of a connector depend on it: in production the ``postgres`` and ``mysql``
connectors require TLS unless the source's ``ssl_mode`` says otherwise, and messages name
no non-public address (:meth:`connectors.egress.EgressPolicy.may_name`). The service sets
the profile per check from its settings (``worker.settings``) through
``run_check(..., profile=...)``, as it does the egress policy; connectors read it with
:func:`current_profile` and never import the service's settings. A check nobody sets a
profile for (``connectors`` used from a plain Python shell) runs in ``development``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

Profile = Literal["development", "production"]

DEFAULT_PROFILE: Profile = "development"
_current: ContextVar[Profile] = ContextVar("sourcecheck_profile", default=DEFAULT_PROFILE)


def current_profile() -> Profile:
    """The profile of the check running in this task (``run_check`` sets it)."""
    return _current.get()


def is_production() -> bool:
    return _current.get() == "production"


@contextmanager
def using(profile: Profile | None) -> Iterator[Profile]:
    """Make ``profile`` the current one inside the block (None: keep the current one)."""
    if profile is None:
        yield _current.get()
        return
    token = _current.set(profile)
    try:
        yield profile
    finally:
        _current.reset(token)
