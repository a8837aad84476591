"""Every snippet of the user guide (reference/job-queue-quickstart.md) runs, with
`researcharr.core.jobs` read as `streamjobs`. The guide is written for asyncio, so these
tests run on asyncio only; test_trio.py covers trio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from streamjobs import JobDefinition, JobPriority, JobService, JobStatus
from tests._redis import RedisProcess

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def job_service(redis_process: RedisProcess) -> AsyncIterator[JobService]:
    """Section 1, "Initialize Job Service", against a redis-server of the test's own."""
    job_service = JobService(redis_url=redis_process.url)
    await job_service.initialize()
    await job_service.start_workers(count=4)
    yield job_service
    await job_service.close()


async def do_processing(media_id: int, quality: str) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"media_id": media_id, "quality": quality}


async def process_media(job: JobDefinition, progress_callback: Any) -> Any:
    """Process media files."""
    media_id = job.args[0]
    quality = job.kwargs.get("quality", "medium")
    await progress_callback(0, 100, "Starting...")
    result = await do_processing(media_id, quality)
    await progress_callback(100, 100, "Complete")
    return result


async def wait_terminal(job_service: JobService, job_id: str) -> JobStatus:
    """Section 4's wait loop, bounded."""
    for _ in range(30):
        status = await job_service.get_job_status(job_id)
        if status in [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DEAD_LETTER]:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {status}")


async def test_register_submit_track_and_read_the_result(job_service: JobService) -> None:
    job_service.register_handler("process_media", process_media)
    job_id = await job_service.submit_job(
        "process_media",
        args=(123,),
        kwargs={"quality": "high"},
        priority=JobPriority.HIGH,
        timeout=300,
        max_retries=3,
    )
    status = await job_service.get_job_status(job_id)
    assert status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED)
    assert await wait_terminal(job_service, job_id) is JobStatus.COMPLETED
    result = await job_service.get_job_result(job_id)
    assert result is not None
    assert result.result == {"media_id": 123, "quality": "high"}
    assert result.duration is not None and 0 <= result.duration < 5
    record = await job_service.get_job(job_id)
    assert record is not None and record.attempts == 1


async def test_every_priority_level_is_accepted_and_runs(job_service: JobService) -> None:
    async def task(job: JobDefinition, progress_callback: Any) -> str:
        return job.handler

    for name in ("urgent_task", "important_task", "regular_task", "background_task"):
        job_service.register_handler(name, task)
    critical_job = await job_service.submit_job("urgent_task", priority=JobPriority.CRITICAL)
    high_job = await job_service.submit_job("important_task", priority=JobPriority.HIGH)
    normal_job = await job_service.submit_job("regular_task", priority=JobPriority.NORMAL)
    low_job = await job_service.submit_job("background_task", priority=JobPriority.LOW)
    assert [int(p) for p in (JobPriority.CRITICAL, JobPriority.HIGH)] == [30, 20]
    for job_id in (critical_job, high_job, normal_job, low_job):
        assert await wait_terminal(job_service, job_id) is JobStatus.COMPLETED


async def test_retry_configuration_waits_the_first_backoff_delay(job_service: JobService) -> None:
    async def flaky(job: JobDefinition, progress_callback: Any) -> None:
        raise ConnectionError("upstream down")

    job_service.register_handler("flaky_task", flaky)
    job_id = await job_service.submit_job(
        "flaky_task",
        max_retries=5,  # Try up to 5 times
        retry_delay=2.0,  # Start with 2 second delay
        retry_backoff=2.0,  # Double delay each retry
    )
    for _ in range(50):
        if await job_service.get_job_status(job_id) is JobStatus.RETRYING:
            break
        await asyncio.sleep(0.05)
    record = await job_service.queue.record(job_id)
    assert record["status"] == "RETRYING"
    assert record["error"] == "ConnectionError: upstream down"
    wait_ms = int(record["retry_at"]) - int(record["started_at"])
    assert 1900 <= wait_ms <= 2500, wait_ms
    metrics = await job_service.get_metrics()
    assert metrics["queue"]["retrying"] == 1
    assert await job_service.cancel_job(job_id)


async def test_progress_is_reported_with_keywords_and_reaches_the_event_bus(
    redis_process: RedisProcess,
) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    class Bus:
        async def publish(self, event_type: str, payload: dict[str, Any]) -> None:
            events.append((event_type, payload))

    job_service = JobService(redis_url=redis_process.url, event_bus=Bus())
    await job_service.initialize()
    await job_service.start_workers(count=2)

    async def process_item(item: int) -> None:
        await asyncio.sleep(0)

    async def long_running_task(job: JobDefinition, progress_callback: Any) -> Any:
        """Task with progress updates."""
        items = job.args[0]
        for i, item in enumerate(items):
            await process_item(item)
            await progress_callback(
                current=i + 1,
                total=len(items),
                message=f"Processed {i + 1}/{len(items)} items",
            )
        return {"processed": len(items)}

    job_service.register_handler("long_running_task", long_running_task)
    job_id = await job_service.submit_job("long_running_task", args=([1, 2, 3],))
    assert await wait_terminal(job_service, job_id) is JobStatus.COMPLETED
    await job_service.close()
    kinds = [kind for kind, payload in events if payload["job_id"] == job_id]
    assert kinds == ["job.started"] + ["job.progress"] * 3 + ["job.completed"]
    last = [p for kind, p in events if kind == "job.progress"][-1]
    assert (last["current"], last["total"], last["message"]) == (3, 3, "Processed 3/3 items")


