"""What every peer's benchmark handler records, and how the harness reads it back.

Every peer runs the same handler body, ``job(i, sleep)``: it optionally sleeps (stamping its
start first), then records in one pipelined round trip the wall-clock time it started (for
the latency workload), bumps a done counter and stamps the first/last job times.

Counting a Redis counter INCR'd by the handler is the completion signal for every peer: peers'
own result/status APIs differ in cost (some do not store results at all by default), so
polling them would measure the poller, not the queue. Each peer pays the same extra round trip.
"""

from __future__ import annotations

import os
import time

import redis
import redis.asyncio as aredis

URL_ENV = "BENCH_REDIS_URL"
DONE = "bench:done"
FIRST = "bench:first"
LAST = "bench:last"
STARTS = "bench:starts"
KEYS = (DONE, FIRST, LAST, STARTS)

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


def record_sync(i: int, sleep: float) -> None:
    """Handler body for thread/process-based peers."""
    global _sync
    t0 = time.time()
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
    if _async is None:
        _async = aredis.Redis.from_url(redis_url())
    if sleep:
        await _async.hset(STARTS, str(i), repr(t0))
        await asyncio.sleep(sleep)
    pipe = _async.pipeline(transaction=False)
    _queue_record(pipe, i, t0)
    await pipe.execute()
