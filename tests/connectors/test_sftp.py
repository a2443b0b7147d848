"""The ``sftp`` connector against a real SSH/SFTP server (tests/servers/ssh.py) and TCP fakes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

import pytest

from connectors.base import FIRST_BYTES, MASK, CheckResult, CheckStatus, Probe, StepStatus
from connectors.errors import FailureType, InvalidConfiguration, ProbeFailure, WarningCode
from connectors.registry import get_connector
from connectors.sftp import MAX_LISTED
from tests import helpers
from tests.helpers import step
from tests.servers.ssh import SshServer
from tests.servers.tcp import HostPort


async def check(data: dict[str, Any], timeout: float = 10.0) -> CheckResult:
    return await helpers.check("sftp", data, timeout)


SFTP = get_connector("sftp")
STEPS = ["resolve", "tcp", "ssh", "authenticate", "access"]


def statuses(result: CheckResult) -> dict[str, str]:
    return {s.name: s.status.value for s in result.steps}


def failure(result: CheckResult) -> Any:
    assert result.status == CheckStatus.FAILED, result
    assert result.failure is not None
    return result.failure


def key_body(pem: str) -> str:
    """A line from inside a private key: what would show if any of the key leaked."""
    return pem.strip().splitlines()[1]


def assert_no_secret(result: CheckResult, server: SshServer) -> None:
    text = json.dumps(asdict(result), default=str) + repr(result)
    for secret in (server.password, server.passphrase, key_body(server.private_key), key_body(server.encrypted_key)):
        assert secret not in text


# --- success ------------------------------------------------------------------------------------


async def test_a_password_login_reads_the_folder_with_every_step_in_order(ssh_server: SshServer) -> None:
    result = await check(ssh_server.sftp_config())

    assert result.status == CheckStatus.SUCCEEDED, result
    assert [s.name for s in result.steps] == STEPS
    assert all(s.status == StepStatus.SUCCEEDED for s in result.steps)
    # Not pinned: the fingerprint is reported so it can be pinned.
    assert ssh_server.host_fingerprint in step(result, "ssh").message
    assert "not pinned" in step(result, "ssh").message
    assert "with a password" in step(result, "authenticate").message
    assert step(result, "access").message == (
        "Folder '/data' is readable (4 entries; read the first 14 bytes of 'a.csv')"
    )
    assert [w.code for w in result.warnings] == [WarningCode.UNPINNED_HOST_KEY]  # and nothing else
    assert_no_secret(result, ssh_server)


async def test_a_private_key_login_with_the_host_key_pinned_succeeds(ssh_server: SshServer) -> None:
    result = await check(ssh_server.sftp_config(auth=ssh_server.key_auth(), host_key=ssh_server.host_key))

    assert result.status == CheckStatus.SUCCEEDED, result
    assert "matches the pinned host_key" in step(result, "ssh").message
    assert "with the private key ssh-ed25519 SHA256:" in step(result, "authenticate").message
    assert_no_secret(result, ssh_server)


async def test_an_encrypted_key_with_its_passphrase_and_a_pinned_fingerprint_succeeds(ssh_server: SshServer) -> None:
    attempts = len(ssh_server.auth_attempts)
    config = ssh_server.sftp_config(auth=ssh_server.key_auth(encrypted=True), host_key=ssh_server.host_fingerprint)
    result = await check(config)

    assert result.status == CheckStatus.SUCCEEDED, result
    assert "matches the pinned host_key" in step(result, "ssh").message
    # The key, really (a public key is offered, then signed with: two calls on the server).
    assert set(ssh_server.auth_attempts[attempts:]) == {(ssh_server.user, "publickey")}
    assert_no_secret(result, ssh_server)


async def test_a_known_hosts_line_is_accepted_as_the_pin(ssh_server: SshServer) -> None:
    line = f"[{ssh_server.host}]:{ssh_server.port} {ssh_server.host_key}"  # as ssh-keyscan -p prints it
    result = await check(ssh_server.sftp_config(host_key=line))

    assert result.status == CheckStatus.SUCCEEDED, result


async def test_an_empty_folder_is_readable_with_an_empty_location_warning(ssh_server: SshServer) -> None:
    result = await check(ssh_server.sftp_config(path="/empty", host_key=ssh_server.host_key))  # pinned: one warning

    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "access").message == "Folder '/empty' is readable (0 entries, no files in it)"
    assert [w.code for w in result.warnings] == [WarningCode.EMPTY_LOCATION]
    assert result.warnings[0].message == "Folder '/empty' has no file (0 entries)"
    assert "path" in result.warnings[0].hint


async def test_only_the_first_bytes_of_the_first_file_are_read(ssh_server: SshServer) -> None:
    result = await check(ssh_server.sftp_config(path="/big"))

    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "access").message == (
        f"Folder '/big' is readable (1 entries; read the first {FIRST_BYTES} bytes of 'large.bin')"
    )


async def test_a_huge_folder_is_read_only_up_to_the_listing_bound(ssh_server: SshServer) -> None:
    # 1100 subfolders, no file; pinned, so the empty location is the only warning
    result = await check(ssh_server.sftp_config(path="/many", host_key=ssh_server.host_key))

    assert result.status == CheckStatus.SUCCEEDED, result
    assert step(result, "access").message == f"Folder '/many' is readable ({MAX_LISTED}+ entries, no files in it)"
    assert result.warnings[0].message == (
        f"Folder '/many' has no file among the first {MAX_LISTED} entries ({MAX_LISTED}+ entries)"
    )


# --- authentication -----------------------------------------------------------------------------


async def test_a_wrong_password_fails_authentication_naming_user_and_server(ssh_server: SshServer) -> None:
    wrong = "wrong-" + ssh_server.password
    result = await check(ssh_server.sftp_config(auth=ssh_server.password_auth(wrong)))

    assert failure(result).type == FailureType.AUTHENTICATION_FAILED
    assert failure(result).message == (
        f"SSH authentication failed for user '{ssh_server.user}' on {ssh_server.host}:{ssh_server.port}"
    )
    assert failure(result).retryable is False
    assert statuses(result) == {
        "resolve": "succeeded",
        "tcp": "succeeded",
        "ssh": "succeeded",
        "authenticate": "failed",
        "access": "skipped",
    }
    assert wrong not in json.dumps(asdict(result))
    assert_no_secret(result, ssh_server)


async def test_a_key_the_server_does_not_know_fails_authentication(ssh_server: SshServer) -> None:
    import asyncssh

    stranger = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()
    result = await check(ssh_server.sftp_config(auth={"type": "private_key", "private_key": stranger}))

    assert failure(result).type == FailureType.AUTHENTICATION_FAILED
    assert "authorized_keys" in failure(result).hint
    assert key_body(stranger) not in json.dumps(asdict(result))


async def test_a_wrong_passphrase_fails_authentication_without_trying_the_key(ssh_server: SshServer) -> None:
    attempts = len(ssh_server.auth_attempts)
    auth = {**ssh_server.key_auth(encrypted=True), "passphrase": "not-the-passphrase"}
    result = await check(ssh_server.sftp_config(auth=auth))

    assert failure(result).type == FailureType.AUTHENTICATION_FAILED
    assert "the passphrase does not decrypt the private key" in failure(result).message
    assert "passphrase" in failure(result).hint
    assert ssh_server.auth_attempts[attempts:] == []
    assert "not-the-passphrase" not in json.dumps(asdict(result))


async def test_the_connector_itself_keeps_the_password_out_of_its_failure(ssh_server: SshServer) -> None:
    # Not only run_check's scrubbing: the ProbeFailure is clean as raised.
    wrong = "wrong-" + ssh_server.password
    probe = Probe(SFTP.steps, deadline=time.monotonic() + 10)
    with pytest.raises(ProbeFailure) as caught:
        await SFTP.check(SFTP.parse_config(ssh_server.sftp_config(auth=ssh_server.password_auth(wrong))), probe)
    text = caught.value.message + caught.value.hint + repr([s.message for s in probe.steps])
    assert wrong not in text and ssh_server.password not in text


# --- the host key -------------------------------------------------------------------------------


async def test_a_host_key_that_does_not_match_the_pin_fails_before_any_credential_is_sent(
    ssh_server: SshServer,
) -> None:
    attempts = len(ssh_server.auth_attempts)
    result = await check(ssh_server.sftp_config(host_key=ssh_server.other_host_key))

    assert failure(result).type == FailureType.UNEXPECTED_RESPONSE
    assert "the SSH server's host key does not match the pinned key (possible man-in-the-middle)" in (
        failure(result).message.replace("The SSH", "the SSH")
    )
    assert ssh_server.host_fingerprint in failure(result).message  # what it presented instead
    assert "No credential was sent" in failure(result).hint
    assert failure(result).retryable is False
    assert step(result, "ssh").status == StepStatus.FAILED
    assert step(result, "authenticate").status == StepStatus.SKIPPED
    assert ssh_server.auth_attempts[attempts:] == []  # the password never left


async def test_a_wrong_fingerprint_pin_fails_the_same_way(ssh_server: SshServer) -> None:
    result = await check(ssh_server.sftp_config(host_key="SHA256:" + "A" * 43))

    assert failure(result).type == FailureType.UNEXPECTED_RESPONSE
    assert "possible man-in-the-middle" in failure(result).message


# --- the folder ---------------------------------------------------------------------------------


async def test_a_missing_folder_is_not_found(ssh_server: SshServer) -> None:
    result = await check(ssh_server.sftp_config(path="/nope"))

    assert failure(result).type == FailureType.NOT_FOUND
    assert failure(result).message == "folder '/nope' does not exist"
    assert step(result, "authenticate").status == StepStatus.SUCCEEDED
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_missing_relative_folder_names_the_login_folder(ssh_server: SshServer) -> None:
    result = await check(ssh_server.sftp_config(path="incoming"))

    assert failure(result).type == FailureType.NOT_FOUND
    assert (
        failure(result).message == "folder 'incoming' does not exist (relative paths start from '/', the login folder)"
    )


async def test_a_folder_the_user_may_not_list_fails_authorization(ssh_server: SshServer) -> None:
    result = await check(ssh_server.sftp_config(path="/locked"))

    assert failure(result).type == FailureType.AUTHORIZATION_FAILED
    assert failure(result).message == f"user '{ssh_server.user}' may not list folder '/locked' (permission denied)"
    assert "read and execute permission" in failure(result).hint
    assert failure(result).fields == ["path", "user"]


async def test_a_folder_whose_files_cannot_be_read_fails_authorization(ssh_server: SshServer) -> None:
    result = await check(ssh_server.sftp_config(path="/sealed"))

    assert failure(result).type == FailureType.AUTHORIZATION_FAILED
    assert failure(result).message == (
        f"user '{ssh_server.user}' may list folder '/sealed' but not read its files ('only.csv': permission denied)"
    )
    assert failure(result).fields == ["path", "user"]
    assert step(result, "access").status == StepStatus.FAILED


async def test_a_file_instead_of_a_folder_is_not_found_with_a_clear_message(ssh_server: SshServer) -> None:
    result = await check(ssh_server.sftp_config(path="/data/a.csv"))

    assert failure(result).type == FailureType.NOT_FOUND
    assert failure(result).message == "'/data/a.csv' is a file, not a folder"
    assert "'/data'" in failure(result).hint


# --- the network --------------------------------------------------------------------------------


async def test_a_closed_port_is_connection_refused(ssh_server: SshServer, closed_port: int) -> None:
    result = await check(ssh_server.sftp_config(port=closed_port), timeout=3)

    assert failure(result).type == FailureType.CONNECTION_REFUSED
    assert [s.status.value for s in result.steps] == ["succeeded", "failed", "skipped", "skipped", "skipped"]


async def test_a_server_that_never_answers_times_out_at_the_deadline(
    ssh_server: SshServer, hung_server: HostPort
) -> None:
    started = time.monotonic()
    result = await check(ssh_server.sftp_config(host=hung_server.host, port=hung_server.port), timeout=1.5)
    elapsed = time.monotonic() - started

    assert failure(result).type == FailureType.TIMEOUT
    assert failure(result).message == "No answer within 1.5 s during step 'ssh'"
    assert step(result, "tcp").status == StepStatus.SUCCEEDED
    assert step(result, "ssh").status == StepStatus.FAILED
    assert 1.4 < elapsed < 2.5


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[[bytes], Awaitable[int]]]:
    """Starts a server that sends ``banner`` to each client and hangs up; gives its port."""
    servers: list[asyncio.Server] = []

    async def start(banner: bytes) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(banner)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()


async def test_a_server_that_is_not_ssh_is_an_unexpected_response(
    ssh_server: SshServer, fake_server: Callable[[bytes], Awaitable[int]]
) -> None:
    port = await fake_server(b"220 ftp.example.com FTP server ready\r\n")
    result = await check(ssh_server.sftp_config(port=port), timeout=3)

    assert failure(result).type == FailureType.UNEXPECTED_RESPONSE
    assert f"Nothing answered as an SSH server at 127.0.0.1:{port}" in failure(result).message
    assert step(result, "ssh").status == StepStatus.FAILED


# --- configuration ------------------------------------------------------------------------------


def test_every_field_has_a_title_a_description_and_examples() -> None:
    schema = SFTP.connection_specification()
    properties = list(schema["properties"].items())
    for model in ("SshPassword", "SshPrivateKey"):
        properties += [(f"{model}.{k}", v) for k, v in schema["$defs"][model]["properties"].items()]
    missing = [
        (name, key) for name, prop in properties for key in ("title", "description", "examples") if key not in prop
    ]
    assert not missing
    assert set(schema["required"]) == {"host", "user", "auth", "path"}
    assert schema["properties"]["port"]["default"] == 22


def test_the_schema_marks_password_private_key_and_passphrase_as_secrets() -> None:
    defs = SFTP.connection_specification()["$defs"]
    assert defs["SshPassword"]["properties"]["password"]["secret"] is True
    assert defs["SshPrivateKey"]["properties"]["private_key"]["secret"] is True
    assert all(
        branch.get("secret") or branch["type"] == "null"
        for branch in defs["SshPrivateKey"]["properties"]["passphrase"]["anyOf"]
    )
    assert "secret" not in json.dumps(SFTP.connection_specification()["properties"]["host_key"])


def test_the_config_masks_every_secret(ssh_server: SshServer) -> None:
    config = SFTP.parse_config(ssh_server.sftp_config(auth=ssh_server.key_auth(encrypted=True)))
    shown = json.dumps(config.masked()) + repr(config) + str(config)
    assert ssh_server.passphrase not in shown and key_body(ssh_server.encrypted_key) not in shown
    assert config.masked()["auth"] == {"type": "private_key", "private_key": MASK, "passphrase": MASK}


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ({"type": "private_key", "private_key": "not a key"}, "auth.private_key.private_key"),
        ({"type": "carrier_pigeon"}, "auth"),
        ({"type": "password"}, "auth.password.password"),
    ],
)
def test_the_config_rejects_bad_authentication(auth: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        SFTP.parse_config({"host": "sftp.example.com", "user": "u", "path": "/", "auth": auth})
    assert [e.field for e in caught.value.errors] == [field]
    assert "not a key" not in str(caught.value)


def test_an_encrypted_key_without_its_passphrase_is_a_configuration_error(ssh_server: SshServer) -> None:
    auth = {"type": "private_key", "private_key": ssh_server.encrypted_key, "passphrase": ""}
    with pytest.raises(InvalidConfiguration, match="the private key is encrypted: give its passphrase"):
        SFTP.parse_config(ssh_server.sftp_config(auth=auth))


@pytest.mark.parametrize("host_key", ["ssh-ed25519 not-base64", "SHA256:short", "MD5:aa:bb", "hello"])
def test_the_config_rejects_a_host_key_that_is_neither_a_key_nor_a_fingerprint(host_key: str) -> None:
    auth = {"type": "password", "password": "pw"}
    with pytest.raises(InvalidConfiguration) as caught:
        SFTP.parse_config({"host": "h", "user": "u", "path": "/", "auth": auth, "host_key": host_key})
    assert [e.field for e in caught.value.errors] == ["host_key"]


@pytest.mark.parametrize("host", ["sftp://h", "u@h", "h:22", "h /x", ""])
def test_the_config_rejects_a_host_that_is_not_a_bare_name(host: str) -> None:
    auth = {"type": "password", "password": "pw"}
    with pytest.raises(InvalidConfiguration) as caught:
        SFTP.parse_config({"host": host, "user": "u", "path": "/", "auth": auth})
    assert [e.field for e in caught.value.errors] == ["host"]
