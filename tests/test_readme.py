"""The README's settings table says what the code does: every setting, its real default."""

from __future__ import annotations

import re
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
