"""The error tree drawn in api/errors.py's docstring is the tree of its classes."""

from __future__ import annotations

import inspect
import re

import api.errors

# A class in the drawing: its indentation, its branch (none for the root), its name, then two spaces.
TREE_LINE = re.compile(r"^(?P<indent>(?:│   |    )*)(?P<branch>[├└]── )?(?P<name>[A-Z]\w*)(?:\s{2,}|$)")


def test_the_drawn_error_tree_is_the_class_tree() -> None:
    drawn: dict[str, str | None] = {}
    parents: list[str] = []
    for line in (api.errors.__doc__ or "").splitlines():
        found = TREE_LINE.match(line)
        if not found:
            continue
        name = found["name"]
        depth = len(found["indent"]) // 4 + (1 if found["branch"] else 0)
        parents[depth:] = [name]
        drawn[name] = parents[depth - 1] if depth else None
    defined = {
        name: cls
        for name, cls in vars(api.errors).items()
        if inspect.isclass(cls) and issubclass(cls, Exception) and cls.__module__ == api.errors.__name__
    }
    assert set(drawn) == set(defined)
    for name, parent in drawn.items():
        assert defined[name].__bases__[0].__name__ == (parent or "Exception"), name
