"""Progress: numbers are checked when reported, and a record holding junk still reads back."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from streamjobs import JobDefinition, JobProgress, JobService, JobStatus

pytestmark = pytest.mark.anyio


async def test_a_handler_reporting_non_numeric_progress_is_told_at_once(svc: JobService) -> None:
    async def report(job: JobDefinition, progress: Any) -> str:
        try:
            await progress("a lot", 10, "counting")
        except TypeError as exc:
            await progress(3, 10, "recovered")
            return str(exc)
        return "accepted"

    svc.register_handler("report", report)
    await svc.start_workers(1)
    job_id = await svc.submit_job("report")
    result = await svc.wait_for_result(job_id, timeout=10)
    assert result.status is JobStatus.COMPLETED
    assert result.result == "progress current must be a finite number or None, not 'a lot'"
    assert await svc.get_job_progress(job_id) == JobProgress(3, 10, "recovered")


async def test_a_plain_def_handler_is_told_of_infinite_progress(svc: JobService) -> None:
    def report(job: JobDefinition, progress: Any) -> str:
        try:
            progress(1, float("inf"))
        except TypeError as exc:
            return str(exc)
        return "accepted"

    svc.register_handler("report", report)
    await svc.start_workers(1)
    result = await svc.wait_for_result(await svc.submit_job("report"), timeout=10)
    assert result.result == "progress total must be a finite number or None, not inf"


async def test_progress_a_record_holds_as_junk_reads_back_without_raising(
    svc: JobService, raw: redis.Redis
) -> None:
    job_id = await svc.submit_job("echo")
    raw.hset(svc.queue.keys.job(job_id), mapping={
        "progress_current": "lots", "progress_total": "10", "progress_message": "hm",
        "progress_at": "1",
    })  # fmt: skip
    assert await svc.get_job_progress(job_id) == JobProgress(None, 10, "hm")
