"""The smb connector against a real Samba (tests/servers/smb.py): a login and a first-byte read,
each refusal Samba gives (password, guest, share, folder, file), and hostile servers of its own
that answer with what no SMB 2/3 server sends."""

from __future__ import annotations

import asyncio
import inspect
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from smbprotocol.connection import Connection

from connectors import get_connector, run_check
from connectors.base import CheckResult
from connectors.errors import FailureType, WarningCode
from connectors.smb import MAX_NAME
from tests.helpers import failed_at
from tests.servers.smb import CROWD, LONG_NAME, REPORT, Samba
from tests.servers.tcp import HostPort

STEPS = ["resolve", "tcp", "negotiate", "authenticate", "access"]
WRONG = "Wrong-Secret-7d41c9"


def _check(config: dict[str, Any], timeout: float = 10) -> CheckResult:
    smb = get_connector("smb")
    return asyncio.run(run_check(smb, smb.parse_config(config), timeout=timeout))


def _succeeded(result: CheckResult) -> dict[str, str | None]:
    assert result.status == "succeeded", result
    assert [s.name for s in result.steps] == STEPS
    return {s.name: s.message for s in result.steps}


def _failed(result: CheckResult, type: FailureType, step: str, fields: set[str]) -> str:
    assert [s.name for s in result.steps] == STEPS
    return failed_at(result, type, step, fields)


def test_a_login_lists_the_folder_and_reads_its_first_file(smb_server: Samba) -> None:
    result = _check(smb_server.config())
    messages = _succeeded(result)
    assert str(messages["negotiate"]).startswith("SMB 3.1.1")
    assert "signed session" in str(messages["authenticate"])
    assert f"read {len(REPORT)} bytes of its first file '2025.txt'" in str(messages["access"])
    assert not result.warnings


def test_a_domain_and_backslashes_in_the_folder_are_understood(smb_server: Samba) -> None:
    result = _check(smb_server.config(domain="SOURCECHECK", folder="\\reports\\"))
    assert "'2025.txt'" in str(_succeeded(result)["access"])


def test_required_encryption_gives_an_encrypted_session(smb_server: Samba) -> None:
    messages = _succeeded(_check(smb_server.config(require_encryption=True)))
    assert "encrypted session" in str(messages["authenticate"])
    assert "'2025.txt'" in str(messages["access"])


def test_a_wrong_password_fails_naming_the_credentials(smb_server: Samba) -> None:
    result = _check(smb_server.config(password=WRONG))
    message = _failed(result, FailureType.AUTHENTICATION_FAILED, "authenticate", {"username", "password", "domain"})
    assert smb_server.user in message and WRONG not in message
    assert result.failure is not None and "password" in result.failure.hint


def test_an_unknown_user_mapped_to_guest_is_refused(smb_server: Samba) -> None:
    result = _check(smb_server.config(username="nobody-here"))
    message = _failed(result, FailureType.AUTHENTICATION_FAILED, "authenticate", {"username", "password", "domain"})
    assert "guest" in message


def test_a_missing_share_is_not_found_naming_share(smb_server: Samba) -> None:
    message = _failed(_check(smb_server.config(share="nope")), FailureType.NOT_FOUND, "access", {"share"})
    assert "no share 'nope'" in message


def test_a_share_the_user_may_not_use_is_permission_denied(smb_server: Samba) -> None:
    result = _check(smb_server.config(share="denied", folder=""))
    message = _failed(result, FailureType.AUTHORIZATION_FAILED, "access", {"share", "username"})
    assert "'denied'" in message


def test_a_missing_folder_is_not_found_naming_folder(smb_server: Samba) -> None:
    message = _failed(_check(smb_server.config(folder="no/such")), FailureType.NOT_FOUND, "access", {"folder"})
    assert "no folder 'no/such'" in message


def test_a_file_given_as_folder_is_not_found_naming_folder(smb_server: Samba) -> None:
    message = _failed(_check(smb_server.config(folder="reports/2025.txt")), FailureType.NOT_FOUND, "access", {"folder"})
    assert "is a file, not a folder" in message


