"""Status, results, cancellation, expiry, dead letters, events, and connection errors."""

from __future__ import annotations

import contextlib
import gc
from typing import Any

import anyio
import pytest
import redis

from streamjobs import (
    CancelOutcome,
    JobDefinition,
    JobService,
    JobStatus,
    RedisJobQueue,
    RedisUnavailableError,
)
from tests._redis import free_port

pytestmark = pytest.mark.anyio


async def fail(job: JobDefinition, progress: Any) -> None:
    raise RuntimeError(f"job {job.args[0]} broke")


async def test_status_and_result_of_unknown_jobs_are_none(svc: JobService) -> None:
    assert await svc.get_job_status("no-such-job") is None
    assert await svc.get_job_result("no-such-job") is None
    assert not await svc.cancel_job("no-such-job")


async def test_a_result_is_none_until_the_job_is_terminal(svc: JobService) -> None:
    job_id = await svc.submit_job("x")
    assert await svc.get_job_status(job_id) is JobStatus.PENDING
    assert await svc.get_job_result(job_id) is None


async def test_cancelled_pending_and_scheduled_jobs_never_run(svc: JobService) -> None:
    ran: list[str] = []

    async def run(job: JobDefinition, progress: Any) -> None:
        ran.append(job.id)

    pending = await svc.submit_job("run")
    scheduled = await svc.submit_job("run", delay=0.2)
    assert await svc.cancel_job(pending) and await svc.cancel_job(scheduled)
    assert not await svc.cancel_job(pending)
    svc.register_handler("run", run)
    await svc.start_workers(1)
    done = await svc.submit_job("run")
    await svc.wait_for_result(done, timeout=10)
    await anyio.sleep(0.4)
    assert ran == [done]
    assert await svc.get_job_status(pending) is JobStatus.CANCELLED
    result = await svc.get_job_result(scheduled)
    assert result is not None and result.status is JobStatus.CANCELLED


async def test_a_running_job_is_cancelled_and_never_completes(svc: JobService) -> None:
    started = anyio.Event()

    async def slow(job: JobDefinition, progress: Any) -> None:
        started.set()
        await anyio.sleep(0.3)

    svc.register_handler("slow", slow)
    await svc.start_workers(1)
    job_id = await svc.submit_job("slow")
    await started.wait()
    assert await svc.cancel_job(job_id) is CancelOutcome.REQUESTED  # tests/test_cancel_running.py
    assert (await svc.wait_for_result(job_id, timeout=5)).status is JobStatus.CANCELLED


async def test_results_expire_after_the_result_ttl_but_counters_remain(
    redis_url: str, queue_name: str
) -> None:
    async def ok(job: JobDefinition, progress: Any) -> int:
        return 1

    async with JobService(queue=RedisJobQueue(redis_url, name=queue_name, result_ttl=0.3)) as svc:
        svc.register_handler("ok", ok)
        await svc.start_workers(1)
        job_id = await svc.submit_job("ok")
        await svc.wait_for_result(job_id, timeout=10)
        await anyio.sleep(0.5)
        assert await svc.get_job_result(job_id) is None
        assert (await svc.get_metrics())["queue"]["completed"] == 1


async def test_dead_letters_are_trimmed_to_the_configured_maximum(
    redis_url: str, queue_name: str
) -> None:
    queue = RedisJobQueue(redis_url, name=queue_name, max_dead_letters=3)
    async with JobService(queue=queue) as svc:
        svc.register_handler("fail", fail)
        await svc.start_workers(1)
        ids = [await svc.submit_job("fail", args=(i,), max_retries=0) for i in range(5)]
        for job_id in ids:
            await svc.wait_for_result(job_id, timeout=10)
        dead = await svc.get_dead_letters()
        assert [d.id for d in dead] == ids[:1:-1]
        assert [d.error for d in dead] == [f"RuntimeError: job {i} broke" for i in (4, 3, 2)]
        assert (await svc.get_metrics())["queue"]["dead_letter"] == 3
        assert not await svc.retry_dead_letter("no-such-job")


async def test_an_entry_that_is_not_a_job_is_dead_lettered_raw_and_work_goes_on(
    svc: JobService, raw: redis.Redis
) -> None:
    async def ok(job: JobDefinition, progress: Any) -> str:
        return "ok"

    raw.xadd(svc.queue.keys.streams[0], {"garbage": "{not json"})
    svc.register_handler("ok", ok)
    await svc.start_workers(1)
    job_id = await svc.submit_job("ok", priority="low")
    assert (await svc.wait_for_result(job_id, timeout=10)).result == "ok"
    [dead] = await svc.get_dead_letters()
    assert dead.error == "undecodable entry: it carries no job id"
    assert dead.kwargs["raw:garbage"] == "{not json"


