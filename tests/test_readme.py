"""The README's settings table says what the code does: every setting, its real default."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from api.settings import ApiSettings

README = Path(__file__).parents[1] / "README.md"


def _settings_rows() -> list[tuple[list[str], list[str]]]:
    """(names, defaults) of each row of the README's "## Settings" table."""
    section = README.read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        name_cell, default_cell = line.split("|")[1:3]
        rows.append((re.findall(r"`([A-Z_]+)`", name_cell), [d.strip() for d in default_cell.split(" / ")]))
    return rows


def test_the_readme_lists_every_setting_and_only_real_ones() -> None:
    listed = {name for names, _ in _settings_rows() for name in names}
    assert listed == {name.upper() for name in ApiSettings.model_fields}


def test_the_readme_gives_the_real_numeric_defaults() -> None:
    checked = 0
    for names, defaults in _settings_rows():
        if len(names) != len(defaults) or not all(re.fullmatch(r"[0-9.]+", d) for d in defaults):
            continue  # a default in words ("SQLite in DATA_DIR")
        for name, default in zip(names, defaults, strict=True):
            assert float(default) == ApiSettings.model_fields[name.lower()].default, name
            checked += 1
    assert checked >= 10


def _layout() -> dict[str, str]:
    """The README's "## Layout" section: each line ``- `folder/`: what it holds``, with the
    folder's modules named in backticks after it (``- `api/`: ... `main.py` the app, ...``)."""
    section = README.read_text().split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    lines: dict[str, str] = {}
    folder = None
    for line in section.splitlines():
        found = re.match(r"- `([^`]+/)`", line)
        if found:
            folder = found.group(1)
            lines[folder] = line
        elif folder and line.startswith("  "):
            lines[folder] += " " + line.strip()
        else:
            folder = None
    return lines


def _tracked() -> list[Path]:
    root = README.parent
    listed = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    return [Path(p) for p in listed.splitlines() if (root / p).exists()]


# Folders a newcomer never needs to open, or whose parent's line says what they hold.
UNLISTED = ("api/migrations/versions/", "tests/plugins/faulty/", ".ci/")


def test_the_readme_layout_lists_every_folder_and_each_module_of_the_product_packages() -> None:
    layout = _layout()
    folders = {p.parent.as_posix() + "/" for p in _tracked() if p.parent != Path(".")}
    folders = {f for f in folders if not f.startswith(UNLISTED) and f.count("/") <= 2}
    assert sorted(folders - layout.keys()) == []
    for path in _tracked():
        folder = path.parent.as_posix() + "/"
        if folder.startswith(UNLISTED) or folder.split("/")[0] not in PRODUCT:
            continue
        if path.suffix in (".py", ".lua") and path.name != "__init__.py":
            assert f"`{path.name}`" in layout.get(folder, ""), f"the Layout line of {folder} names no {path.name}"


def test_everything_the_readme_layout_names_exists() -> None:
    root = README.parent
    for folder, line in _layout().items():
        assert (root / folder).is_dir(), f"{folder} is not a folder"
        for name in re.findall(r"`([\w.-]+\.(?:py|lua|md|toml|txt|yml|yaml))`", line):
            assert (root / folder / name).exists(), f"{folder}{name} does not exist"


PRODUCT = ("api", "worker", "connectors", "cli")
