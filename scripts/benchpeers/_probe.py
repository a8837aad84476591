"""What every peer's benchmark handler records, and how the harness reads it back.

Every peer runs the same handler body, ``job(i, sleep)``: it optionally sleeps (stamping its
start first), then records in one pipelined round trip the wall-clock time it started (for
the latency workload), bumps a done counter and stamps the first/last job times.

Counting a Redis counter INCR'd by the handler is the completion signal for every peer: peers'
own result/status APIs differ in cost (some do not store results at all by default), so
polling them would measure the poller, not the queue. Each peer pays the same extra round trip.

No-op jobs (``NOOP``, the end-to-end workload) are the exception: a round trip per job would
dwarf the queue being measured, so their handler only counts in memory, and a thread in each
worker process flushes the count and that process's first/last job times every 10 ms.
"""

from __future__ import annotations

import os
import threading
import time

import redis
import redis.asyncio as aredis

URL_ENV = "BENCH_REDIS_URL"
DONE = "bench:done"
FIRST = "bench:first"
LAST = "bench:last"
STARTS = "bench:starts"
FIRSTS = "bench:firsts"  # per worker process: its first no-op job's start
LASTS = "bench:lasts"  # per worker process: its last no-op job's end
KEYS = (DONE, FIRST, LAST, STARTS, FIRSTS, LASTS)
NOOP = -2  # the job id of a no-op job (recorded in memory, flushed in the background)
FLUSH_EVERY_S = 0.01

_sync: redis.Redis | None = None
_async: aredis.Redis | None = None


def redis_url() -> str:
    """The benchmark Redis, passed to workers and producers through the environment."""
    return os.environ.get(URL_ENV, "redis://127.0.0.1:6379/15")


def _queue_record(pipe: redis.client.Pipeline | aredis.client.Pipeline, i: int, t0: float) -> None:
    if i >= 0:
        pipe.hset(STARTS, str(i), repr(t0))
    pipe.set(FIRST, repr(t0), nx=True)
    pipe.incr(DONE)
    pipe.set(LAST, repr(time.time()))


class _Tally:
    """No-op jobs counted in memory; a daemon thread flushes them to Redis."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = self.flushed = 0
        self.first = self.last = 0.0
        self.thread: threading.Thread | None = None

    def bump(self, started: float) -> None:
        with self.lock:
            self.count += 1
            self.first = self.first or started
            self.last = time.time()
            if self.thread is None:
                self.thread = threading.Thread(target=self._flush_forever, daemon=True)
                self.thread.start()

    def _flush_forever(self) -> None:
        client, key = redis.Redis.from_url(redis_url()), str(os.getpid())
        while True:  # a daemon thread: it ends with its worker process
            time.sleep(FLUSH_EVERY_S)
            with self.lock:
                delta, self.flushed = self.count - self.flushed, self.count
                first, last = self.first, self.last
            if delta:
                pipe = client.pipeline(transaction=False)
                pipe.hset(FIRSTS, key, repr(first))
                pipe.hset(LASTS, key, repr(last))
                pipe.incrby(DONE, delta)
                pipe.execute()


_tally = _Tally()


def record_sync(i: int, sleep: float) -> None:
    """Handler body for thread/process-based peers."""
    global _sync
    t0 = time.time()
    if i == NOOP:
        _tally.bump(t0)
        return
    if _sync is None:
        _sync = redis.Redis.from_url(redis_url())
    if sleep:  # a slow job announces its start before it sleeps (the recovery workload)
        _sync.hset(STARTS, str(i), repr(t0))
        time.sleep(sleep)
    pipe = _sync.pipeline(transaction=False)
    _queue_record(pipe, i, t0)
    pipe.execute()


async def record_async(i: int, sleep: float) -> None:
    """Handler body for asyncio-based peers."""
    import asyncio

    global _async
    t0 = time.time()
    if i == NOOP:
        _tally.bump(t0)
        return
    if _async is None:
        _async = aredis.Redis.from_url(redis_url())
    if sleep:
        await _async.hset(STARTS, str(i), repr(t0))
        await asyncio.sleep(sleep)
    pipe = _async.pipeline(transaction=False)
    _queue_record(pipe, i, t0)
    await pipe.execute()
