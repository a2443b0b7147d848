"""What api.server relies on inside uvicorn, beyond its documented settings.

- ``AutoHTTPProtocol``: the HTTP protocol ``--http auto`` picks (httptools, else h11).
  api.server.HeadBoundProtocol wraps it because uvicorn bounds neither how long a request
  head may take nor (under httptools) how large it may be, and offers no hook between the
  socket and its parser.
- uvicorn builds a protocol with keyword arguments (``config``, ``server_state``,
  ``app_state`` and a private ``_loop``): they go to uvicorn's own protocol unread.

tests/api/test_server.py runs the API under uvicorn through this seam.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

PRIVATE_NAMES = ["uvicorn.protocols.http.auto:AutoHTTPProtocol"]


def uvicorn_http_protocol(**uvicorn_arguments: Any) -> asyncio.Protocol:
    """uvicorn's own HTTP protocol, built with the arguments uvicorn gave ours."""
    return AutoHTTPProtocol(**uvicorn_arguments)
