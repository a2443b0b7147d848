"""The protocol that bounds how long and how large a request's head may be (the command
line that serves the API with it: cli.processes.api_argv).

uvicorn bounds the connections and requests in flight (``--limit-concurrency``, 503
beyond it) and idle kept-alive connections (``--timeout-keep-alive``), but not a request
head that never ends: its default parser (httptools) takes headers of any size, and no
timer runs until a head is complete. :class:`HeadBoundProtocol` wraps uvicorn's own HTTP
protocol (``--http api.server:HeadBoundProtocol``, a class uvicorn's ``http`` setting
accepts; what it needs of uvicorn's internals is in api.seams.uvicorn) and adds both
bounds. It only sees bytes and the transport: uvicorn's protocol does the HTTP.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from api.seams.uvicorn import uvicorn_http_protocol
from api.settings import get_api_settings

HEAD_END = b"\r\n\r\n"
# After refusing a head, what the client still sends is read and dropped this long before the
# connection is closed: closed with unread bytes, it would be reset and the client might never
# read the answer.
LINGER_SECONDS = 1.0
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
HEAD_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _Transport:
    """The transport as uvicorn's protocol sees it: each write (a response) re-arms the
    wait for the next request's head."""

    def __init__(self, transport: asyncio.Transport, wrote: Any) -> None:
        self._transport = transport
        self._wrote = wrote

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)
        self._wrote()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HeadBoundProtocol(asyncio.Protocol):
    """uvicorn's HTTP protocol, with a deadline for each request head and a size bound for
    the first one of a connection.

    A head must be complete (its blank line received) within ``api_head_timeout_seconds``
    of the connection's opening, or of the last response written on it; otherwise 408 and
    the connection is closed. The first head must also fit in ``api_max_head_bytes``
    (431). Later requests on a kept-alive connection are bounded by the same deadline.
    """

    def __init__(self, **kwargs: Any) -> None:
        settings = get_api_settings()
        self._timeout = settings.api_head_timeout_seconds
        self._max_bytes = settings.api_max_head_bytes
        self._inner = uvicorn_http_protocol(**kwargs)
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, for a blank line split across reads
        self._started = False  # a byte of the awaited head arrived
        self._head_bytes: int | None = 0  # bytes of the first head so far; None once it ended
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        self._arm()
        self._inner.connection_made(cast(asyncio.Transport, _Transport(self._transport, self._rearm)))

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._timer is not None:
            seen, self._started = self._tail + data, True
            ended = HEAD_END in seen
            if self._head_bytes is not None:
                self._head_bytes = None if ended else self._head_bytes + len(data)
                if self._head_bytes is not None and self._head_bytes > self._max_bytes:
                    self._refuse(HEAD_TOO_LARGE)
                    return
            if ended:
                self._disarm()
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _arm(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._tail, self._started = b"", False
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)

    def _rearm(self) -> None:  # a response was written: the next head is awaited from now
        self._disarm()
        self._arm()

    def _expire(self) -> None:
        self._timer = None
        self._refuse(REQUEST_TIMEOUT if self._started else b"")  # an idle connection is just closed

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refuse(self, answer: bytes) -> None:
        self._disarm()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not answer:
            transport.close()
            return
        self._refused = True
        transport.write(answer)
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
