"""End-to-end throughput and Redis CPU per job on each topology streamjobs runs on.

Side by side, in one run, on private redis-servers this script starts and ends:

- one node, one partition (today's layout);
- one node, N partitions;
- a cluster of 3 primaries, N partitions spread over them.

Each runs the same no-op jobs through the same worker processes (``--processes``, each with
``--concurrency`` workers) while the submitter adds them in bulk. Reported per topology: jobs/s
from first submit to last completion, and the Redis CPU (user + sys, summed over the nodes)
spent per job, which is what bounds a topology once its Redis cores are saturated: one core
at c µs per job serves at most 1e6 / c jobs/s, so each added primary adds that much headroom.
On a small machine the workers and the submitter share the cores with every redis-server:
the table shows the shape, not the ceiling.

    python scripts/bench_topologies.py [--jobs 20000] [--partitions 6] [--processes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from benchpeers._procs import (  # noqa: E402
    REPO_DIR,
    kill_worker,
    redis_cluster,
    redis_server,
)

from streamjobs import JobService  # noqa: E402

CHUNK = 1000  # jobs per submit_many call
POLL_S = 0.1  # how often the submitter reads the completed count


@dataclass
class Topology:
    name: str
    partitions: int
    cluster: bool


@dataclass
class Run:
    seconds: float
    redis_cpu_s: float
    jobs: int

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def cpu_us_per_job(self) -> float:
        return self.redis_cpu_s / self.jobs * 1e6


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=20_000, help="jobs per run")
    ap.add_argument("--partitions", type=int, default=6, help="N for the partitioned rows")
    ap.add_argument("--processes", type=int, default=3, help="worker processes per run")
    ap.add_argument("--concurrency", type=int, default=100, help="workers per process")
    ap.add_argument("--repeat", type=int, default=3, help="runs per topology (median kept)")
    ap.add_argument("--topologies", default="one,one-partitioned,cluster", help="comma-separated")
    ap.add_argument("--timeout", type=float, default=300, help="longest wait for one run (s)")
    ap.add_argument("--worker", nargs=3, metavar=("URL", "PARTITIONS", "CONCURRENCY"),
                    help=argparse.SUPPRESS)  # fmt: skip
    return ap.parse_args(argv)


def _cpu_seconds(urls: list[str]) -> float:
    """User + sys CPU the Redis servers behind `urls` have spent so far."""
    total = 0.0
    for url in urls:
        client = redis.Redis.from_url(url)
        try:
            cpu = client.info("cpu")
            total += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        finally:
            client.close()
    return total


def _service(url: str, partitions: int) -> JobService:
    """A service on the run's queue (partitions=1 passes no argument: today's call)."""
    return JobService(url) if partitions == 1 else JobService(url, partitions=partitions)


async def _noop(job: object, progress_callback: object) -> None:
    """The benchmark's job: nothing, so that the queue's own cost is what is measured."""


async def _serve(url: str, partitions: int, concurrency: int) -> None:
    """A worker process: serve until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with _service(url, partitions) as svc:
        svc.register_handler("noop", _noop)
        await svc.start_workers(concurrency)
        await stop.wait()


@contextlib.contextmanager
def _workers(url: str, args: argparse.Namespace, partitions: int, logdir: Path) -> Iterator[None]:
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_DIR),
               os.environ.get("PYTHONPATH")])))  # fmt: skip
    try:
        for n in range(args.processes):
            log = (logdir / f"worker-{n}.log").open("ab")
            cmd = [sys.executable, __file__, "--worker", url, str(partitions),
                   str(args.concurrency)]  # fmt: skip
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))  # fmt: skip
            log.close()
        yield
    finally:
        for proc in procs:
            kill_worker(proc, signal.SIGTERM)


async def _measure(url: str, nodes: list[str], partitions: int, jobs: int, timeout: float) -> Run:
    """Submit `jobs` no-op jobs in bulk while the workers run them; time the whole of it."""
    async with _service(url, partitions) as svc:
        deadline = time.monotonic() + 60
        while len(await svc.get_workers()) == 0:  # the pools have registered
            if time.monotonic() > deadline:
                raise RuntimeError("no worker registered within 60 s: see the worker logs")
            await asyncio.sleep(0.1)
        done_before = (await svc.get_metrics())["queue"]["completed"]
        cpu_before = _cpu_seconds(nodes)
        started = time.monotonic()
        for first in range(0, jobs, CHUNK):
            await svc.submit_many(
                {"handler": "noop", "max_retries": 0} for _ in range(min(CHUNK, jobs - first))
            )
        deadline = started + timeout
        while (await svc.get_metrics())["queue"]["completed"] - done_before < jobs:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the run did not finish {jobs} jobs within {timeout:.0f} s")
            await asyncio.sleep(POLL_S)
        seconds = time.monotonic() - started
        return Run(seconds, _cpu_seconds(nodes) - cpu_before, jobs)


@contextlib.contextmanager
def _redis(topology: Topology) -> Iterator[list[str]]:
    """The node URLs of a fresh topology (the first is the one clients are given)."""
    if topology.cluster:
        with redis_cluster(3) as nodes:
            yield nodes
    else:
        with redis_server() as url:
            yield [url]


def run_topology(topology: Topology, args: argparse.Namespace, logdir: Path) -> list[Run]:
    runs = []
    for _ in range(args.repeat):
        with _redis(topology) as nodes, _workers(nodes[0], args, topology.partitions, logdir):
            run = asyncio.run(_measure(nodes[0], nodes, topology.partitions, args.jobs,
                                       args.timeout))  # fmt: skip
        runs.append(run)
        print(f"  {topology.name}: {run.rate:,.0f} jobs/s, {run.cpu_us_per_job:.1f} µs Redis "
              f"CPU per job", file=sys.stderr)  # fmt: skip
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        url, partitions, concurrency = args.worker
        asyncio.run(_serve(url, int(partitions), int(concurrency)))
        return 0
    n = args.partitions
    known = {
        "one": Topology("one node, 1 partition", 1, False),
        "one-partitioned": Topology(f"one node, {n} partitions", n, False),
        "cluster": Topology(f"3-primary cluster, {n} partitions", n, True),
    }
    chosen = [known[name] for name in args.topologies.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-topologies-") as logdir:
        for topology in chosen:
            runs = run_topology(topology, args, Path(logdir))
            rate = statistics.median(r.rate for r in runs)
            cpu = statistics.median(r.cpu_us_per_job for r in runs)
            rows.append((topology, rate, cpu))
    print("| topology | jobs/s | Redis CPU per job | one primary's ceiling "
          "| its primaries' ceiling |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for topology, rate, cpu in rows:
        primaries = 3 if topology.cluster else 1
        print(f"| {topology.name} | {rate:,.0f} | {cpu:.1f} µs | {1e6 / cpu:,.0f} jobs/s | "
              f"{primaries * 1e6 / cpu:,.0f} jobs/s |")  # fmt: skip
    print(f"({args.jobs} no-op jobs per run, {args.processes} worker processes x "
          f"{args.concurrency} workers, median of {args.repeat}; {os.cpu_count()} cores shared "
          "by workers, submitter and every redis-server: the shape, not the ceiling)")  # fmt: skip
    print("one primary's ceiling = 1e6 / Redis CPU µs per job: what each added primary buys "
          "once the partitions outnumber the primaries")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
