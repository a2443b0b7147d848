"""The sourcecheck command: organizations and API keys."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.servers.http import HttpServer
from tests.servers.postgres import PostgresServer
from tests.servers.stack import BIN, Stack
from tests.servers.tcp import HostPort

pytestmark = pytest.mark.e2e


def test_apikey_create_prints_the_token_and_nothing_else(stack: Stack) -> None:
    done = stack.cli("apikey", "create", "--org", stack.org_id)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"sck_[a-z0-9]{12}_[A-Za-z0-9_-]{43}\n", done.stdout)


def test_org_create_prints_the_id_and_refuses_a_duplicate(stack: Stack) -> None:
    done = stack.cli("org", "create", "--id", "org_cli_test", "--name", "CLI")
    assert done.stdout == "org_cli_test\n"
    again = stack.cli("org", "create", "--id", "org_cli_test")
    assert again.returncode != 0 and "exists" in again.stderr
    bad = stack.cli("org", "create", "--id", "acme")
    assert bad.returncode != 0 and "org_" in bad.stderr


def test_revoked_key_is_refused(stack: Stack) -> None:
    token = stack.cli("apikey", "create", "--org", stack.org_id).stdout.strip()
    url = stack.base_url + stack.url("/sources")
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    key_id = token.split("_")[1]
    assert stack.cli("apikey", "revoke", key_id).returncode == 0
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401


# --- check (direct) and test (through the API) ----------------------------------------------

STEPS = ("resolve", "tcp", "tls", "authenticate", "access")


def _config_file(tmp_path: Path, config: dict[str, object]) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def _cli(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sourcecheck"), *args], env={**stack.env, **env}, capture_output=True, text=True, timeout=120
    )


def test_check_succeeds_with_each_step_and_its_timing(
    stack: Stack, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    done = stack.cli(
        "check", "postgres", "--config", _config_file(tmp_path, postgres_server.config()), "--timeout", "10"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for step in STEPS:
        assert any(re.search(rf"\b{step}\b\s+\d+\.\d ms", line) for line in lines), (step, done.stdout)
    assert "succeeded" in lines[-1]
    assert postgres_server.password not in done.stdout + done.stderr


def test_check_failure_exits_1_with_type_message_and_hint(
    stack: Stack, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    wrong = "Cli-Wrong-Password-31x"
    done = stack.cli("check", "postgres", "--config", _config_file(tmp_path, postgres_server.config(password=wrong)))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "authentication_failed" in done.stdout
    assert re.search(r"authenticate\s+\d+\.\d ms\s+.*password", done.stdout)
    assert "hint: " in done.stdout
    assert re.search(r"access\s+skipped", done.stdout)
    assert wrong not in done.stdout + done.stderr


def test_check_of_a_closed_port_fails_at_tcp(stack: Stack, closed_port: int, tmp_path: Path) -> None:
    config = {"host": "127.0.0.1", "port": closed_port, "database": "app", "user": "u", "password": "p"}
    done = stack.cli("check", "postgres", "--config", _config_file(tmp_path, config))
    assert done.returncode == 1
    assert "connection_refused" in done.stdout


def test_check_bad_input_exits_2_naming_fields_never_values(stack: Stack, tmp_path: Path) -> None:
    secret = "Cli-Secret-Value-Never-Shown-8"
    config = {"host": "db", "port": "not-a-port", "password": secret, "extra_field": secret}
    done = stack.cli("check", "postgres", "--config", _config_file(tmp_path, config))
    assert done.returncode == 2
    for bad in ("port", "user", "database", "extra_field"):
        assert re.search(rf"^\s+{bad}: ", done.stderr, re.MULTILINE), (bad, done.stderr)
    assert secret not in done.stdout + done.stderr
    assert "not-a-port" not in done.stdout + done.stderr

    unknown = stack.cli("check", "no-such-definition", "--config", _config_file(tmp_path, {}))
    assert unknown.returncode == 2 and "postgres" in unknown.stderr
    (tmp_path / "broken.json").write_text('{"password": "' + secret)
    broken = stack.cli("check", "postgres", "--config", str(tmp_path / "broken.json"))
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr and secret not in broken.stderr
    missing = stack.cli("check", "postgres", "--config", str(tmp_path / "missing.json"))
    assert missing.returncode == 2


def test_test_source_goes_through_the_api(stack: Stack, postgres_server: PostgresServer) -> None:
    with stack.client() as client:
        created = client.post(
            stack.url("/sources"),
            json={"source_definition_id": "postgres", "name": "cli", "configuration": postgres_server.config()},
        )
    source_id = created.json()["id"]
    done = stack.cli(
        "test", "--source", source_id, "--org", stack.org_id, "--api-url", stack.base_url, "--token", stack.token
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"job job_\w+ on e2e@", done.stdout)
    for step in STEPS:
        assert re.search(rf"\b{step}\b\s+\d+\.\d ms", done.stdout), (step, done.stdout)
    assert "succeeded" in done.stdout.splitlines()[-1]
    # Token from the environment, organization from this machine's database (the token's).
    from_env = _cli(stack, "test", "--source", source_id, "--api-url", stack.base_url, SOURCECHECK_TOKEN=stack.token)
    assert from_env.returncode == 0, from_env.stdout + from_env.stderr


def test_test_inline_failure_and_bad_input(stack: Stack, postgres_server: PostgresServer, tmp_path: Path) -> None:
    api = ("--api-url", stack.base_url, "--org", stack.org_id)
    wrong = "Cli-Inline-Wrong-Password-9"
    failed = _cli(
        stack,
        "test",
        "--definition",
        "postgres",
        "--config",
        _config_file(tmp_path, postgres_server.config(password=wrong)),
        *api,
        SOURCECHECK_TOKEN=stack.token,
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "authentication_failed" in failed.stdout and "hint: " in failed.stdout
    assert wrong not in failed.stdout + failed.stderr

    invalid = _cli(
        stack,
        "test",
        "--definition",
        "postgres",
        "--config",
        _config_file(tmp_path, {"host": "db", "password": wrong}),
        *api,
        SOURCECHECK_TOKEN=stack.token,
    )
    assert invalid.returncode == 2
    assert re.search(r"^\s+configuration\.user: ", invalid.stderr, re.MULTILINE), invalid.stderr
    assert wrong not in invalid.stdout + invalid.stderr

    refused = _cli(stack, "test", "--source", "src_x", *api, SOURCECHECK_TOKEN="sck_000000000000_" + "z" * 43)
    assert refused.returncode == 2 and "not valid" in refused.stderr
    unknown = _cli(stack, "test", "--source", "src_doesnotexist", *api, SOURCECHECK_TOKEN=stack.token)
    assert unknown.returncode == 2 and "src_doesnotexist" in unknown.stderr
    neither = _cli(stack, "test", *api, SOURCECHECK_TOKEN=stack.token)
    assert neither.returncode == 2


def test_every_command_has_help_with_an_example(stack: Stack) -> None:
    commands = [
        ("check",),
        ("test",),
        ("org", "create"),
        ("apikey", "create"),
        ("apikey", "revoke"),
        ("keygen",),
        ("run",),
        ("api",),
        ("worker",),
        ("flower",),
    ]
    for command in commands:
        done = stack.cli(*command, "--help")
        assert done.returncode == 0, command
        assert "Example" in done.stdout, command


# --- test --follow: each step as it happens, Ctrl-C cancels -----------------------------------


def _follow(stack: Stack, tmp_path: Path, url: str) -> subprocess.Popen[str]:
    """``sourcecheck test --follow`` of an inline http test of ``url``, its output piped (not a terminal)."""
    config = _config_file(tmp_path, {"url": url})
    api = ("--api-url", stack.base_url, "--org", stack.org_id, "--token", stack.token, "--timeout", "20")
    return subprocess.Popen(
        [str(BIN / "sourcecheck"), "test", "--definition", "http", "--config", config, "--follow", *api],
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_follow_prints_each_step_as_it_happens(stack: Stack, http_server: HttpServer, tmp_path: Path) -> None:
    process = _follow(stack, tmp_path, http_server.url(f"/ok?delay=1&tag={uuid.uuid4().hex}"))
    assert process.stdout is not None
    arrived: list[tuple[float, str]] = []
    for line in process.stdout:
        arrived.append((time.monotonic(), line.rstrip("\n")))
    assert process.wait(timeout=30) == 0, arrived
    lines = [line for _, line in arrived]
    order = [next(i for i, line in enumerate(lines) if re.search(rf"\b{step}\b", line)) for step in ("tcp", "request")]
    assert order == sorted(order)
    tcp_at = next(t for t, line in arrived if re.search(r"\btcp\b\s+\d+\.\d ms", line))
    request_at = next(t for t, line in arrived if re.search(r"\brequest\b\s+\d+\.\d ms", line))
    assert request_at - tcp_at > 0.7  # tcp was printed when it ended, not with the result
    assert sum(1 for line in lines if re.search(r"\brequest\b", line)) == 1  # not printed again at the end
    assert "succeeded" in lines[-1]


def test_ctrl_c_while_following_cancels_the_test_and_prints_its_result(
    stack: Stack, hung_server: HostPort, tmp_path: Path
) -> None:
    process = _follow(stack, tmp_path, f"http://{hung_server.host}:{hung_server.port}/?tag={uuid.uuid4().hex}")
    assert process.stdout is not None and process.stderr is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if re.search(r"\btls\b", line):  # skipped for http://: the request step, which hangs, runs next
            break
    time.sleep(0.5)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=15)
    assert time.monotonic() - sent < 5
    assert process.returncode == 1, (lines, rest, errors)
    assert "cancelling the test" in errors
    assert "(cancelled, retryable)" in rest
    assert re.search(r"\brequest\b.*cancelled", rest), rest


def test_follow_in_a_terminal_spins_on_the_running_step(stack: Stack, http_server: HttpServer, tmp_path: Path) -> None:
    config = _config_file(tmp_path, {"url": http_server.url(f"/ok?delay=1.5&tag={uuid.uuid4().hex}")})
    api = ("--api-url", stack.base_url, "--org", stack.org_id, "--token", stack.token)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "sourcecheck"), "test", "--definition", "http", "--config", config, "--follow", *api],
        env={**stack.env, "TERM": "xterm", "COLUMNS": "100"},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the command ended: the terminal's other end is closed
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=30) == 0, output
    text = output.decode(errors="replace")
    assert "request..." in text  # the spinner's line while the request step runs
    assert re.search(r"request\s+\d+\.\d ms", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text))
