"""The consumer reaper: consumers of worker pools that are gone leave the consumer groups
once they hold nothing, while a consumer holding entries stays; a pool that stops leaves by
itself."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis

from streamjobs import AsyncWorkerPool, JobDefinition, JobService, RedisJobQueue, Timings

pytestmark = pytest.mark.anyio

#: Fast leases, and a reaper that passes every 0.2 s (±25%).
REAPING = Timings(lease=1.0, reclaim_interval=0.2, heartbeat=0.5, reap_interval=0.2)


def consumers(raw: redis.Redis, svc: JobService) -> set[str]:
    """Every consumer name in the queue's groups, across the priority streams."""
    names: set[str] = set()
    for stream in svc.queue.keys.streams:
        names.update(c["name"] for c in raw.xinfo_consumers(stream, "workers"))
    return names


async def echo(job: JobDefinition, progress: Any) -> Any:
    return job.args[0]


async def test_a_gone_pools_consumer_leaves_the_groups_once_its_jobs_are_taken_back(
    redis_url: str, queue_name: str, raw: redis.Redis
) -> None:
    queue = RedisJobQueue(redis_url, name=queue_name)
    svc = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=REAPING))
    async with svc:
        taken_back = await svc.submit_job("echo", args=(1,))
        await queue.start("gone-pool", 1, lease_ms=200)  # killed: no heartbeat, no stop
        await svc.submit_job("echo", args=(2,))
        await queue.start("stalled-pool", 1, lease_ms=60_000)  # holds its job throughout
        assert {"gone-pool", "stalled-pool"} <= consumers(raw, svc)
        svc.register_handler("echo", echo)
        await svc.start_workers(1)
        assert (await svc.wait_for_result(taken_back, timeout=10)).result == 1
        for _ in range(60):  # reaped within a few passes of 0.2 s
            if "gone-pool" not in consumers(raw, svc):
                break
            await anyio.sleep(0.05)
        left = consumers(raw, svc)
    assert "gone-pool" not in left
    assert "stalled-pool" in left  # still holds an entry: never dropped with its lease
    assert svc.worker_pool.id in left  # a live pool is left alone


async def test_a_pool_that_stops_leaves_the_consumer_groups(
    redis_url: str, queue_name: str, raw: redis.Redis
) -> None:
    queue = RedisJobQueue(redis_url, name=queue_name)
    svc = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=REAPING))
    async with svc:
        svc.register_handler("echo", echo)
        await svc.start_workers(1)
        job_id = await svc.submit_job("echo", args=(1,))
        await svc.wait_for_result(job_id, timeout=10)
        assert svc.worker_pool.id in consumers(raw, svc)
        await svc.stop_workers()
        assert svc.worker_pool.id not in consumers(raw, svc)
