"""Stopping and sizing the in-process pool: a stop under way can be hastened, a graceful stop
can be bounded by a grace period, and a count set before the start is the one it starts with."""

from __future__ import annotations

import time

import anyio
import pytest

from streamjobs import JobService, JobStatus
from tests.test_workers import sleeper

pytestmark = pytest.mark.anyio

#: Long enough that no test waits it out, short enough that a broken stop still ends.
LONG = 8.0


async def _running_job(svc: JobService, seconds: float) -> str:
    started = anyio.Event()
    svc.register_handler("sleep", sleeper(started, seconds))
    await svc.start_workers(1)
    job_id = await svc.submit_job("sleep")
    with anyio.fail_after(5):
        await started.wait()
    return job_id


async def _handed_back(svc: JobService, job_id: str) -> None:
    record = await svc.queue.record(job_id)
    assert (record["status"], record["attempts"]) == ("PENDING", "0")


async def test_an_immediate_stop_hastens_a_graceful_stop_waiting_on_a_long_job(
    svc: JobService,
) -> None:
    job_id = await _running_job(svc, LONG)
    begun = time.monotonic()
    with anyio.fail_after(LONG / 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.stop_workers)  # graceful: it would wait for the job
            await anyio.sleep(0.3)
            assert svc.worker_pool.running
            await svc.stop_workers(graceful=False)
            assert not svc.worker_pool.running
    assert time.monotonic() - begun < LONG / 2
    await _handed_back(svc, job_id)


async def test_a_shorter_grace_hastens_a_graceful_stop_under_way(svc: JobService) -> None:
    job_id = await _running_job(svc, LONG)
    with anyio.fail_after(LONG / 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.stop_workers)
            await anyio.sleep(0.3)
            await svc.stop_workers(grace=0.2)
    await _handed_back(svc, job_id)


async def test_stop_workers_with_a_grace_hands_back_jobs_still_running_when_it_ends(
    svc: JobService,
) -> None:
    job_id = await _running_job(svc, LONG)
    begun = time.monotonic()
    with anyio.fail_after(LONG / 2):
        await svc.stop_workers(graceful=True, grace=0.3)
    assert 0.25 < time.monotonic() - begun < LONG / 2
    await _handed_back(svc, job_id)


async def test_stop_workers_with_a_grace_lets_a_job_that_ends_within_it_finish(
    svc: JobService,
) -> None:
    job_id = await _running_job(svc, 0.3)
    with anyio.fail_after(5):
        await svc.stop_workers(grace=5)
    result = await svc.get_job_result(job_id)
    assert result is not None and result.status is JobStatus.COMPLETED


async def test_scale_workers_before_start_sets_the_count_the_pool_starts_with(
    svc: JobService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_WORKER_COUNT", "1")
    await svc.scale_workers(3)
    await svc.start_workers()
    assert len(svc.worker_pool.workers) == 3
    assert len(await svc.get_workers()) == 3


async def test_a_count_given_to_start_workers_wins_over_an_earlier_scale(
    svc: JobService,
) -> None:
    await svc.scale_workers(3)
    await svc.start_workers(2)
    assert len(await svc.get_workers()) == 2
