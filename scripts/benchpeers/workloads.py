"""The six workloads, run against any :class:`Peer` on a Redis the harness owns.

Each measurement starts from a flushed Redis and a freshly opened producer, and every worker
process it starts is killed (by process group) before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import hiredis
import redis

from . import _probe, _procs
from ._peer import Peer

Figures = dict[str, float]
FILL_WIDTH = 32  # concurrent one-job submits when filling a queue (arq's pool caps below 200)


@dataclass(frozen=True)
class Sizes:
    """Workload sizes and caps (defaults sized for ~20 minutes for all peers on 2 cores).
    The end-to-end drain is the longest: at 5,000 jobs the fastest peer drained for about
    0.3 s, a window one noisy moment on a shared machine could swing by a third."""

    enqueue: int = 5000
    e2e: int = 20_000
    latency: int = 200
    memory: int = 50_000
    latency_interval: float = 0.02
    recovery_job_s: float = 2.0
    recovery_cap: float = 90.0
    timeout: float = 240.0


class WorkloadError(RuntimeError):
    """A workload could not produce a figure (a worker died, jobs never finished...)."""


@functools.cache
def _client(url: str) -> redis.Redis:
    """One client per Redis, kept: the harness polls every 10 ms while a worker drains, and a
    fresh connection per poll took CPU from the worker and Redis being measured."""
    return redis.Redis.from_url(url, socket_timeout=10)


def _done(url: str) -> int:
    return int(_client(url).get(_probe.DONE) or 0)


async def wait_for(cond: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Poll ``cond`` without blocking the event loop; bounded by ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(interval)
    return cond()


@contextlib.asynccontextmanager
async def fresh_peer(cls: type[Peer], url: str) -> AsyncIterator[Peer]:
    _client(url).flushall()
    peer = cls(url)
    await peer.open()
    try:
        yield peer
    finally:
        await peer.close()


@contextlib.contextmanager
def running_worker(peer: Peer, log: Path) -> Iterator[Callable[[], bool]]:
    """Run one worker process; yield a function telling whether it is still alive."""
    proc = _procs.spawn_worker(peer.worker_command(), peer.url, log)
    try:
        yield lambda: proc.poll() is None
    finally:
        _procs.kill_worker(proc)


async def fill(peer: Peer, ids: Sequence[int]) -> None:
    """Queue jobs as fast as the peer allows (only where enqueue speed is not measured)."""
    if peer.has_bulk:
        for start in range(0, len(ids), 1000):
            await peer.submit_bulk(ids[start : start + 1000])
    elif peer.is_async:
        for start in range(0, len(ids), FILL_WIDTH):
            await asyncio.gather(*(peer.submit(i) for i in ids[start : start + FILL_WIDTH]))
    else:
        for i in ids:
            await peer.submit(i)


async def enqueue_one(cls: type[Peer], url: str, sizes: Sizes, log: Path) -> Figures:
    """Jobs submitted one by one, each awaited; beside it, the round-trip floor it cannot beat."""
    async with fresh_peer(cls, url) as peer:
        t0 = time.perf_counter()
        for i in range(sizes.enqueue):
            await peer.submit(i)
        elapsed = time.perf_counter() - t0
    return {"jobs_per_s": sizes.enqueue / elapsed, "ping_per_s": ping_floor(url, sizes.enqueue)}


def ping_floor(url: str, count: int) -> float:
    """PINGs per second over a bare socket, one by one: no client library, no parsing. A
    submit that waits for Redis to confirm it can go no faster than this, in any queue."""
    options = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    address = (options.get("host") or "localhost", int(options.get("port") or 6379))
    with socket.create_connection(address, timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ping = hiredis.pack_command(("PING",))
        if options.get("password") is not None:
            user = options.get("username") or "default"
            sock.sendall(hiredis.pack_command(("AUTH", user, options["password"])))
            if not sock.recv(64).startswith(b"+OK"):
                raise WorkloadError("the benchmark Redis refused AUTH")
        t0 = time.perf_counter()
        for _ in range(count):
            sock.sendall(ping)
            if sock.recv(64) != b"+PONG\r\n":
                raise WorkloadError("PING got an unexpected reply")
        return count / (time.perf_counter() - t0)


async def enqueue_bulk(cls: type[Peer], url: str, sizes: Sizes, log: Path) -> Figures:
    if not cls.has_bulk:
        raise NotImplementedError("n/a")
    async with fresh_peer(cls, url) as peer:
        t0 = time.perf_counter()
        await peer.submit_bulk(list(range(sizes.enqueue)))
        elapsed = time.perf_counter() - t0
    return {"jobs_per_s": sizes.enqueue / elapsed}


def _float(url: str, key: str) -> float:
    value = _client(url).get(key)
    if value is None:
        raise WorkloadError(f"{key} was never recorded")
    return float(value)


def _span(url: str) -> tuple[float, float]:
    """The first no-op job's start and the last one's end, over every worker process."""
    client = _client(url)
    firsts, lasts = client.hvals(_probe.FIRSTS), client.hvals(_probe.LASTS)
    if not firsts or not lasts:
        raise WorkloadError("no no-op job was ever recorded")
    return min(map(float, firsts)), max(map(float, lasts))


async def _wait_done(url: str, n: int, alive: Callable[[], bool], timeout: float) -> None:
    ok = await wait_for(lambda: _done(url) >= n or not alive(), timeout, 0.01)
    done = _done(url)
    if done < n:
        why = "worker exited" if not alive() else f"timeout {timeout:.0f}s"
        raise WorkloadError(f"{done}/{n} jobs done ({why})")
    assert ok


async def e2e(cls: type[Peer], url: str, sizes: Sizes, log: Path) -> Figures:
    """Drain N queued jobs with one worker process.

    The headline rate runs from the first job's start to the last job's end (both stamped by the
    handler), so it measures draining, not interpreter start-up; the rate from process spawn is
    kept too (``jobs_per_s_from_spawn``).
    """
    async with fresh_peer(cls, url) as peer:
        await fill(peer, [_probe.NOOP] * sizes.e2e)
        spawned = time.time()
        with running_worker(peer, log) as alive:
            await _wait_done(url, sizes.e2e, alive, sizes.timeout)
        first, last = _span(url)
    return {
        "jobs_per_s": sizes.e2e / max(last - first, 1e-9),
        "jobs_per_s_from_spawn": sizes.e2e / max(last - spawned, 1e-9),
    }


async def _warm_up(peer: Peer, alive: Callable[[], bool], timeout: float) -> None:
    """Wait until the worker has run one job, then clear the probe keys."""
    await peer.submit(-1)
    await _wait_done(peer.url, 1, alive, timeout)
    _client(peer.url).delete(*_probe.KEYS)


async def latency(cls: type[Peer], url: str, sizes: Sizes, log: Path) -> Figures:
    """Enqueue-to-start on an idle worker: one job every ``latency_interval`` seconds."""
    n = sizes.latency
    submitted: dict[int, float] = {}
    async with fresh_peer(cls, url) as peer:
        with running_worker(peer, log) as alive:
            await _warm_up(peer, alive, sizes.timeout)
            for i in range(n):
                submitted[i] = time.time()
                await peer.submit(i)
                await asyncio.sleep(sizes.latency_interval)
            await _wait_done(url, n, alive, 30.0)
        starts = _client(url).hgetall(_probe.STARTS)
    waits = sorted((float(starts[str(i).encode()]) - t) * 1000 for i, t in submitted.items())
    return {"p50_ms": statistics.median(waits), "p99_ms": waits[int(0.99 * (n - 1))]}


async def memory(cls: type[Peer], url: str, sizes: Sizes, log: Path) -> Figures:
    """Redis ``used_memory`` growth per pending job (no worker running)."""
    async with fresh_peer(cls, url) as peer:
        await peer.submit(-1)  # let the producer create its connections and keys first
        before = int(_client(url).info("memory")["used_memory"])
        await fill(peer, list(range(sizes.memory)))
        after = int(_client(url).info("memory")["used_memory"])
    return {"bytes_per_job": (after - before) / sizes.memory}


async def recovery(cls: type[Peer], url: str, sizes: Sizes, log: Path) -> Figures:
    """SIGKILL a worker mid-job; time until a second worker completes that job.

    Returns ``{"never": cap}`` when it did not complete within ``recovery_cap`` seconds.
    """
    async with fresh_peer(cls, url) as peer:
        with running_worker(peer, log) as alive:
            await peer.submit(0, sizes.recovery_job_s)
            started = await wait_for(lambda: _client(url).hexists(_probe.STARTS, "0"), 60, 0.002)
            if not started or not alive():
                raise WorkloadError("the job never started on the first worker")
        killed = time.time()  # running_worker's exit SIGKILLed the group
        with running_worker(peer, log):
            if not await wait_for(lambda: _done(url) >= 1, sizes.recovery_cap, 0.05):
                return {"never": sizes.recovery_cap}
        return {"seconds": _float(url, _probe.LAST) - killed}


Workload = Callable[[type[Peer], str, Sizes, Path], Awaitable[Figures]]
WORKLOADS: dict[str, Workload] = {
    "enqueue-one": enqueue_one,
    "enqueue-bulk": enqueue_bulk,
    "e2e": e2e,
    "latency": latency,
    "memory": memory,
    "recovery": recovery,
}
