"""Running jobs: priority order, no hoarding, timeouts, retries with backoff, permanent
failures, sync handlers, and the outcomes that go straight to the dead-letter stream."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
import redis

from streamjobs import JobDefinition, JobFailed, JobPriority, JobProgress, JobService, JobStatus

pytestmark = pytest.mark.anyio


async def test_one_worker_runs_higher_priorities_first_and_fifo_within_one(
    svc: JobService,
) -> None:
    order: list[str] = []

    async def record(job: JobDefinition, progress: Any) -> None:
        order.append(job.args[0])

    svc.register_handler("record", record)
    plan = [("low-1", 0), ("normal-1", 10), ("critical-1", 30), ("high-1", 20),
            ("low-2", 0), ("critical-2", 30), ("normal-2", 10), ("high-2", 20)]  # fmt: skip
    ids = [await svc.submit_job("record", args=(name,), priority=p) for name, p in plan]
    await svc.start_workers(1)
    for job_id in ids:
        await svc.wait_for_result(job_id, timeout=10)
    assert order == ["critical-1", "critical-2", "high-1", "high-2",
                     "normal-1", "normal-2", "low-1", "low-2"]  # fmt: skip


async def test_a_pool_never_holds_more_jobs_than_it_has_workers(
    svc: JobService, raw: redis.Redis
) -> None:
    release = anyio.Event()

    async def slow(job: JobDefinition, progress: Any) -> None:
        await release.wait()

    svc.register_handler("slow", slow)
    ids = [await svc.submit_job("slow", priority=JobPriority.HIGH) for _ in range(10)]
    await svc.start_workers(3)
    await anyio.sleep(0.5)
    held = sum(raw.xpending(s, "workers")["pending"] for s in svc.queue.keys.streams)
    metrics = await svc.get_metrics()
    assert held == 3
    assert (metrics["queue"]["running"], metrics["queue"]["pending"]) == (3, 7)
    assert metrics["queue"]["by_priority"]["high"] == 7
    assert metrics["workers"]["busy"] == 3
    release.set()
    for job_id in ids:
        await svc.wait_for_result(job_id, timeout=10)


async def test_a_job_past_its_timeout_is_cancelled_and_counts_as_a_failed_attempt(
    svc: JobService,
) -> None:
    cancelled: list[bool] = []

    async def hang(job: JobDefinition, progress: Any) -> None:
        try:
            await anyio.sleep(30)
        except BaseException:
            cancelled.append(True)
            raise

    svc.register_handler("hang", hang)
    await svc.start_workers(1)
    job_id = await svc.submit_job("hang", timeout=0.2, max_retries=1, retry_delay=0.05)
    result = await svc.wait_for_result(job_id, timeout=10)
    assert result.status is JobStatus.DEAD_LETTER
    assert result.attempts == 2 and cancelled == [True, True]
    assert result.error == "TimeoutError: the job ran past its 0.2s timeout"


async def test_a_short_timeout_is_enforced_beside_a_long_one_that_started_first(
    svc: JobService,
) -> None:
    long_started = anyio.Event()

    async def hang(job: JobDefinition, progress: Any) -> str:
        if job.timeout == 60:
            long_started.set()
        await anyio.sleep(job.args[0])
        return "finished"

    svc.register_handler("hang", hang)
    await svc.start_workers(2)
    long_id = await svc.submit_job("hang", args=(1.5,), timeout=60, max_retries=0)
    with anyio.fail_after(10):
        await long_started.wait()
        short_id = await svc.submit_job("hang", args=(30,), timeout=0.2, max_retries=0)
        short = await svc.wait_for_result(short_id, timeout=5)
        assert short.status is JobStatus.DEAD_LETTER
        assert short.error == "TimeoutError: the job ran past its 0.2s timeout"
        assert short.duration is not None and short.duration < 1.0
        assert (await svc.wait_for_result(long_id, timeout=5)).result == "finished"


async def test_retries_wait_the_exponential_backoff_then_dead_letter(
    svc: JobService, raw: redis.Redis
) -> None:
    calls: list[int] = []

    async def flaky(job: JobDefinition, progress: Any) -> None:
        calls.append(1)
        raise ValueError(f"try {len(calls)}")

    svc.register_handler("flaky", flaky)
    await svc.start_workers(1)
    job_id = await svc.submit_job("flaky", max_retries=3, retry_delay=0.05, retry_backoff=3)
    result = await svc.wait_for_result(job_id, timeout=10)
    assert (result.status, result.attempts, len(calls)) == (JobStatus.DEAD_LETTER, 4, 4)
    assert result.error == "ValueError: try 4"
    events = raw.xrange(svc.queue.keys.events)
    delays = [int(f["delay_ms"]) for _, f in events if f["type"] == "job.retrying"]
    assert delays == [50, 150, 450]
    metrics = (await svc.get_metrics())["queue"]
    assert (metrics["retried"], metrics["dead_letter"], metrics["retrying"]) == (3, 1, 0)


async def test_a_job_that_succeeds_on_retry_completes_with_its_attempt_count(
    svc: JobService,
) -> None:
    async def second_time_lucky(job: JobDefinition, progress: Any) -> str:
        if job.attempts < 2:
            raise ConnectionError("flaky upstream")
        return "ok"

    svc.register_handler("lucky", second_time_lucky)
    await svc.start_workers(1)
    job_id = await svc.submit_job("lucky", retry_delay=0.05)
    result = await svc.wait_for_result(job_id, timeout=10)
    assert (result.status, result.result, result.attempts) == (JobStatus.COMPLETED, "ok", 2)
    assert result.error == "ConnectionError: flaky upstream"


async def test_job_failed_ends_the_job_failed_without_retry_or_dead_letter(
    svc: JobService,
) -> None:
    async def refuse(job: JobDefinition, progress: Any) -> None:
        raise JobFailed("media file is corrupt")

    svc.register_handler("refuse", refuse)
    await svc.start_workers(1)
    job_id = await svc.submit_job("refuse", max_retries=5)
    result = await svc.wait_for_result(job_id, timeout=10)
    assert (result.status, result.attempts) == (JobStatus.FAILED, 1)
    assert result.error == "JobFailed: media file is corrupt"
    assert await svc.get_dead_letters() == []
    assert (await svc.get_metrics())["queue"]["failed"] == 1


async def test_a_plain_def_handler_runs_in_a_worker_thread_and_reports_progress(
    svc: JobService,
) -> None:
    loop_thread = threading.get_ident()

    def blocking(job: JobDefinition, progress: Any) -> int:
        progress(1, 2, "halfway")
        return threading.get_ident()

    svc.register_handler("blocking", blocking)
    await svc.start_workers(1)
    job_id = await svc.submit_job("blocking")
    result = await svc.wait_for_result(job_id, timeout=10)
    assert result.status is JobStatus.COMPLETED and result.result != loop_thread
    assert await svc.get_job_progress(job_id) == JobProgress(1, 2, "halfway")


async def test_an_unknown_handler_is_dead_lettered_at_once(svc: JobService) -> None:
    await svc.start_workers(1)
    job_id = await svc.submit_job("nobody_registered_me", max_retries=5)
    result = await svc.wait_for_result(job_id, timeout=10)
    assert (result.status, result.attempts) == (JobStatus.DEAD_LETTER, 1)
    assert result.error == "unknown handler 'nobody_registered_me': no worker registered it"


async def test_a_result_json_cannot_carry_is_dead_lettered_with_the_reason(
    svc: JobService,
) -> None:
    async def returns_a_set(job: JobDefinition, progress: Any) -> Any:
        return {1, 2}

    svc.register_handler("bad_result", returns_a_set)
    await svc.start_workers(1)
    job_id = await svc.submit_job("bad_result")
    result = await svc.wait_for_result(job_id, timeout=10)
    assert result.status is JobStatus.DEAD_LETTER
    assert result.error is not None and result.error.startswith("result is not JSON-serializable")


async def test_a_failing_event_bus_never_breaks_a_job(redis_url: str, queue_name: str) -> None:
    class BrokenBus:
        def publish(self, event_type: str, payload: dict[str, Any]) -> None:
            raise RuntimeError("bus down")

    async def ok(job: JobDefinition, progress: Any) -> str:
        await progress(1, 1, "done")
        return "fine"

    async with JobService(redis_url, name=queue_name, event_bus=BrokenBus()) as service:
        service.register_handler("ok", ok)
        await service.start_workers(1)
        job_id = await service.submit_job("ok")
        assert (await service.wait_for_result(job_id, timeout=10)).result == "fine"


async def test_a_woken_reader_starts_no_more_than_asked_highest_priority_first(
    svc: JobService, raw: redis.Redis
) -> None:
    ids = {p: await svc.submit_job("x", priority=p) for p in ("low", "critical", "high")}
    queue = svc.queue
    first = await queue.wait_for_jobs("reader", 1, 100)
    second = await queue.wait_for_jobs("reader", 1, 100)
    assert [d.job_id for d in first + second] == [ids["critical"], ids["high"]]
    assert await queue.release("reader") == 2
    statuses = {await svc.get_job_status(i) for i in ids.values()}
    assert statuses == {JobStatus.PENDING}


async def test_a_blocked_reader_wakes_for_a_new_job_and_leaves_no_stale_wake_ups(
    svc: JobService, raw: redis.Redis
) -> None:
    queue = svc.queue
    assert await queue.start("reader", 10) == []  # nothing new: the ready list is cleared
    got: list[str] = []

    async def wait() -> None:
        got.extend(d.job_id for d in await queue.wait_for_jobs("reader", 10, 30_000))

    with anyio.fail_after(5):  # far sooner than the 30 s block: the job's token woke it
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.1)
            job_id = await svc.submit_job("x")
    assert got == [job_id]
    assert await queue.release("reader") == 1  # handed back: ready again
    ids = await svc.submit_many([{"handler": "x"} for _ in range(5)])
    assert raw.llen(queue.keys.ready) == 6  # one token per job made ready
    assert {d.job_id for d in await queue.start("reader", 10)} == {job_id, *ids}
    assert raw.llen(queue.keys.ready) == 0  # all delivered: tokens cleared, no spin
