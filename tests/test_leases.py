"""Leases: a dead worker's jobs are taken over, a stale worker cannot overwrite the new
owner's outcome, a job that keeps killing workers is dead-lettered, and a live worker keeps
its long or loop-blocking job."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
import redis

from streamjobs import AsyncWorkerPool, JobDefinition, JobService, JobStatus, RedisJobQueue, Timings
from streamjobs.redis_queue import LeaseLostError

pytestmark = pytest.mark.anyio


async def test_a_job_held_by_a_dead_worker_is_taken_over_after_its_lease(
    svc: JobService,
) -> None:
    job_id = await svc.submit_job("echo", args=(7,))
    await svc.queue.start("ghost-worker", 1)  # a worker that then dies mid-job
    assert await svc.get_job_status(job_id) is JobStatus.RUNNING

    async def echo(job: JobDefinition, progress: Any) -> Any:
        return job.args[0]

    svc.register_handler("echo", echo)
    await svc.start_workers(1)
    result = await svc.wait_for_result(job_id, timeout=10)
    assert (result.status, result.result, result.attempts) == (JobStatus.COMPLETED, 7, 2)
    assert (await svc.queue.record(job_id))["crashes"] == "1"


async def test_a_stale_worker_cannot_record_over_the_new_owners_result(
    svc: JobService,
) -> None:
    job_id = await svc.submit_job("echo", args=("fresh",))
    [stale] = await svc.queue.start("paused-worker", 1)  # paused, then woken up

    async def echo(job: JobDefinition, progress: Any) -> Any:
        return job.args[0]

    svc.register_handler("echo", echo)
    await svc.start_workers(1)
    await svc.wait_for_result(job_id, timeout=10)
    with pytest.raises(LeaseLostError):
        await svc.queue.complete(stale, '"stale result"')
    with pytest.raises(LeaseLostError):
        await svc.queue.retry(stale, "stale error", 1.0)
    assert not await svc.queue.progress(stale, 1, 1, "stale")
    result = await svc.get_job_result(job_id)
    assert result is not None and (result.result, result.attempts) == ("fresh", 2)


async def test_a_job_that_keeps_killing_workers_is_dead_lettered(svc: JobService) -> None:
    job_id = await svc.submit_job("poison", max_retries=10)
    queue, cursors = svc.queue, ["0-0"] * 4
    await queue.start("victim-1", 1)
    for n in range(2, 5):  # victims 1-3 die running it; the fourth reclaimer buries it
        await anyio.sleep(0.06)
        got = await queue.reclaim(f"victim-{n}", 1, 50, 3, cursors)
        assert [g.job_id for g in got] == ([job_id] if n < 4 else [])
    result = await svc.get_job_result(job_id)
    assert result is not None and result.status is JobStatus.DEAD_LETTER
    assert result.error == "its worker was lost 3 times while running it"
    [dead] = await svc.get_dead_letters()
    assert dead.id == job_id and dead.handler == "poison"


async def test_a_worker_resumed_after_its_job_was_buried_for_crashes_is_refused_as_stale(
    svc: JobService,
) -> None:
    job_id = await svc.submit_job("poison", max_retries=10)
    queue, cursors = svc.queue, ["0-0"] * 4
    [stalled] = await queue.start("victim-1", 1)
    for n in range(2, 5):  # each owner stalls past its lease; the fourth reclaimer buries it
        await anyio.sleep(0.06)
        got = await queue.reclaim(f"victim-{n}", 1, 50, 3, cursors)
        stalled = got[0] if got else stalled
    assert stalled.consumer == "victim-3"  # the last owner, whose attempt was buried
    assert await svc.get_job_status(job_id) is JobStatus.DEAD_LETTER
    assert not await queue.progress(stalled, 1, 1, "resumed")
    for settle in (
        lambda: queue.complete(stalled, '"late result"'),
        lambda: queue.retry(stalled, "late error", 1.0),
        lambda: queue.fail(stalled, "late failure"),
        lambda: queue.dead_letter(stalled, "late error", "late"),
    ):
        with pytest.raises(LeaseLostError):
            await settle()
    result = await svc.get_job_result(job_id)
    assert result is not None and result.status is JobStatus.DEAD_LETTER
    assert result.error == "its worker was lost 3 times while running it"
    assert [d.id for d in await svc.get_dead_letters()] == [job_id]


async def test_reclaim_finds_every_lapsed_entry_across_passes(svc: JobService) -> None:
    ids = [await svc.submit_job("echo", args=(i,)) for i in range(30)]
    await svc.queue.start("ghost", 30)

    async def echo(job: JobDefinition, progress: Any) -> Any:
        return job.args[0]

    svc.register_handler("echo", echo)
    await svc.start_workers(4)
    results = [await svc.wait_for_result(i, timeout=20) for i in ids]
    assert [r.result for r in results] == list(range(30))
    assert all(r.attempts == 2 for r in results)


async def test_a_live_worker_keeps_a_job_that_runs_longer_than_its_lease(
    svc: JobService, redis_url: str, queue_name: str
) -> None:
    runs: list[int] = []

    async def long(job: JobDefinition, progress: Any) -> str:
        runs.append(1)
        await anyio.sleep(2.5)  # the lease is 1 s
        return "done"

    svc.register_handler("long", long)
    await svc.start_workers(1)
    job_id = await svc.submit_job("long")
    await anyio.sleep(0.2)
    async with JobService(queue=svc.queue.__class__(redis_url, name=queue_name)) as rival:
        rival.register_handler("long", long)
        await rival.start_workers(1)  # would take the job over if the lease lapsed
        result = await svc.wait_for_result(job_id, timeout=10)
    assert (result.result, result.attempts, len(runs)) == ("done", 1, 1)


async def test_a_handler_that_blocks_the_event_loop_keeps_its_lease(
    svc: JobService, redis_url: str, queue_name: str
) -> None:
    runs: list[int] = []

    async def blocks_the_loop(job: JobDefinition, progress: Any) -> str:
        runs.append(1)
        time.sleep(2.5)  # noqa: ASYNC251 - the point: the loop is stuck past the 1 s lease
        return "survived"

    svc.register_handler("blocker", blocks_the_loop)
    await svc.start_workers(1)
    async with JobService(queue=svc.queue.__class__(redis_url, name=queue_name)) as rival:
        rival.register_handler("blocker", blocks_the_loop)
        await rival.start_workers(1)
        job_id = await svc.submit_job("blocker", timeout=30)
        result = await svc.wait_for_result(job_id, timeout=15)
    assert (result.result, len(runs)) == ("survived", 1)


def _pool_service(redis_url: str, queue_name: str, timings: Timings) -> JobService:
    queue = RedisJobQueue(redis_url, name=queue_name)
    return JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=timings))


async def test_a_short_lease_pool_does_not_take_over_a_long_lease_pools_live_job(
    redis_url: str, queue_name: str
) -> None:
    runs: list[str] = []
    running = anyio.Event()

    async def slow(job: JobDefinition, progress: Any) -> str:
        runs.append(job.id)
        running.set()
        await anyio.sleep(3)  # renewed every 5/3 s: idle well past the short pool's 0.3 s
        return "once"

    long_lease = _pool_service(redis_url, queue_name, Timings(lease=5.0))
    short_lease = _pool_service(
        redis_url, queue_name, Timings(lease=0.3, reclaim_interval=0.3, heartbeat=0.15)
    )
    async with long_lease, short_lease:
        for svc in (long_lease, short_lease):
            svc.register_handler("slow", slow)
        await long_lease.start_workers(1)
        job_id = await long_lease.submit_job("slow", timeout=30)
        with anyio.fail_after(5):
            await running.wait()
        await short_lease.start_workers(1)  # reclaims every 0.3 s while the job runs
        result = await long_lease.wait_for_result(job_id, timeout=15)
    assert (result.status, result.result, result.attempts) == (JobStatus.COMPLETED, "once", 1)
    assert runs == [job_id]


async def test_a_dead_pools_short_lease_job_returns_within_its_lease_to_a_long_lease_pool(
    redis_url: str, queue_name: str
) -> None:
    svc = _pool_service(redis_url, queue_name, Timings(lease=5.0, reclaim_interval=0.2))
    async with svc:
        job_id = await svc.submit_job("echo", args=(3,))
        # a pool with a 0.3 s lease registers, starts the job, then dies
        await svc.queue.heartbeat("short-lease-pool", 10, {"lease": "300"})
        await svc.queue.start("short-lease-pool", 1, lease_ms=300)
        lost_at = time.monotonic()

        async def echo(job: JobDefinition, progress: Any) -> Any:
            return job.args[0]

        svc.register_handler("echo", echo)
        await svc.start_workers(1)
        result = await svc.wait_for_result(job_id, timeout=10)
        back_after = time.monotonic() - lost_at
    assert (result.status, result.result, result.attempts) == (JobStatus.COMPLETED, 3, 2)
    assert back_after < 2.5, f"taken over after {back_after:.2f} s; its lease was 0.3 s"


async def test_a_reclaim_pass_reads_no_entry_younger_than_the_shortest_lease_on_the_queue(
    svc: JobService, raw: redis.Redis
) -> None:
    def xrange_calls() -> int:
        return int(raw.info("commandstats").get("cmdstat_xrange", {}).get("calls", 0))

    for i in range(50):
        await svc.submit_job("slow", args=(i,))
    await svc.queue.heartbeat("long-lease-pool", 10, {"lease": "60000"})
    await svc.queue.start("long-lease-pool", 50, lease_ms=60_000)
    await anyio.sleep(0.2)  # idle past a small floor, far from any lease on the queue
    before = xrange_calls()
    assert await svc.queue.reclaim("other-pool", 5, 30_000, 3, ["0-0"] * 4) == []
    assert xrange_calls() == before  # no entry was looked at: none can have lapsed


async def test_a_pool_stays_in_the_registry_past_its_lease_so_its_jobs_lapse_by_it(
    redis_url: str, queue_name: str, raw: redis.Redis
) -> None:
    svc = _pool_service(redis_url, queue_name, Timings(lease=30.0, heartbeat=2.0))
    async with svc:
        await svc.start_workers(1)
        kept_ms = raw.pttl(svc.queue.keys.pool(svc.worker_pool.id))
    assert kept_ms > 30_000  # a pool killed now is still listed, with its lease, when its
    # jobs lapse: reclaim looks no sooner than the shortest lease listed
