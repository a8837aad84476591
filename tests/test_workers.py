"""Worker management: graceful and immediate stops, scaling, the registry across processes,
metrics, and the environment variables of the guide."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis

from streamjobs import AsyncWorkerPool, JobDefinition, JobService, JobStatus, RedisJobQueue
from streamjobs.async_worker import Timings
from tests._redis import RedisProcess
from tests.conftest import FAST

pytestmark = pytest.mark.anyio


def sleeper(started: anyio.Event, seconds: float) -> Any:
    async def handler(job: JobDefinition, progress: Any) -> str:
        started.set()
        await anyio.sleep(seconds)
        return "slept"

    return handler


async def test_a_graceful_stop_lets_the_running_job_finish(svc: JobService) -> None:
    started = anyio.Event()
    svc.register_handler("sleep", sleeper(started, 0.5))
    await svc.start_workers(1)
    job_id = await svc.submit_job("sleep")
    await started.wait()
    await svc.stop_workers(graceful=True)
    result = await svc.get_job_result(job_id)
    assert result is not None and (result.status, result.result) == (JobStatus.COMPLETED, "slept")


async def test_an_immediate_stop_hands_the_running_job_back_at_once(
    svc: JobService, raw: redis.Redis, redis_url: str, queue_name: str
) -> None:
    started = anyio.Event()
    svc.register_handler("sleep", sleeper(started, 30))
    await svc.start_workers(1)
    job_id = await svc.submit_job("sleep")
    await started.wait()
    await svc.stop_workers(graceful=False)
    record = await svc.queue.record(job_id)
    assert (record["status"], record["attempts"]) == ("PENDING", "0")
    stream = svc.queue.keys.streams[2]
    assert raw.xpending(stream, "workers")["pending"] == 0 and raw.xlen(stream) == 1
    async with JobService(redis_url, name=queue_name) as other:
        other.register_handler("sleep", sleeper(anyio.Event(), 0))
        await other.start_workers(1)
        result = await other.wait_for_result(job_id, timeout=5)  # no lease to wait out
    assert (result.status, result.attempts) == (JobStatus.COMPLETED, 1)


async def test_scaling_down_lets_busy_workers_finish_first(svc: JobService) -> None:
    started = anyio.Event()
    svc.register_handler("sleep", sleeper(started, 0.4))
    await svc.start_workers(4)
    job_id = await svc.submit_job("sleep")
    await started.wait()
    await svc.scale_workers(1)
    assert len(await svc.get_workers()) <= 2
    result = await svc.wait_for_result(job_id, timeout=5)
    assert result.status is JobStatus.COMPLETED
    assert len(await svc.get_workers()) == 1


async def test_get_workers_lists_every_pool_on_the_queue(
    svc: JobService, redis_url: str, queue_name: str
) -> None:
    await svc.start_workers(2)
    queue = RedisJobQueue(redis_url, name=queue_name)
    async with JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST)) as other:
        await other.start_workers(3)
        workers = await svc.get_workers()
        assert len(workers) == 5 and len({w.pool for w in workers}) == 2
        assert all(w.healthy and w.status == "idle" and w.uptime >= 0 for w in workers)
        assert (await svc.get_metrics())["workers"]["total"] == 5
    assert len(await svc.get_workers()) == 2


async def test_worker_counters_follow_completed_and_failed_jobs(svc: JobService) -> None:
    async def maybe(job: JobDefinition, progress: Any) -> None:
        if job.args[0]:
            raise ValueError("asked to fail")

    svc.register_handler("maybe", maybe)
    await svc.start_workers(1)
    ids = [await svc.submit_job("maybe", args=(fail,), max_retries=0) for fail in (0, 0, 1)]
    for job_id in ids:
        await svc.wait_for_result(job_id, timeout=10)
    for _ in range(50):  # the counters move a moment after the outcome is recorded
        [worker] = await svc.get_workers()
        if worker.jobs_completed + worker.jobs_failed == 3:
            break
        await anyio.sleep(0.02)
    assert (worker.jobs_completed, worker.jobs_failed) == (2, 1)


async def test_metrics_count_jobs_by_state_and_priority(svc: JobService) -> None:
    await svc.submit_job("x", priority="high")
    await svc.submit_job("x", priority="high")
    await svc.submit_job("x", priority="low")
    await svc.submit_job("x", delay=60)
    cancelled = await svc.submit_job("x")
    assert await svc.cancel_job(cancelled)
    queue = (await svc.get_metrics())["queue"]
    counts = (queue["pending"], queue["scheduled"], queue["running"], queue["cancelled"])
    assert counts == (3, 1, 0, 1)
    assert queue["by_priority"] == {"critical": 0, "high": 2, "normal": 0, "low": 1}


async def test_job_worker_count_sets_the_default_number_of_workers(
    svc: JobService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_WORKER_COUNT", "3")
    await svc.start_workers()
    assert len(await svc.get_workers()) == 3


async def test_redis_url_from_the_environment_is_used_by_default(
    redis_url: str, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    async with JobService(name=queue_name) as service:
        job_id = await service.submit_job("x")
        assert await service.get_job_status(job_id) is JobStatus.PENDING


async def test_an_idle_pool_wakes_at_once_for_jobs_queued_again_not_only_for_new_ones(
    redis_url: str, queue_name: str
) -> None:
    """A reader that blocks for a minute between looks still starts, without delay, a job
    the promoter moved (a scheduled job), one another pool handed back, and a dead letter
    queued again: each of those scripts leaves a ready token."""
    dozy = Timings(lease=60.0, reclaim_interval=60.0, heartbeat=1.0)
    queue = RedisJobQueue(redis_url, name=queue_name)
    pool = AsyncWorkerPool(queue, timings=dozy)
    async with JobService(queue=queue, worker_pool=pool) as svc:
        async def ok(job: JobDefinition, progress: Any) -> str:
            return "ok"

        async def broken(job: JobDefinition, progress: Any) -> None:
            raise RuntimeError("broken")

        svc.register_handler("ok", ok)
        svc.register_handler("flaky", broken)
        handed = await svc.submit_job("ok")
        [held] = await svc.queue.start("stopping-pool", 1)  # another pool, about to stop
        await svc.start_workers(2)
        await anyio.sleep(0.2)  # both readers now block on the ready list
        scheduled = await svc.submit_job("ok", delay=0.3)
        assert (await svc.wait_for_result(scheduled, timeout=5)).result == "ok"

        dead = await svc.submit_job("flaky", max_retries=0)
        assert (await svc.wait_for_result(dead, timeout=5)).status is JobStatus.DEAD_LETTER
        svc.register_handler("flaky", ok)
        assert await svc.retry_dead_letter(dead)
        assert (await svc.wait_for_result(dead, timeout=5)).result == "ok"

        assert held.job_id == handed and await svc.queue.release("stopping-pool") == 1
        assert (await svc.wait_for_result(handed, timeout=5)).result == "ok"


async def test_an_idle_pool_reads_once_per_job_it_is_woken_for(redis_process: RedisProcess) -> None:
    """Once a read came back short (the queue ran dry), the reader waits on the ready list
    at once: the start.lua sent with that wait is the job's only read, with no empty read
    between one job and the next wait."""
    dozy = Timings(lease=60.0, reclaim_interval=60.0, heartbeat=1.0)
    queue = RedisJobQueue(redis_process.url)
    async with JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=dozy)) as svc:
        async def ok(job: JobDefinition, progress: Any) -> None:
            return None

        svc.register_handler("ok", ok)
        await svc.start_workers(10)  # a read is for 5 (half the pool): one job is short
        await anyio.sleep(0.2)  # the reader now blocks on the ready list
        raw = redis.Redis.from_url(redis_process.url)
        raw.config_resetstat()
        for _ in range(10):
            await svc.wait_for_result(await svc.submit_job("ok"), timeout=5)
        await anyio.sleep(0.1)  # the reader is back in its wait
        reads = raw.info("commandstats").get("cmdstat_xreadgroup", {}).get("calls", 0)
        raw.close()
    # one start.lua per job, which reads each of the four streams once
    assert reads <= 4 * 10
