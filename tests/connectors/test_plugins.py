"""Third-party connectors: a plugin package installed next to sourcecheck is found and served.

The example plugin (examples/sourcecheck-echo) is pip-installed into the running virtualenv
for this module's tests and uninstalled afterwards. What it changes is checked in fresh
subprocesses: the registry is cached per process, and a fresh one is what a worker or the
API sees after the install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sourcecheck-echo"
DISTRIBUTION = "sourcecheck-echo"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]

# Run in a fresh interpreter: lists the registry, the API's source definitions, the error for
# an unknown name, and runs the echo check against a local echo server when it is there.
PROBE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, logging, sys
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    from api.routes.definitions import list_definitions, to_public
    from connectors.base import CHECK_RESULT, run_check
    from connectors.errors import UnknownConnector
    from connectors.registry import all_connectors, get_connector

    out = {"names": list(all_connectors())}
    page = list_definitions(None)  # the route's function; its org argument is unused
    out["definitions"] = {d.id: d.model_dump(mode="json") for d in page.data}
    try:
        get_connector("no-such-connector")
    except UnknownConnector as exc:
        out["unknown"] = str(exc)

    async def echo_check():
        async def echo(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            connector = get_connector("echo")
            config = connector.parse_config(connector.example_config("127.0.0.1", port))
            return CHECK_RESULT.dump_python(await run_check(connector, config, timeout=5), mode="json")

    if "echo" in out["names"]:
        out["echo_definition"] = to_public(get_connector("echo")).model_dump(mode="json")
        out["echo_result"] = asyncio.run(echo_check())
    print(json.dumps(out))
    """
)


def run_probe(*extra_path: Path) -> tuple[dict[str, Any], str]:
    """Run PROBE_SCRIPT in a fresh interpreter of this venv; its JSON output and its stderr."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in (ROOT, *extra_path)))
    done = subprocess.run(
        [sys.executable, "-c", PROBE_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"the probe script failed:\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture(scope="module")
def echo_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """examples/sourcecheck-echo pip-installed into this virtualenv, uninstalled afterwards."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("not running in a virtualenv: will not pip-install into the system Python")
    # Built from a copy, so the build leaves no build/ or *.egg-info in the source tree.
    source = tmp_path_factory.mktemp("plugin") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    # Offline and fast: the venv's own setuptools builds it, and sourcecheck is already here.
    install = [*PIP, "install", "--no-build-isolation", "--no-deps", "--no-index", "--quiet", str(source)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.fail(
            f"pip install of {EXAMPLE.name} failed (needs setuptools>=70.1 in the venv: pip install -e '.[dev]'):\n"
            f"{done.stdout}\n{done.stderr}"
        )
    try:
        yield
    finally:
        subprocess.run([*PIP, "uninstall", "--yes", "--quiet", DISTRIBUTION], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def probed(echo_installed: None) -> dict[str, Any]:
    """What a fresh process sees with the plugin installed (run once: importing the API takes a while)."""
    return run_probe()[0]


def test_an_installed_plugin_is_registered_and_served_as_a_source_definition(probed: dict[str, Any]) -> None:
    out = probed
    assert "echo" in out["names"]
    assert {"postgres", "mysql", "http"} <= set(out["names"]), "a plugin must not push out the built-in connectors"
    assert set(out["definitions"]) == set(out["names"])
    definition = out["definitions"]["echo"]
    assert definition == out["echo_definition"]
    assert (definition["name"], definition["category"], definition["icon"]) == ("Echo service (TCP)", "other", "echo")
    spec = definition["connection_specification"]
    assert spec["required"] == ["host", "token"]
    assert spec["properties"]["token"]["secret"] is True


def test_an_installed_plugin_runs_its_check(probed: dict[str, Any]) -> None:
    out = probed
    result = out["echo_result"]
    assert result["status"] == "succeeded", result
    assert [(s["name"], s["status"]) for s in result["steps"]] == [
        ("resolve", "succeeded"),
        ("tcp", "succeeded"),
        ("echo", "succeeded"),
    ]


def test_an_unknown_name_names_the_known_connectors_plugins_included(probed: dict[str, Any]) -> None:
    out = probed
    assert out["unknown"] == f"unknown source definition 'no-such-connector'; known: {', '.join(sorted(out['names']))}"
    assert "echo" in out["unknown"]


def test_an_installed_plugin_passes_the_contract_suite(echo_installed: None) -> None:
    """What docs/writing-a-connector.md tells a plugin's author to run."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/connectors/test_contract.py",
            "-k",
            "echo",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary


def test_a_plugin_whose_module_fails_to_import_is_left_out_and_logged(tmp_path: Path) -> None:
    # An installed distribution is a *.dist-info folder on sys.path: this is what pip leaves
    # for a package whose module cannot be imported (here: it needs a missing library).
    info = tmp_path / "sourcecheck_broken-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sourcecheck-broken\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[sourcecheck.connectors]\nbroken = sourcecheck_broken:BrokenConnector\n")
    (tmp_path / "sourcecheck_broken.py").write_text("import a_library_that_is_not_installed  # noqa\n")

    out, log = run_probe(tmp_path)
    assert "broken" not in out["names"] and "broken" not in out["definitions"]
    assert {"postgres", "mysql", "http"} <= set(out["names"])
    assert "connector plugin 'broken' (sourcecheck_broken:BrokenConnector) failed to load; it is left out" in log
    assert "No module named 'a_library_that_is_not_installed'" in log
    assert "broken" not in out["unknown"]
