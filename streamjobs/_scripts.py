"""The Lua scripts, shipped as package files: each is the shared prelude plus one transition.

Each script carries only the prelude definitions it uses (and those they use): Redis runs a
script's whole text on every call, and an idle Redis spends tens of microseconds defining
helpers a transition never calls, on every hop of a job's latency.
"""

from __future__ import annotations

import hashlib
import re
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


_DEFINITION = re.compile(r"^local (?:function )?([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _definitions(prelude: str) -> tuple[str, list[tuple[str, str]]]:
    """The prelude's header, and its top-level definitions as (name, text) in order; a
    definition's text takes the comment lines just above it."""
    starts = [m.start() for m in _DEFINITION.finditer(prelude)]
    cuts = []
    for start in starts:  # move each cut up over the comment lines that introduce it
        while (line := prelude.rfind("\n", 0, start - 1) + 1) and prelude.startswith("--", line):
            start = line
        cuts.append(start)
    header = prelude[: cuts[0]]
    texts = [prelude[a:b] for a, b in zip(cuts, [*cuts[1:], len(prelude)])]
    names = [m.group(1) for m in _DEFINITION.finditer(prelude)]
    return header, list(zip(names, texts))


def with_prelude(prelude: str, body: str) -> str:
    """`body` after the prelude's header and the prelude definitions it needs."""
    header, definitions = _definitions(prelude)
    wanted, texts = set(_NAME.findall(body)), dict(definitions)
    while True:
        more = {n for name in wanted & texts.keys() for n in _NAME.findall(texts[name])}
        if more <= wanted:
            break
        wanted |= more
    kept = "".join(text for name, text in definitions if name in wanted)
    return f"{header}{kept}\n{body}"


@cache
def script(name: str) -> Script:
    """The script `lua/<name>.lua` with what it needs of the prelude (read once per process)."""
    source = with_prelude(_read("_prelude"), _read(name))
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())