async def test_lifecycle_events_land_in_the_events_stream_in_order(svc: JobService) -> None:
    async def steps(job: JobDefinition, progress: Any) -> str:
        await progress(1, 2, "one")
        return "ok"

    svc.register_handler("steps", steps)
    await svc.start_workers(1)
    job_id = await svc.submit_job("steps")
    await svc.wait_for_result(job_id, timeout=10)
    events = [f for _, f in await svc.queue.read_events("0-0") if f["job_id"] == job_id]
    assert [e["type"] for e in events] == [
        "job.queued", "job.started", "job.progress", "job.completed"
    ]  # fmt: skip
    assert (events[2]["current"], events[2]["total"], events[2]["message"]) == ("1", "2", "one")


async def test_another_process_can_follow_events_as_they_happen(svc: JobService) -> None:
    seen: list[str] = []

    async def follow() -> None:
        async with contextlib.aclosing(svc.events(since="0-0")) as events:
            async for event in events:
                if event["job_id"] == "followed":
                    seen.append(event["type"])
                if event["type"] == "job.completed":
                    return

    async def ok(job: JobDefinition, progress: Any) -> None:
        return None

    svc.register_handler("ok", ok)
    await svc.start_workers(1)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await anyio.sleep(0.1)  # the follower is blocked on the stream, waiting
            await svc.submit_job("ok", job_id="followed")
    assert seen == ["job.queued", "job.started", "job.completed"]


# coredis 6.9 (trio) leaves the memory streams of a connection that never connected unclosed;
# they warn when collected: collect them here so that no later test is blamed.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_initialize_against_an_unreachable_redis_says_so_clearly() -> None:
    service = JobService(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(RedisUnavailableError, match="Redis is unreachable"):
            await service.initialize()
    finally:
        gc.collect()


async def test_an_idle_pool_blocks_in_redis_instead_of_polling(
    svc: JobService, raw: redis.Redis
) -> None:
    await svc.start_workers(2)
    most = 0
    for _ in range(40):  # the reader wakes every 0.2 s to look for lapsed leases
        await anyio.sleep(0.025)
        blocked = [c for c in raw.client_list() if "b" in c["flags"] and c["cmd"] == "blpop"]
        most = max(most, len(blocked))
        if most == 3:
            break
    assert most == 3  # the reader on the ready list, the promoter on its wake-up list, the
    # canceller on the pool's control list


async def test_completed_jobs_leave_no_stream_entries_behind(
    svc: JobService, raw: redis.Redis
) -> None:
    async def ok(job: JobDefinition, progress: Any) -> None:
        return None

    svc.register_handler("ok", ok)
    await svc.start_workers(2)
    ids = [await svc.submit_job("ok", priority=p) for p in (0, 10, 20, 30) for _ in range(5)]
    for job_id in ids:
        await svc.wait_for_result(job_id, timeout=10)
    for stream in svc.queue.keys.streams:
        assert raw.xlen(stream) == 0
        assert raw.xpending(stream, "workers")["pending"] == 0


async def test_completions_out_of_order_delete_only_settled_entries(
    svc: JobService, raw: redis.Redis
) -> None:
    queue, stream = svc.queue, svc.queue.keys.streams[2]
    ids = await svc.submit_many([{"handler": "x"}] * 6)  # ids next to each other: 5-0, 5-1...
    entries = [entry for entry, _ in raw.xrange(stream)]
    first, second, third = await queue.start("slow-pool", 3)  # the first keeps running
    await queue.complete_many([(third, "null"), (second, "null")])
    assert [entry for entry, _ in raw.xrange(stream)] == [entries[0], *entries[3:]]
    await queue.complete(first, "null")
    assert [entry for entry, _ in raw.xrange(stream)] == entries[3:]
    late = await queue.start("slow-pool", 2)  # the fourth and fifth; the sixth stays queued
    await queue.complete_many([(d, "null") for d in late])
    assert [entry for entry, _ in raw.xrange(stream)] == [entries[5]]
    assert raw.xpending(stream, "workers")["pending"] == 0
    [last] = await queue.start("slow-pool", 1)
    assert last.job_id == ids[5]
    await queue.complete(last, "null")
    assert raw.xlen(stream) == 0
    statuses = [await svc.get_job_status(job_id) for job_id in ids]
    assert statuses == [JobStatus.COMPLETED] * 6


async def test_scripts_flushed_from_redis_are_loaded_again(
    svc: JobService, raw: redis.Redis
) -> None:
    first = await svc.submit_job("x")
    raw.script_flush()
    second = await svc.submit_job("x")
    ids = await svc.submit_many([{"handler": "x"}, {"handler": "x"}])
    raw.script_flush()
    ids += await svc.submit_many([{"handler": "x"}])
    for job_id in (first, second, *ids):
        assert await svc.get_job_status(job_id) is JobStatus.PENDING
    assert raw.xlen(svc.queue.keys.streams[2]) == 5


async def test_progress_is_none_until_a_job_reports_some(svc: JobService) -> None:
    job_id = await svc.submit_job("x")
    assert await svc.get_job_progress(job_id) is None
    assert await svc.get_job_progress("no-such-job") is None
