#!/usr/bin/env python3
"""What each driver costs: the same workloads through `JobService` on our RESP driver and
redis-py's client (asyncio) and on coredis (asyncio and trio), on a private redis-server (never
the shared one).

    python scripts/bench_drivers.py [--jobs 2000] [--repeat 3] [--redis-url URL]

Workloads: `submit` (one submit_job per round trip), `batch` (submit_many, 100 a call) and
`e2e` (jobs pre-queued, 8 in-process workers run no-op handlers until all are recorded).
Configurations: resp on asyncio (the default there), redis-py on asyncio (driver="redis-py"),
coredis on asyncio (driver="coredis"), coredis on trio (the default there). The ratio columns:
coredis on trio against redis-py on asyncio, and against resp, the asyncio default
(throughput / throughput; 1.00 = same speed).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamjobs import AsyncWorkerPool, JobDefinition, JobService, RedisJobQueue

CONFIGS = (
    ("asyncio", "resp"), ("asyncio", "redis-py"), ("asyncio", "coredis"), ("trio", "coredis"),
)  # fmt: skip
WORKLOADS = ("submit", "batch", "e2e")
Bench = Callable[[JobService, int], Awaitable[None]]


async def noop(job: JobDefinition, progress: Any) -> None:
    """The cheapest handler: the e2e figure is all queue and driver."""


async def submit(svc: JobService, n: int) -> None:
    for i in range(n):
        await svc.submit_job("noop", (i,))


async def batch(svc: JobService, n: int) -> None:
    for start in range(0, n, 100):
        await svc.submit_many(
            [{"handler": "noop", "args": (i,)} for i in range(start, start + 100)]
        )


class Countdown:
    """A no-op handler that sets `done` once it ran `n` times."""

    def __init__(self, n: int) -> None:
        self.left, self.done = n, anyio.Event()

    async def __call__(self, job: JobDefinition, progress: Any) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


async def e2e(svc: JobService, n: int) -> None:
    countdown = Countdown(n)
    svc.register_handler("noop", countdown)
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run_workers, 8)
        await countdown.done.wait()
        await svc.stop_workers()  # graceful: returns once every outcome is recorded


async def _measure(url: str, driver: str, workload: str, n: int) -> float:
    """Jobs per second for one run of `workload` on a fresh queue."""
    queue = RedisJobQueue(url, name=f"bench-{uuid.uuid4().hex[:8]}", driver=driver)
    async with JobService(queue=queue, worker_pool=AsyncWorkerPool(queue)) as svc:
        svc.register_handler("noop", noop)
        if workload == "e2e":
            await batch(svc, n)
        bench: Bench = {"submit": submit, "batch": batch, "e2e": e2e}[workload]
        began = time.perf_counter()
        await bench(svc, n)
        return n / (time.perf_counter() - began)


def measure(url: str, backend: str, driver: str, workload: str, n: int, repeat: int) -> float:
    """The median jobs per second over `repeat` runs, each in its own event loop."""
    runs = [anyio.run(_measure, url, driver, workload, n, backend=backend) for _ in range(repeat)]
    return statistics.median(runs)


@contextlib.contextmanager
def redis(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from benchpeers import _procs

    with _procs.redis_server() as private:
        yield private


def report(results: dict[tuple[str, str, str], float]) -> None:
    versus = (("redis-py", "trio/coredis ÷ redis-py"), ("resp", "trio/coredis ÷ resp"))
    head = f"{'workload':<8}" + "".join(f"{b + '/' + d:>18}" for b, d in CONFIGS)
    print(head + "".join(f"{label:>26}" for _, label in versus))
    ratios: dict[str, list[float]] = {driver: [] for driver, _ in versus}
    for w in WORKLOADS:
        row = [results[(b, d, w)] for b, d in CONFIGS]
        line = f"{w:<8}" + "".join(f"{v:>14,.0f}/s  " for v in row)
        for driver, _ in versus:
            ratio = results[("trio", "coredis", w)] / results[("asyncio", driver, w)]
            ratios[driver].append(ratio)
            line += f"{ratio:>25.2f}x"
        print(line)
    for driver, label in versus:
        mean = statistics.geometric_mean(ratios[driver])
        print(f"{label}, throughput (geometric mean): {mean:.2f}x "
              f"(takes {1 / mean:.2f}x the time)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000, help="jobs per run (default 2000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure, median kept")
    ap.add_argument("--redis-url", help="a dedicated Redis to use instead of a private one")
    args = ap.parse_args(argv)
    results = {}
    with redis(args.redis_url) as url:
        for backend, driver in CONFIGS:
            for w in WORKLOADS:
                results[(backend, driver, w)] = measure(
                    url, backend, driver, w, args.jobs, args.repeat
                )
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
