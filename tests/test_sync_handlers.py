"""Plain `def` handlers in threads: a timed-out one never runs beside its next attempt, a pool
runs as many at once as it has workers (past anyio's default 40), and a job's timeout does
not count the time it waited for a thread."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

import anyio
import pytest

from streamjobs import JobDefinition, JobService, JobStatus

pytestmark = pytest.mark.anyio


class Runs:
    """When each run of each job started and ended (time.monotonic), from its thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: dict[str, list[tuple[float, float]]] = {}

    def handler(self, job: JobDefinition, progress: Any) -> str:
        start = time.monotonic()
        time.sleep(float(job.args[0]))
        with self._lock:
            self.spans.setdefault(job.id, []).append((start, time.monotonic()))
        return "late" if job.args[1:] == ["overruns"] else "done"


async def test_a_sync_handler_past_its_timeout_never_runs_beside_its_next_attempt(
    svc: JobService, caplog: pytest.LogCaptureFixture
) -> None:
    runs = Runs()
    svc.register_handler("sleepy", runs.handler)
    await svc.start_workers(3)
    with caplog.at_level(logging.WARNING, logger="streamjobs.worker"):
        job_id = await svc.submit_job(
            "sleepy", args=(0.8, "overruns"), timeout=0.2, max_retries=2, retry_delay=0.01
        )
        result = await svc.wait_for_result(job_id, timeout=15)
    assert (result.status, result.attempts) == (JobStatus.DEAD_LETTER, 3)
    assert result.error == "TimeoutError: the job ran past its 0.2s timeout"
    spans = sorted(runs.spans[job_id])
    assert len(spans) == 3
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert started >= ended  # each attempt began only once the one before had returned
    assert sum("ran past its 0.2s timeout in a thread" in r.message for r in caplog.records) == 3


async def test_a_late_sync_result_is_refused_and_the_retry_policy_decides(
    svc: JobService,
) -> None:
    runs = Runs()
    svc.register_handler("sleepy", runs.handler)
    await svc.start_workers(2)
    job_id = await svc.submit_job("sleepy", args=(0.5, "overruns"), timeout=0.1, max_retries=0)
    result = await svc.wait_for_result(job_id, timeout=10)
    assert (result.status, result.attempts, result.result) == (JobStatus.DEAD_LETTER, 1, None)
    [(started, ended)] = runs.spans[job_id]
    assert ended - started >= 0.5  # the outcome waited for the thread


async def test_a_pool_of_more_than_40_workers_runs_more_than_40_sync_handlers_at_once(
    svc: JobService,
) -> None:
    count = 45
    barrier = threading.Barrier(count, timeout=10)

    def meet(job: JobDefinition, progress: Any) -> int:
        return barrier.wait()  # breaks unless all `count` handlers run at the same time

    svc.register_handler("meet", meet)
    await svc.start_workers(2)
    await svc.scale_workers(count)  # the thread limit follows the pool's size
    ids = [await svc.submit_job("meet", max_retries=0, timeout=30) for _ in range(count)]
    results = [await svc.wait_for_result(job_id, timeout=20) for job_id in ids]
    assert [r.status for r in results] == [JobStatus.COMPLETED] * count


async def test_a_sync_handler_waiting_for_a_thread_is_not_timed_out_for_the_wait(
    svc: JobService,
) -> None:
    """Scaled from 2 workers to 1 while both run a thread, the pool allows one thread: the
    next job waits for the retiring worker's long one, and its timeout starts only then."""
    runs = Runs()
    svc.register_handler("sleepy", runs.handler)
    long_job = await svc.submit_job("sleepy", args=(1.5,), timeout=10)
    short_job = await svc.submit_job("sleepy", args=(0.3,), timeout=10)
    await svc.start_workers(2)
    for _ in range(250):  # both jobs running, each in its own thread
        if len([w for w in await svc.get_workers() if w.status == "busy"]) == 2:
            break
        await anyio.sleep(0.02)
    else:
        pytest.fail("the two jobs never ran at once")
    await svc.scale_workers(1)  # the first worker, running the long job, retires after it
    waiting = await svc.submit_job("sleepy", args=(0.05,), timeout=0.5, max_retries=0)
    result = await svc.wait_for_result(waiting, timeout=10)
    assert (result.status, result.attempts) == (JobStatus.COMPLETED, 1)
    await svc.wait_for_result(long_job, timeout=10)
    await svc.wait_for_result(short_job, timeout=10)
    [(_, long_ended)] = runs.spans[long_job]
    [(started, _)] = runs.spans[waiting]
    assert started >= long_ended  # it did wait for a thread, longer than its own timeout


async def test_a_timed_out_sync_handler_keeps_its_lease_until_its_thread_returns(
    svc: JobService,
) -> None:
    """Its thread runs well past its timeout plus the 1 s lease: nobody takes the job over."""
    runs = Runs()
    svc.register_handler("sleepy", runs.handler)
    await svc.start_workers(2)
    job_id = await svc.submit_job("sleepy", args=(3.0, "overruns"), timeout=0.2, max_retries=0)
    result = await svc.wait_for_result(job_id, timeout=15)
    assert (result.status, result.attempts) == (JobStatus.DEAD_LETTER, 1)
    assert result.error == "TimeoutError: the job ran past its 0.2s timeout"
    assert len(runs.spans[job_id]) == 1
