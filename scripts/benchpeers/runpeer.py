"""Run the chosen workloads for ONE peer, in its own process, and write JSON results.

``python -m benchpeers.runpeer CONFIG_JSON OUT_JSON`` (cwd/PYTHONPATH = scripts/). Running each
peer in its own interpreter keeps peers' import-time set-up (event-loop policies, global apps)
from leaking into each other, and lets recovery runs for several peers go in parallel.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import _probe
from .workloads import WORKLOADS, Figures, Sizes


def median_of(runs: list[Figures]) -> Figures:
    keys = runs[0].keys()
    return {k: statistics.median(r[k] for r in runs if k in r) for k in keys}


async def _repeat(name: str, peer: Any, url: str, sizes: Sizes, repeat: int, log: Path) -> dict:
    runs: list[Figures] = []
    for _ in range(repeat):
        try:
            runs.append(await WORKLOADS[name](peer, url, sizes, log))
        except NotImplementedError:
            return {"na": True}
        except Exception as exc:  # report, and go on with the next workload
            traceback.print_exc()
            return {"error": f"{type(exc).__name__}: {exc}", "runs": runs}
        if "never" in runs[-1]:
            break  # a lease that does not expire in the cap will not expire on a retry either
    if any("never" in r for r in runs):
        return {"never": True, "runs": runs}
    return {"median": median_of(runs), "runs": runs}


async def run(config: dict[str, Any]) -> dict[str, Any]:
    from benchpeers import load

    try:
        peer = load(config["peer"])
    except ImportError as exc:
        return {"skipped": f"import failed: {exc}"}
    sizes = Sizes(**config["sizes"])
    log = Path(config["log"])
    results = {}
    for name in config["workloads"]:
        print(f"[{peer.name}] {name}", file=sys.stderr, flush=True)
        results[name] = await _repeat(name, peer, config["url"], sizes, config["repeat"], log)
    return {
        "version": peer.version(),
        "settings": peer.settings,
        "has_bulk": peer.has_bulk,
        "results": results,
        "sizes": asdict(sizes),
    }


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the finally blocks that kill our workers


def main() -> int:
    config = json.loads(sys.argv[1])
    os.environ[_probe.URL_ENV] = config["url"]
    signal.signal(signal.SIGTERM, _terminate)
    result = asyncio.run(run(config))
    Path(sys.argv[2]).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