async def test_dead_letters_are_listed_and_can_be_requeued(job_service: JobService) -> None:
    async def broken(job: JobDefinition, progress_callback: Any) -> None:
        raise RuntimeError("broken on purpose")

    job_service.register_handler("broken", broken)
    job_id = await job_service.submit_job("broken", max_retries=0)
    assert await wait_terminal(job_service, job_id) is JobStatus.DEAD_LETTER

    dead_letters = await job_service.get_dead_letters(limit=100)
    for job in dead_letters:
        print(f"Failed job: {job.id} - {job.handler}")
    assert [(j.id, j.handler, j.error) for j in dead_letters] == [
        (job_id, "broken", "RuntimeError: broken on purpose")
    ]
    job_id = dead_letters[0].id
    requeued = await job_service.retry_dead_letter(job_id)
    assert requeued
    assert await wait_terminal(job_service, job_id) is JobStatus.DEAD_LETTER
    result = await job_service.get_job_result(job_id)
    assert result is not None and result.attempts == 1


async def test_worker_management_lists_scales_and_stops(job_service: JobService) -> None:
    workers = await job_service.get_workers()
    for worker in workers:
        print(f"Worker {worker.id}: {worker.status}")
        print(f"  Completed: {worker.jobs_completed}")
        print(f"  Failed: {worker.jobs_failed}")
        print(f"  Uptime: {worker.uptime}s")
    assert len(workers) == 4 and all(w.status == "idle" and w.healthy for w in workers)
    await job_service.scale_workers(8)
    assert len(await job_service.get_workers()) == 8
    await job_service.stop_workers(graceful=True)
    assert await job_service.get_workers() == []


async def test_metrics_have_the_guides_keys(job_service: JobService) -> None:
    job_service.register_handler("process_media", process_media)
    job_id = await job_service.submit_job("process_media", args=(1,))
    await wait_terminal(job_service, job_id)
    metrics = await job_service.get_metrics()
    print(f"  Pending: {metrics['queue']['pending']}")
    print(f"  Running: {metrics['queue']['running']}")
    print(f"  Completed: {metrics['queue']['completed']}")
    print(f"  Dead Letter: {metrics['queue']['dead_letter']}")
    print(f"  Total: {metrics['workers']['total']}")
    print(f"  Idle: {metrics['workers']['idle']}")
    print(f"  Busy: {metrics['workers']['busy']}")
    print(f"  Healthy: {metrics['workers']['healthy']}")
    assert metrics["queue"]["completed"] == 1
    assert metrics["workers"] == {"total": 4, "idle": 4, "busy": 0, "healthy": 4}


async def test_programmatic_configuration_composes_queue_pool_and_bus(
    redis_process: RedisProcess,
) -> None:
    from streamjobs import JobService
    from streamjobs.async_worker import AsyncWorkerPool
    from streamjobs.redis_queue import RedisJobQueue

    published: list[str] = []

    class MyEventBus:
        def publish(self, event_type: str, payload: dict[str, Any]) -> None:
            published.append(event_type)

    queue = RedisJobQueue(
        redis_url=redis_process.url, key_prefix="myapp:jobs:", max_dead_letters=5000
    )
    workers = AsyncWorkerPool(queue=queue)
    service = JobService(queue=queue, worker_pool=workers, event_bus=MyEventBus())
    await service.initialize()
    service.register_handler("process_media", process_media)
    await service.start_workers(count=2)
    job_id = await service.submit_job("process_media", args=(5,))
    assert await wait_terminal(service, job_id) is JobStatus.COMPLETED
    assert "process_media" in workers.handlers
    keys = redis_process.client().keys("*")
    recorded = "myapp:jobs:default:partitions"  # the queue's partition count, outside its tag
    assert keys and all(k.startswith("myapp:jobs:{default}:") or k == recorded for k in keys)
    await service.close()
    assert published[-1] == "job.completed"


async def test_a_wrapped_sync_function_runs_in_a_thread(job_service: JobService) -> None:
    def process_backup(backup_id: str) -> str:
        return f"backup {backup_id} done"

    async def process_backup_job(job: JobDefinition, progress_callback: Any) -> Any:
        backup_id = job.args[0]
        result = await asyncio.to_thread(process_backup, backup_id)
        return result

    job_service.register_handler("process_backup", process_backup_job)
    job_id = await job_service.submit_job("process_backup", args=("b1",))
    assert await wait_terminal(job_service, job_id) is JobStatus.COMPLETED
    result = await job_service.get_job_result(job_id)
    assert result is not None and result.result == "backup b1 done"


async def test_troubleshooting_snippets_run(
    job_service: JobService, redis_process: RedisProcess
) -> None:
    import redis.asyncio as redis

    async def broken(job: JobDefinition, progress_callback: Any) -> None:
        raise ValueError("bad media")

    job_service.register_handler("broken", broken)
    job_id = await job_service.submit_job("broken", max_retries=0)
    await wait_terminal(job_service, job_id)

    workers = await job_service.get_workers()
    print(f"Active workers: {len(workers)}")
    metrics = await job_service.get_metrics()
    print(f"Pending jobs: {metrics['queue']['pending']}")
    print(f"Registered handlers: {job_service._workers.handlers.keys()}")
    assert "broken" in job_service._workers.handlers

    errors = []
    dead_letters = await job_service.get_dead_letters()
    for job in dead_letters:
        error = await job_service._queue._redis.hget(job_service._queue._key("error"), str(job.id))
        print(f"Job {job.id} error: {error}")
        errors.append(error)
    assert errors == ["ValueError: bad media"]

    r = redis.from_url(redis_process.url)
    assert await r.ping()
    await r.aclose()
