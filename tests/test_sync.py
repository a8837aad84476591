"""`streamjobs.sync.SyncJobClient`: the async API's submit and read-back calls for plain
threads, with the same validation, errors, scripts and decoding, safe to share between threads.

The workers are an async pool, run on asyncio and on trio; the client itself has no loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import anyio
import anyio.to_thread
import pytest
import redis

from streamjobs import (
    CancelOutcome,
    InvalidJobError,
    JobDefinition,
    JobPriority,
    JobService,
    JobStatus,
)
from streamjobs.sync import SyncJobClient
from tests.conftest import FAST, load_example

pytestmark = pytest.mark.anyio



@pytest.fixture
def client(redis_url: str, queue_name: str) -> Iterator[SyncJobClient]:
    with SyncJobClient(redis_url, name=queue_name, timings=FAST) as c:
        yield c


def _keys(redis_url: str, queue_name: str) -> list[str]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:
        return sorted(r.scan_iter(match=f"*{{{queue_name}}}*"))


async def square(job: JobDefinition, progress: Any) -> int:
    await anyio.sleep(0.001)
    return int(job.args[0]) ** 2


def _submit_and_wait(client: SyncJobClient, n: int) -> tuple[str, int]:
    # One priority: several at once trip a worker-pool bug that test_trio.py pins down
    # (test_a_reader_woken_by_several_priorities_takes_no_more_than_it_can_run).
    job_id = client.submit_job("square", (n,), priority=JobPriority.HIGH)
    return job_id, client.wait_for_result(job_id, timeout=20).result


async def test_eight_threads_submit_and_wait_while_async_workers_run(
    svc: JobService, client: SyncJobClient
) -> None:
    svc.register_handler("square", square)
    count = 200

    def hammer() -> list[tuple[str, int]]:
        with ThreadPoolExecutor(8) as pool:
            singles = list(pool.map(lambda n: _submit_and_wait(client, n), range(count)))
            batches = list(pool.map(client.submit_many, _batches(count, 8)))
        ids = [job_id for batch in batches for job_id in batch]
        return singles + [(i, client.wait_for_result(i, timeout=20).result) for i in ids]

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(svc.run_workers, 8)
            done = await anyio.to_thread.run_sync(hammer)
            await svc.stop_workers()
    assert len({job_id for job_id, _ in done}) == 2 * count
    assert [r for _, r in done] == [n * n for n in range(count)] * 2
    metrics = client.get_metrics()
    assert metrics["queue"]["completed"] == 2 * count
    assert metrics["queue"] == (await svc.get_metrics())["queue"]


def _batches(count: int, size: int) -> list[list[dict[str, Any]]]:
    specs = [{"handler": "square", "args": (n,)} for n in range(count)]
    return [specs[i : i + size] for i in range(0, count, size)]


def test_invalid_input_is_refused_like_the_async_api_and_writes_nothing(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    before = _keys(redis_url, queue_name)
    with pytest.raises(InvalidJobError) as info:
        client.submit_job("square", (1,), priority="urgent")
    assert info.value.field == "priority"
    with pytest.raises(InvalidJobError, match="args"):
        client.submit_job("square", (object(),))
    with pytest.raises(InvalidJobError, match="max_retries"):
        client.submit_job("square", max_retries=-1)
    with pytest.raises(InvalidJobError, match="timeout"):
        client.submit_many([{"handler": "square"}, {"handler": "square", "timeout": -1}])
    with pytest.raises(InvalidJobError, match=r"jobs\[1\]\.timeout"):
        client.submit_many([{"handler": "square"}, {"handler": "square", "timeout": -1}])
    with pytest.raises(InvalidJobError, match=r"jobs\[0\]\.colour: is not a submit_job keyword"):
        client.submit_many([{"handler": "square", "colour": "blue"}])
    assert _keys(redis_url, queue_name) == before


def test_a_job_id_makes_submission_idempotent(client: SyncJobClient) -> None:
    assert client.submit_job("square", (2,), job_id="once") == "once"
    assert client.submit_job("square", (3,), job_id="once") == "once"
    job = client.get_job("once")
    assert job is not None and job.args == (2,)
    assert client.get_metrics()["queue"]["pending"] == 1


def test_cancel_and_unknown_jobs(client: SyncJobClient) -> None:
    job_id = client.submit_job("square", (2,), delay=60)
    assert client.get_job_status(job_id) is JobStatus.SCHEDULED
    assert client.cancel_job(job_id) is CancelOutcome.CANCELLED
    result = client.get_job_result(job_id)
    assert result is not None and result.status is JobStatus.CANCELLED
    assert client.cancel_job(job_id) is CancelOutcome.NOTHING
    assert client.get_job_status("nope") is None
    assert client.get_job_result("nope") is None


def test_wait_for_result_times_out(client: SyncJobClient) -> None:
    job_id = client.submit_job("square", (2,))
    with pytest.raises(TimeoutError, match=job_id):
        client.wait_for_result(job_id, timeout=0.2)


async def test_dead_letters_are_listed_and_retried(svc: JobService, client: SyncJobClient) -> None:
    job_id = client.submit_job("not_registered", (1,), kwargs={"k": "v"})
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(svc.run_workers, 1)
            result = await anyio.to_thread.run_sync(client.wait_for_result, job_id, 10)
            assert result.status is JobStatus.DEAD_LETTER
            [dead] = client.get_dead_letters()
            assert (dead.id, dead.handler, dead.args, dead.kwargs) == (
                job_id, "not_registered", (1,), {"k": "v"},
            )  # fmt: skip
            assert dead.error and "unknown handler" in dead.error
            assert [d.id for d in await svc.get_dead_letters()] == [job_id]
            svc.register_handler("not_registered", square)
            assert client.retry_dead_letter(job_id) is True
            again = await anyio.to_thread.run_sync(client.wait_for_result, job_id, 10)
            assert (again.status, again.result) == (JobStatus.COMPLETED, 1)
            assert client.retry_dead_letter(job_id) is False
            await svc.stop_workers()


def test_flask_style_views_enqueue_and_report(client: SyncJobClient) -> None:
    module = load_example("flask_style_enqueue")
    try:
        answer, code = module.enqueue_report({"account": "acme", "request_id": "r-1"}, client)
        assert (code, answer["job_id"]) == (202, "r-1")
        assert module.enqueue_report({"account": "acme", "request_id": "r-1"}, client)[1] == 202
        assert module.enqueue_report({"account": "acme", "priority": "urgent"}, client)[1] == 400
        assert module.enqueue_report({}, client)[1] == 400
        body, code = module.report_status("r-1", client)
        assert (code, body["status"]) == (200, "PENDING")
        assert module.report_status("missing", client)[1] == 404
        assert client.get_metrics()["queue"]["pending"] == 1
    finally:
        module.jobs.close()


async def test_apscheduler_example_submits_the_nightly_backup_once(svc: JobService) -> None:
    module = load_example("apscheduler_integration")
    day = date(2026, 5, 1)
    assert await module.submit_daily_backup(svc, day) == "backup-2026-05-01"
    assert await module.submit_daily_backup(svc, day) == "backup-2026-05-01"
    job = await svc.get_job("backup-2026-05-01")
    assert job is not None and job.args == ("2026-05-01",) and job.handler == "process_backup"
    assert (await svc.get_metrics())["queue"]["pending"] == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_apscheduler_example_schedules_at_two(anyio_backend: str, svc: JobService) -> None:
    """About asyncio: the guide uses APScheduler's AsyncIOScheduler."""
    pytest.importorskip("apscheduler", reason="apscheduler is not installed")
    scheduler = load_example("apscheduler_integration").build_scheduler(svc)
    scheduler.start(paused=True)
    try:
        job = scheduler.get_job("daily-backup")
        assert str(job.trigger) == "cron[hour='2', minute='0']"
    finally:
        scheduler.shutdown(wait=False)


