"""Every real server fixture lives in tests/servers/, one module per kind of server."""

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
    "tests.servers.zendesk",
]
