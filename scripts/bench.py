#!/usr/bin/env python3
"""Side-by-side benchmark of streamjobs and its peers, each on a Redis of its own.

    python scripts/bench.py [--quick] [--peers arq,saq] [--workloads e2e,latency]
                            [--repeat 3] [--json PATH] [--redis-url URL]

Each peer runs in its own interpreter (``benchpeers.runpeer``) against a private redis-server
started here on a free port (never the shared one), or against ``--redis-url``, which is FLUSHED
between measurements. Recovery runs for all peers go in parallel (they mostly wait on leases),
except with ``--redis-url``, where everything shares one Redis and runs in turn.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchpeers import OWN, PEERS, _procs
from benchpeers.runpeer import median_of
from benchpeers.workloads import WORKLOADS, Sizes

QUICK = Sizes(enqueue=500, e2e=500, latency=50, memory=5000, latency_interval=0.01)
PEER_TIMEOUT_S = 900.0
Result = dict[str, Any]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated (default: all)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median kept)")
    ap.add_argument("--quick", action="store_true", help="small N for smoke runs")
    ap.add_argument("--json", type=Path, help="write full results (runs, versions, settings)")
    ap.add_argument("--redis-url", help="use this (dedicated, flushed!) Redis instead")
    ap.add_argument("--redis-server", default="redis-server", help="redis-server binary")
    ap.add_argument("--logdir", type=Path, help="worker logs (default: a temp dir)")
    args = ap.parse_args(argv)
    args.peers = _choose(args.peers, PEERS, "peer")
    args.workloads = _choose(args.workloads, tuple(WORKLOADS), "workload")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    return args


def _choose(csv: str, known: tuple[str, ...], what: str) -> list[str]:
    chosen = [x.strip() for x in csv.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in known]
    if unknown:
        raise SystemExit(f"unknown {what}(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


@contextlib.contextmanager
def benchmark_redis(args: argparse.Namespace) -> Iterator[str]:
    if args.redis_url:
        yield args.redis_url
    else:
        with _procs.redis_server(args.redis_server) as url:
            yield url


def _wait_runner(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"runner {proc.pid} timed out after {timeout:.0f}s; stopping it", file=sys.stderr)
        _procs.stop(proc, grace=20)  # SIGTERM lets it kill its own workers first


def run_peer(
    peer: str, workloads: list[str], args: argparse.Namespace, sizes: Sizes, repeat: int
) -> Result:
    """Run ``workloads`` ``repeat`` times for one peer in a child interpreter; return its JSON
    result."""
    with benchmark_redis(args) as url, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        config = {
            "peer": peer,
            "url": url,
            "workloads": workloads,
            "repeat": repeat,
            "sizes": asdict(sizes),
            "log": str(args.logdir / f"{peer}-worker.log"),
        }
        cmd = [sys.executable, "-m", "benchpeers.runpeer", json.dumps(config), str(out)]
        proc = subprocess.Popen(
            cmd, cwd=_procs.SCRIPTS_DIR, env=_procs.worker_env(url), stdout=sys.stderr
        )
        try:
            _wait_runner(proc, PEER_TIMEOUT_S)
        finally:
            _procs.stop(proc)
        if not out.exists():
            return {"error": f"runner exited {proc.returncode} without results"}
        result: Result = json.loads(out.read_text())
        return result


def _merge_round(into: Result, part: Result) -> None:
    """Add a child run's results to a peer's; medians are taken over every run so far.
    A workload that was n/a, failed or never finished stays so."""
    cells = into.setdefault("results", {})
    for workload, cell in part.pop("results", {}).items():
        have = cells.get(workload)
        if have is None:
            cells[workload] = cell
        elif "median" in have:
            runs = have["runs"] + cell.get("runs", [])
            cells[workload] = {**cell, "runs": runs}
            if "median" in cell:
                cells[workload]["median"] = median_of(runs)
    into.update(part)


def run_all(args: argparse.Namespace, sizes: Sizes) -> dict[str, Result]:
    """Steady-state workloads peer after peer (no CPU contention), in rounds: each round runs
    every peer once, so that a machine whose speed drifts during the run (a shared VM) slows
    every peer alike instead of whichever ran last. Then recovery, in parallel."""
    results: dict[str, Result] = {p: {} for p in args.peers}
    steady = [w for w in args.workloads if w != "recovery"]
    for _ in range(args.repeat if steady else 0):
        for peer in args.peers:
            if "skipped" in results[peer] or "error" in results[peer]:
                continue
            _merge_round(results[peer], run_peer(peer, steady, args, sizes, 1))
    runnable = [p for p in args.peers if "skipped" not in results[p]]
    if "recovery" in args.workloads and runnable:
        parallel = 1 if args.redis_url else len(runnable)
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            parts = pool.map(
                lambda p: run_peer(p, ["recovery"], args, sizes, args.repeat), runnable
            )
            for peer, part in zip(runnable, parts, strict=True):
                _merge_round(results[peer], part)
    return results


ROWS: tuple[tuple[str, str, str, bool | None], ...] = (  # workload, figure, label,
    # higher is better (None: a reference, not a race)
    ("enqueue-one", "jobs_per_s", "enqueue-one jobs/s", True),
    ("enqueue-one", "ping_per_s", "  floor: bare PING/s", None),
    ("enqueue-bulk", "jobs_per_s", "enqueue-bulk jobs/s", True),
    ("e2e", "jobs_per_s", "e2e drain jobs/s", True),
    ("latency", "p50_ms", "latency p50 ms", False),
    ("latency", "p99_ms", "latency p99 ms", False),
    ("memory", "bytes_per_job", "memory B/pending job", False),
    ("recovery", "seconds", "recovery s (SIGKILL)", False),
)


def figure(result: Result, workload: str, key: str) -> float | str:
    """A number, or why there is none: skip, n/a, never, err, or '-' (not run)."""
    if "skipped" in result:
        return "skip"
    if "error" in result:
        return "err"
    cell = result.get("results", {}).get(workload)
    if cell is None:
        return "-"
    if cell.get("na"):
        return "n/a"
    if cell.get("never"):
        return "never"
    if "error" in cell:
        return "err"
    value: float = cell["median"][key]
    return value


def _fmt(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def ratio(values: dict[str, float | str], higher_better: bool | None) -> str:
    own = values.get("streamjobs")
    if higher_better is None:
        return "-"
    peers = [v for p, v in values.items() if p not in OWN and not isinstance(v, str)]
    if not isinstance(own, float | int) or not peers:
        return "-"
    best = max(peers) if higher_better else min(peers)
    return f"{own / best:.2f}" if best else "-"


def table(results: dict[str, Result]) -> str:
    peers = list(results)
    header = ["workload", *peers, "streamjobs/best peer"]
    lines = [header]
    for workload, key, label, higher in ROWS:
        values = {p: figure(results[p], workload, key) for p in peers}
        if all(v in ("-", "skip") for v in values.values()):
            continue
        lines.append([label, *(_fmt(values[p]) for p in peers), ratio(values, higher)])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = [
        " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in lines
    ]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def observed_cost(results: dict[str, Result]) -> str | None:
    """e2e throughput with every observer on, against plain streamjobs in the same run."""
    if "streamjobs" not in results or "streamjobs_observed" not in results:
        return None
    plain = figure(results["streamjobs"], "e2e", "jobs_per_s")
    seen = figure(results["streamjobs_observed"], "e2e", "jobs_per_s")
    if isinstance(plain, str) or isinstance(seen, str) or not plain:
        return None
    return (f"streamjobs_observed (Prometheus + OpenTelemetry on) runs e2e at {seen / plain:.2f}x "
            "plain streamjobs")  # fmt: skip


def limited_cost(results: dict[str, Result]) -> list[str]:
    """Rates with every job under a limit key with room, against plain streamjobs."""
    if "streamjobs" not in results or "streamjobs_limited" not in results:
        return []
    found = []
    for workload in ("enqueue-one", "enqueue-bulk", "e2e"):
        plain = figure(results["streamjobs"], workload, "jobs_per_s")
        limited = figure(results["streamjobs_limited"], workload, "jobs_per_s")
        if isinstance(plain, str) or isinstance(limited, str) or not plain:
            continue
        found.append(f"streamjobs_limited (every job under a limit key with room, tenants "
                     f"taking turns) runs {workload} at {limited / plain:.2f}x plain "
                     "streamjobs")  # fmt: skip
    return found


def notes(results: dict[str, Result]) -> list[str]:
    found = [cost] if (cost := observed_cost(results)) else []
    found += limited_cost(results)
    for peer, result in results.items():
        if "skipped" in result or "error" in result:
            found.append(f"{peer}: {result.get('skipped') or result.get('error')}")
        for workload, cell in result.get("results", {}).items():
            if "error" in cell:
                found.append(f"{peer} {workload}: {cell['error']}")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    with contextlib.ExitStack() as stack:
        if args.logdir is None:
            args.logdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        args.logdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        results = run_all(args, sizes)
    print(table(results))
    print("ratio = streamjobs / best peer: above 1 is better for jobs/s rows, below 1 for the rest")
    print("floor = PINGs/s over a bare socket on the same Redis: no awaited submit beats it")
    for line in notes(results):
        print(f"note: {line}")
    print(f"({time.monotonic() - started:.0f}s; sizes {asdict(sizes)}; median of {args.repeat})")
    if args.json:
        meta = {"sizes": asdict(sizes), "repeat": args.repeat, "python": sys.version}
        args.json.write_text(json.dumps({"meta": meta, "peers": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
