"""Product code uses its dependencies through their public surface.

A private name of a dependency (a module or attribute whose name starts with one
underscore) may appear only in a seam module: ``<package>/seams/<dependency>.py``, one per
dependency, which lists what it relies on in ``PRIVATE_NAMES`` so that the test below fails
the day a release moves one of them.

Three ways a private name is caught:
- an import of, or from, a private module or name of a third-party package;
- an attribute ``x._name`` where ``_name`` is defined nowhere in product code (so it must
  belong to someone else's object), or where ``x`` is a name imported from a dependency;
- a class that subclasses a dependency's class and overrides, or reads, one of its
  private attributes.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ["api", "worker", "connectors", "cli", "client/sourcecheck_client"]
OURS = {"api", "worker", "connectors", "cli", "sourcecheck_client", "tests"}
# Stdlib conventions that are public despite the underscore (namedtuple's API, os._exit, ...).
PUBLIC_BY_CONVENTION = {"_replace", "_asdict", "_fields", "_make", "_field_defaults", "_exit", "_getframe"}


def _product_files() -> list[Path]:
    files: list[Path] = []
    for top in PRODUCT:
        base = ROOT / top
        if base.exists():
            files += [p for p in base.rglob("*.py") if "migrations/versions" not in p.as_posix()]
    return sorted(files)


def _is_seam(path: Path) -> bool:
    return path.parent.name == "seams"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PUBLIC_BY_CONVENTION


def _third_party(module: str | None) -> bool:
    if not module:
        return False
    top = module.split(".")[0]
    return top not in OURS and top not in sys.stdlib_module_names


def _defined_names(trees: dict[Path, ast.Module]) -> set[str]:
    """Every name product code itself defines: functions, classes, attributes, parameters."""
    names: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                names.update(x.arg for x in a.args + a.kwonlyargs + a.posonlyargs)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


def _imported_from_dependencies(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _third_party(alias.name):
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _third_party(node.module):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _static_uses(path: Path, tree: ast.Module, ours: set[str]) -> Iterator[str]:
    from_deps = _imported_from_dependencies(tree)
    stdlib_roots = {
        alias.asname or alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.split(".")[0] in sys.stdlib_module_names
    }
    where = path.relative_to(ROOT).as_posix()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _third_party(alias.name) and any(_is_private(p) for p in alias.name.split(".")):
                    yield f"{where}:{node.lineno}: import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _third_party(node.module):
            assert node.module
            if any(_is_private(p) for p in node.module.split(".")):
                yield f"{where}:{node.lineno}: from {node.module} import ..."
            for alias in node.names:
                if _is_private(alias.name):
                    yield f"{where}:{node.lineno}: from {node.module} import {alias.name}"
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            root = _root(node.value)
            if root in stdlib_roots:
                continue
            if root in from_deps or node.attr not in ours:
                yield f"{where}:{node.lineno}: .{node.attr}"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "client" if path.is_relative_to(ROOT / "client") else ROOT)
    return ".".join(rel.with_suffix("").parts).removesuffix(".__init__")


def _private_attrs_of(cls: type) -> set[str]:
    """A dependency class's private attributes: class-level ones and those its methods set on self."""
    names = {n for n in vars(cls) if _is_private(n)}
    for member in vars(cls).values():
        function = getattr(member, "__func__", member)
        if not inspect.isfunction(function):
            continue
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            continue
        names |= {n for n in re.findall(r"self\.(_[A-Za-z]\w*)\s*[:=]", source) if _is_private(n)}
    return names


def _subclass_uses(path: Path, tree: ast.Module) -> Iterator[str]:
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    if not classes:
        return
    module = importlib.import_module(_module_name(path))
    where = path.relative_to(ROOT).as_posix()
    for node in classes:
        cls = getattr(module, node.name, None)
        if not isinstance(cls, type):
            continue
        foreign = [b for b in cls.__mro__[1:] if _third_party(b.__module__)]
        private = set().union(*(_private_attrs_of(b) for b in foreign)) if foreign else set()
        if not private:
            continue
        for sub in ast.walk(node):
            name = None
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                name = sub.name
            elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "self":
                name = sub.attr
            if name in private:
                yield f"{where}:{sub.lineno}: {node.name} uses its dependency's {name}"


def _violations() -> list[str]:
    trees = {p: ast.parse(p.read_text(), str(p)) for p in _product_files()}
    ours = _defined_names(trees)
    found: list[str] = []
    for path, tree in trees.items():
        if _is_seam(path):
            continue
        found += _static_uses(path, tree, ours)
        found += _subclass_uses(path, tree)
    return found


def test_product_code_uses_no_private_name_of_a_dependency_outside_its_seam_module() -> None:
    assert _violations() == []


def _seam_modules() -> list[Path]:
    return [p for p in _product_files() if _is_seam(p) and p.name != "__init__.py"]


@pytest.mark.parametrize("path", _seam_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_each_seam_module_is_named_for_its_dependency_and_its_private_names_still_exist(path: Path) -> None:
    module = importlib.import_module(_module_name(path))
    dependency = path.stem
    # kombu replaces its module object with one that has no __spec__: find_spec fails on it once imported.
    assert dependency in sys.modules or importlib.util.find_spec(dependency), f"{path.name} names no installed package"
    names: list[str] = module.PRIVATE_NAMES
    assert names, "a seam module lists the private names it relies on"
    for dotted in names:
        assert dotted.split(".")[0] == dependency, f"{dotted} does not belong to {dependency}"
        module_path, _, attrs = dotted.partition(":")
        target: object = importlib.import_module(module_path)
        for attr in filter(None, attrs.split(".")):
            if not hasattr(target, attr) and isinstance(target, type):
                assert attr in _private_attrs_of(target), f"{dotted}: {dependency} no longer has {attr}"
                break
            assert hasattr(target, attr), f"{dotted}: {dependency} no longer has {attr}"
            target = getattr(target, attr)


def test_the_checker_catches_each_kind_of_private_use(tmp_path: Path) -> None:
    """The rules above are not vacuous: each catches a planted use."""
    planted = ast.parse(
        "import httpx\n"
        "from httpcore._utils import is_socket_readable\n"
        "from kombu import _private\n"
        "x = httpx._config\n"
        "y = something._pool\n"
    )
    fake = ROOT / "connectors" / "planted.py"
    uses = list(_static_uses(fake, planted, {"something"}))
    assert [u.split(": ", 1)[1] for u in uses] == [
        "from httpcore._utils import ...",
        "from kombu import _private",
        "._config",
        "._pool",
    ]
    import httpx

    class Planted(httpx.AsyncHTTPTransport):
        def touch(self) -> object:
            return self._pool

    assert "_pool" in _private_attrs_of(httpx.AsyncHTTPTransport)
