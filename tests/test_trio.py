"""Structured concurrency on both backends: `async with JobService(...)`, workers started in
the caller's task group, `wait_for_result`, cancellation, and the coredis driver on asyncio.

Every test runs on asyncio and trio, except those about one backend, which say why.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from streamjobs import (
    AsyncWorkerPool,
    ConfigurationError,
    JobDefinition,
    JobService,
    JobStatus,
    RedisJobQueue,
)
from tests.conftest import FAST, load_example

pytestmark = pytest.mark.anyio



async def add(job: JobDefinition, progress: Any) -> int:
    await progress(1, 2, "halfway")
    await anyio.lowlevel.checkpoint()
    return int(sum(job.args))


def add_in_thread(job: JobDefinition, progress: Any) -> int:
    progress(current=1, total=1, message="from a thread")
    return int(sum(job.args))


class Hang:
    """Runs until cancelled; `started` is set once it runs."""

    def __init__(self) -> None:
        self.started = anyio.Event()

    async def __call__(self, job: JobDefinition, progress: Any) -> None:
        self.started.set()
        await anyio.sleep_forever()


class Flaky:
    """Fails its first attempt, then succeeds: exercises retry, the delayed set and BLPOP."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, job: JobDefinition, progress: Any) -> str:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("first attempt fails")
        return "second time lucky"


def _service(redis_url: str, queue_name: str, driver: str | None = None) -> JobService:
    queue = RedisJobQueue(redis_url, name=queue_name, driver=driver)
    return JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))


async def test_jobs_run_end_to_end_in_the_callers_task_group(
    anyio_backend: str, redis_url: str, queue_name: str
) -> None:
    expected = "CoredisDriver" if anyio_backend == "trio" else "RespDriver"
    with anyio.fail_after(20):
        async with _service(redis_url, queue_name) as svc, anyio.create_task_group() as tg:
            assert type(svc.queue.driver).__name__ == expected
            svc.register_handler("add", add)
            svc.register_handler("add_in_thread", add_in_thread)
            await tg.start(svc.run_workers, 3)
            ids = [await svc.submit_job("add", (i, 1)) for i in range(10)]
            ids += await svc.submit_many(
                [{"handler": "add_in_thread", "args": (i, 2)} for i in range(5)]
            )
            results = [await svc.wait_for_result(job_id, timeout=10) for job_id in ids]
            assert [r.result for r in results] == [i + 1 for i in range(10)] + [
                i + 2 for i in range(5)
            ]
            assert {r.status for r in results} == {JobStatus.COMPLETED}
            await svc.stop_workers()
        assert (await _metrics(redis_url, queue_name))["queue"]["completed"] == 15


async def test_run_workers_is_started_once_the_workers_are_reading(
    svc: JobService,
) -> None:
    svc.register_handler("add", add)
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            await tg.start(svc.run_workers, 2)
            workers = await svc.get_workers()
            assert len(workers) == 2 and all(w.healthy for w in workers)
            job_id = await svc.submit_job("add", (2, 3))
            assert (await svc.wait_for_result(job_id, timeout=5)).result == 5
            await svc.stop_workers()


async def test_start_workers_inside_async_with_runs_in_the_services_task_group(
    svc: JobService,
) -> None:
    svc.register_handler("add", add)
    with anyio.fail_after(15):
        await svc.start_workers(2)
        job_id = await svc.submit_job("add", (4, 4))
        assert (await svc.wait_for_result(job_id, timeout=5)).result == 8
    # the service's own __aexit__ stops them


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_start_workers_outside_async_with_says_what_to_do_under_trio(
    anyio_backend: str, redis_url: str, queue_name: str
) -> None:
    """About trio: asyncio allows the guide's background style (test_quickstart covers it)."""
    svc = _service(redis_url, queue_name)
    await svc.initialize()
    try:
        with pytest.raises(ConfigurationError, match=r"async with JobService.*run_workers"):
            await svc.start_workers(2)
    finally:
        await svc.close()


async def test_retries_wait_out_their_backoff_and_succeed(svc: JobService) -> None:
    flaky = Flaky()
    svc.register_handler("flaky", flaky)
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            await tg.start(svc.run_workers, 1)
            job_id = await svc.submit_job("flaky", retry_delay=0.2, max_retries=2)
            result = await svc.wait_for_result(job_id, timeout=10)
            assert (result.status, result.result, result.attempts) == (
                JobStatus.COMPLETED, "second time lucky", 2,
            )  # fmt: skip
            await svc.stop_workers()


async def test_delayed_job_waits_its_turn(svc: JobService) -> None:
    svc.register_handler("add", add)
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            await tg.start(svc.run_workers, 1)
            job_id = await svc.submit_job("add", (1, 1), delay=0.3)
            assert await svc.get_job_status(job_id) is JobStatus.SCHEDULED
            assert (await svc.wait_for_result(job_id, timeout=10)).result == 2
            await svc.stop_workers()


async def test_wait_for_result_times_out_without_workers(svc: JobService) -> None:
    job_id = await svc.submit_job("add", (1, 1))
    with anyio.fail_after(10):
        before = anyio.current_time()
        with pytest.raises(TimeoutError):
            await svc.wait_for_result(job_id, timeout=0.3)
        assert anyio.current_time() - before < 3
    assert await svc.get_job_status(job_id) is JobStatus.PENDING


async def test_cancelling_the_task_group_hands_running_jobs_back(svc: JobService) -> None:
    hang = Hang()
    svc.register_handler("hang", hang)
    job_id = await svc.submit_job("hang")
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(svc.run_workers, 1)
            await hang.started.wait()
            assert await svc.get_job_status(job_id) is JobStatus.RUNNING
            tg.cancel_scope.cancel()
        assert await svc.get_job_status(job_id) is JobStatus.PENDING
        assert await svc.get_workers() == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_coredis_is_selectable_on_asyncio(
    anyio_backend: str, redis_url: str, queue_name: str
) -> None:
    """About asyncio: under trio coredis is the only (and default) driver."""
    with anyio.fail_after(20):
        async with _service(redis_url, queue_name, "coredis") as svc:
            assert type(svc.queue.driver).__name__ == "CoredisDriver"
            svc.register_handler("add", add)
            await svc.start_workers(2)
            job_id = await svc.submit_job("add", (20, 22))
            assert (await svc.wait_for_result(job_id, timeout=10)).result == 42


@pytest.mark.parametrize(("anyio_backend", "example"), [
    ("trio", "trio_app"), ("asyncio", "asyncio_app"),
])  # fmt: skip
async def test_example_app_runs(
    anyio_backend: str, example: str, redis_url: str, queue_name: str
) -> None:
    """Each example app is about its own event loop."""
    module = load_example(example)
    with anyio.fail_after(30):
        results = await module.run(redis_url, queue_name=queue_name, jobs=5)
    assert len(results) == 5 and all(r.status is JobStatus.COMPLETED for r in results)




async def _metrics(redis_url: str, queue_name: str) -> dict[str, Any]:
    async with _service(redis_url, queue_name) as svc:
        return await svc.get_metrics()
