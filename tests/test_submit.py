"""Submitting: validation before any write, idempotent ids, delays, bulk submits, and records
that read well from redis-cli."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis

from streamjobs import InvalidJobError, JobDefinition, JobService, JobStatus
from tests.conftest import queue_keys

pytestmark = pytest.mark.anyio


async def echo(job: JobDefinition, progress: Any) -> Any:
    return {"args": list(job.args), "kwargs": job.kwargs}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"priority": 99},
        {"timeout": -1},
        {"max_retries": -2},
        {"retry_delay": -1.0},
        {"delay": -3},
        {"args": (object(),)},
        {"kwargs": {"blob": "x" * 600_000}},
    ],
)
async def test_invalid_submit_raises_and_writes_nothing(
    svc: JobService, raw: redis.Redis, kwargs: dict[str, Any]
) -> None:
    before = queue_keys(raw, svc)
    with pytest.raises(InvalidJobError):
        await svc.submit_job("echo", **kwargs)
    assert queue_keys(raw, svc) == before
    assert all(raw.xlen(stream) == 0 for stream in svc.queue.keys.streams)


async def test_a_second_submit_with_a_live_job_id_enqueues_nothing(
    svc: JobService, raw: redis.Redis
) -> None:
    first = await svc.submit_job("echo", args=(1,), job_id="invoice-42")
    second = await svc.submit_job("echo", args=(2,), job_id="invoice-42")
    assert first == second == "invoice-42"
    assert raw.xlen(svc.queue.keys.streams[2]) == 1
    job = await svc.get_job("invoice-42")
    assert job is not None and job.args == (1,)


async def test_an_idempotent_job_runs_once_even_when_submitted_again_after_it_ran(
    svc: JobService,
) -> None:
    runs: list[str] = []

    async def count(job: JobDefinition, progress: Any) -> None:
        runs.append(job.id)

    svc.register_handler("count", count)
    await svc.start_workers(2)
    await svc.submit_job("count", job_id="once")
    await svc.wait_for_result("once", timeout=10)
    await svc.submit_job("count", job_id="once")
    await anyio.sleep(0.2)
    assert runs == ["once"]


async def test_a_delayed_job_waits_scheduled_then_runs(svc: JobService) -> None:
    svc.register_handler("echo", echo)
    await svc.start_workers(1)
    job_id = await svc.submit_job("echo", args=("later",), delay=0.6)
    assert await svc.get_job_status(job_id) is JobStatus.SCHEDULED
    assert (await svc.get_metrics())["queue"]["scheduled"] == 1
    await anyio.sleep(0.3)
    assert await svc.get_job_status(job_id) is JobStatus.SCHEDULED
    result = await svc.wait_for_result(job_id, timeout=10)
    assert result.result == {"args": ["later"], "kwargs": {}}
    assert result.started_at and result.created_at
    assert (result.started_at - result.created_at).total_seconds() >= 0.55


async def test_a_sooner_delayed_job_wakes_a_sleeping_promoter(svc: JobService) -> None:
    svc.register_handler("echo", echo)
    await svc.start_workers(1)
    await svc.submit_job("echo", delay=20)
    await anyio.sleep(0.2)  # the promoter now sleeps until the 20 s job is due
    soon = await svc.submit_job("echo", delay=0.2)
    result = await svc.wait_for_result(soon, timeout=5)
    assert result.status is JobStatus.COMPLETED


async def test_submit_many_writes_all_jobs_or_none(svc: JobService, raw: redis.Redis) -> None:
    specs = [{"handler": "echo", "args": (i,), "priority": "high"} for i in range(50)]
    with pytest.raises(InvalidJobError):
        await svc.submit_many([*specs, {"handler": "echo", "timeout": -1}])
    assert not [k for k in queue_keys(raw, svc) if k.startswith(svc.queue.keys.job_prefix)]
    assert all(raw.xlen(stream) == 0 for stream in svc.queue.keys.streams)
    ids = await svc.submit_many(specs)
    assert len(set(ids)) == 50
    assert raw.xlen(svc.queue.keys.streams[1]) == 50
    svc.register_handler("echo", echo)
    await svc.start_workers(4)
    results = [await svc.wait_for_result(i, timeout=10) for i in ids]
    assert [r.result["args"] for r in results if r.result] == [[i] for i in range(50)]


async def test_records_and_entries_read_as_plain_text_in_redis(
    svc: JobService, raw: redis.Redis
) -> None:
    job_id = await svc.submit_job("echo", args=(1, "two"), kwargs={"q": "high"}, priority=20)
    record = raw.hgetall(svc.queue.keys.job(job_id))
    assert record["handler"] == "echo"
    assert record["args"] == '[1,"two"]' and record["kwargs"] == '{"q":"high"}'
    assert record["status"] == "PENDING" and record["priority"] == "20"
    [(entry_id, fields)] = raw.xrange(svc.queue.keys.streams[1])
    assert fields == {"id": job_id} and record["entry"] == entry_id


async def test_wake_up_tokens_stay_bounded_while_no_worker_reads(
    svc: JobService, raw: redis.Redis
) -> None:
    for _ in range(5):  # 5,000 jobs queued, one token each, and no reader to take them
        await svc.submit_many([{"handler": "echo"}] * 1000)
    assert raw.llen(svc.queue.keys.ready) <= 2000
    for _ in range(30):  # one by one too
        await svc.submit_job("echo")
    assert 0 < raw.llen(svc.queue.keys.ready) <= 2000
