"""The Redis scripts that keep job state, one ``.lua`` file each, read once at import.

Callers register them (redis-py's ``register_script``: EVALSHA, loading a script on its
first use on a server).
"""

from __future__ import annotations

from importlib.resources import files


def _read(name: str) -> str:
    return files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


SUBMIT = _read("submit")
BEGIN = _read("begin")
FINISH = _read("finish")
CANCEL = _read("cancel")
