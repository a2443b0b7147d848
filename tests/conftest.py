"""Every real server fixture lives in tests/servers/, one module per kind of server."""

import multiprocessing
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.servers.tcp",
    "tests.servers.http",
    "tests.servers.saas",
    "tests.servers.postgres",
    "tests.servers.mariadb",
    "tests.servers.redis",
    "tests.servers.ssh",
    "tests.servers.stack",
    "tests.servers.s3",
    "tests.servers.website",
    "tests.servers.bomb",
    "tests.servers.azurite",
    "tests.servers.saas_files",
    "tests.servers.imap",
    "tests.servers.webdav",
    "tests.servers.ftp",
    "tests.servers.gcs",
    "tests.servers.git",
    "tests.servers.gitlab",
    "tests.servers.jira",
    "tests.servers.smb",
    "tests.servers.zendesk",
    "tests.servers.webhooks",
]


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Iterator[None]:
    # A child process left running would make the interpreter's exit wait for it (multiprocessing
    # joins its children at exit, and a probe process ignores SIGTERM): kill it and fail the run
    # instead of hanging CI until its time limit.
    yield
    leaked = multiprocessing.active_children()
    for child in leaked:
        child.kill()
        child.join(timeout=5)
    if leaked:
        names = ", ".join(f"{c.name} (pid {c.pid})" for c in leaked)
        session.config.get_terminal_writer().line(f"\nchild processes left running, killed: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
