"""The Lua scripts, shipped as package files: each is the shared prelude plus one transition."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Script:
    """One loaded script: run by SHA, its source kept for a reload after NOSCRIPT."""

    name: str
    source: str
    sha: str


def _read(name: str) -> str:
    return resources.files("streamjobs").joinpath(f"lua/{name}.lua").read_text("utf-8")


@cache
def script(name: str) -> Script:
    """The script `lua/<name>.lua` with the prelude in front (read once per process)."""
    source = _read("_prelude") + "\n" + _read(name)
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())
