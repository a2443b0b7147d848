"""The one place the connectors rely on smbprotocol's internals: its transport.

smbprotocol opens its own TCP connection to a host name in ``Connection.connect`` (it sets
``self.transport`` to a new ``smbprotocol.transport.Tcp``). The smb connector must talk only
to the address the egress policy checked, on the ``tcp`` step's socket, with every packet
bounded, so:

- :class:`BoundedTransport` has the interface of ``Tcp`` (``connected``, ``connect``,
  ``send``, ``recv``, ``close``) on an already connected socket;
- :class:`PinnedConnection` keeps that transport whatever ``connect`` assigns.

If a release changes how ``Connection`` gets or uses its transport,
tests/connectors/test_smb.py's checks that one check opens exactly one TCP connection, and
that an oversized packet is cut off, fail.
"""

from __future__ import annotations

import socket
import struct
import threading
import uuid
from typing import Any

from smbprotocol.connection import Connection
from smbprotocol.transport import DirectTCPPacket

# Not private, but not a documented interface either: what BoundedTransport stands in for.
PRIVATE_NAMES = [
    "smbprotocol.connection:Connection.connect",
    "smbprotocol.transport:Tcp.connect",
    "smbprotocol.transport:Tcp.send",
    "smbprotocol.transport:Tcp.recv",
    "smbprotocol.transport:Tcp.close",
    "smbprotocol.transport:DirectTCPPacket",
]

MAX_PACKET = 64 * 1024
"""Bytes of one SMB packet at most: the check asks for a 1 KiB read and listings of LISTING_BYTES."""

MAX_RECEIVED = 1024 * 1024
"""Bytes received over one check at most: a server that floods packets is cut off."""


class Oversized(Exception):
    """The server sent more than this module reads (a packet, a session)."""


class Smb1Answer(Exception):
    """The server answered in SMB1, which smbprotocol does not speak (and nobody should)."""


class BoundedTransport:
    """smbprotocol's transport interface (``connected``, ``connect``, ``send``, ``recv``,
    ``close``, as :class:`smbprotocol.transport.Tcp` has it) on an already connected socket,
    with every packet and the whole session bounded."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self.sock = sock
        self.connected = True
        self.received = 0
        self.lock = threading.Lock()

    def connect(self) -> None:
        """Nothing to do: the ``tcp`` step connected the socket."""

    def send(self, message: Any) -> None:
        """One message (bytes, or an SMB2 transform header when encrypted) in its Direct TCP frame."""
        packet = DirectTCPPacket()
        packet["smb2_message"] = message
        self.sock.sendall(packet.pack())

    def recv(self, timeout: float) -> bytes:
        """The next packet (``b""`` once the connection is closed). smbprotocol's receive thread
        waits here; ``timeout`` is its keep-alive interval, which a check never reaches."""
        head = self._exactly(4)
        if not head:
            return b""
        (size,) = struct.unpack(">L", head)
        if size > MAX_PACKET:
            raise Oversized(f"a packet of {size} bytes")
        packet = self._exactly(size)
        if packet[:4] == b"\xffSMB":
            raise Smb1Answer()
        return packet

    def _exactly(self, size: int) -> bytes:
        chunks: list[bytes] = []
        left = size
        while left:
            try:
                chunk = self.sock.recv(left)
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return b""
            chunks.append(chunk)
            left -= len(chunk)
            self.received += len(chunk)
            if self.received > MAX_RECEIVED:
                raise Oversized(f"more than {MAX_RECEIVED // 1024} KiB in one check")
        return b"".join(chunks)

    def shutdown(self) -> None:
        """End every wait on the socket (the receive thread's, a send), from any thread."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        with self.lock:
            if self.connected:
                self.connected = False
                self.shutdown()
                self.sock.close()


class PinnedConnection(Connection):  # type: ignore[misc]  # smbprotocol has no type hints
    """smbprotocol's Connection on a :class:`BoundedTransport`.

    ``Connection.connect`` sets ``transport`` to a new Tcp connection to ``server_name``; this
    class keeps its own instead, so the only connection ever used is the ``tcp`` step's."""

    def __init__(self, transport: BoundedTransport, ip: str, port: int) -> None:
        self.bounded = transport
        # Signing always: an unsigned session can be tampered with or relayed.
        super().__init__(uuid.uuid4(), ip, port, require_signing=True)

    @property
    def transport(self) -> BoundedTransport:
        return self.bounded

    @transport.setter
    def transport(self, value: object) -> None:
        pass  # the Tcp that connect() makes (it connects only when asked to, which it never is)