def test_a_folder_that_may_not_be_listed_is_permission_denied(smb_server: Samba) -> None:
    message = _failed(
        _check(smb_server.config(folder="locked")), FailureType.AUTHORIZATION_FAILED, "access", {"folder"}
    )
    assert "may not list the folder 'locked'" in message


def test_a_file_that_may_not_be_read_fails_the_first_byte_read(smb_server: Samba) -> None:
    message = _failed(
        _check(smb_server.config(folder="sealed")), FailureType.AUTHORIZATION_FAILED, "access", {"folder"}
    )
    assert "not read its file 'sealed.txt'" in message


def test_an_empty_folder_succeeds_with_an_empty_location_warning(smb_server: Samba) -> None:
    result = _check(smb_server.config(folder="empty"))
    assert "empty" in str(_succeeded(result)["access"])
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]


def test_a_folder_of_subfolders_only_is_read_within_the_listing_bound(smb_server: Samba) -> None:
    result = _check(smb_server.config(folder="crowd"))
    message = str(_succeeded(result)["access"])
    seen = int(message.split("first ")[1].split(" entries")[0])
    assert 0 < seen < CROWD  # stopped after MAX_LISTINGS listings, not at the folder's end
    assert not result.warnings  # subfolders: not empty


def test_a_long_file_name_is_cut_in_the_message(smb_server: Samba) -> None:
    message = str(_succeeded(_check(smb_server.config(folder="long")))["access"])
    assert "n" * MAX_NAME in message and LONG_NAME not in message


def test_a_closed_port_is_connection_refused(closed_port: int) -> None:
    config = {"host": "127.0.0.1", "port": closed_port, "share": "docs", "username": "u", "password": WRONG}
    result = _check(config)
    assert result.failure is not None and result.failure.type == FailureType.CONNECTION_REFUSED


def test_a_silent_server_times_out_in_negotiate(hung_server: HostPort) -> None:
    config = {"host": hung_server.host, "port": hung_server.port, "share": "docs", "username": "u", "password": WRONG}
    result = _check(config, timeout=1.5)
    assert result.failure is not None and result.failure.type == FailureType.TIMEOUT, result
    assert [s.status for s in result.steps][2] == "failed"
    assert result.duration_ms < 3000


@dataclass
class Hostile:
    port: int
    held: list[socket.socket]


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Iterator[Hostile]:
    """A server that answers every connection with ``request.param`` and then holds it."""
    payload: bytes = request.param
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            try:
                conn.recv(65536)
                conn.sendall(payload)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    yield Hostile(int(listener.getsockname()[1]), held)
    listener.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize(
    ("hostile", "said"),
    [
        (b"\xff\xff\xff\xf0" + b"\0" * 1024, "a packet of 4294967280 bytes"),
        (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "a packet of"),
        (struct.pack(">L", 36) + b"\xffSMB" + b"\0" * 32, "only SMB1"),
        (struct.pack(">L", 8) + b"\xfeSMB\0\0\0\0", "did not answer like an SMB 2/3 server"),
    ],
    indirect=["hostile"],
    ids=["huge-length", "http", "smb1", "garbled"],
)
def test_a_hostile_answer_is_bounded_and_named(hostile: Hostile, said: str) -> None:
    config = {"host": "127.0.0.1", "port": hostile.port, "share": "docs", "username": "u", "password": WRONG}
    result = _check(config, timeout=5)
    message = _failed(result, FailureType.UNEXPECTED_RESPONSE, "negotiate", {"host", "port"})
    assert said in message
    assert result.duration_ms < 4000
    # smbprotocol spoke on the tcp step's connection: it never opened one of its own.
    assert len(hostile.held) == 1


def test_smbprotocol_still_sets_its_transport_in_connect() -> None:
    """connectors.seams.smbprotocol.PinnedConnection relies on Connection.connect assigning
    ``self.transport`` (which it ignores): a release that gets its transport another way fails here."""
    source = inspect.getsource(Connection.connect)
    assert "self.transport = Tcp(" in source
