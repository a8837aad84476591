"""The user guide's APScheduler integration: a cron trigger submits a job every night at 2:00.

    pip install apscheduler
    REDIS_URL=redis://localhost:6379/0 python examples/apscheduler_integration.py

The scheduler only submits; the job runs on whatever workers serve the queue, so a missed or
doubled tick costs nothing more than the job itself. `submit_daily_backup` passes a `job_id`
made of the date: two schedulers (say, two replicas of the app) submitting the same night's
backup enqueue it once.
"""

from __future__ import annotations

import asyncio
import os
from datetime import date
from typing import TYPE_CHECKING

from streamjobs import JobPriority, JobService

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler


async def submit_daily_backup(job_service: JobService, day: date | None = None) -> str:
    """Queue the backup of `day` (today by default), once per day however often called."""
    day = day or date.today()
    return await job_service.submit_job(
        "process_backup",
        args=(day,),  # a date travels as "YYYY-MM-DD"
        priority=JobPriority.NORMAL,
        job_id=f"backup-{day.isoformat()}",
    )


def build_scheduler(job_service: JobService) -> AsyncIOScheduler:
    """An AsyncIOScheduler with the guide's nightly trigger; start it inside a running loop."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    scheduler = AsyncIOScheduler()
    scheduler.add_job(
        submit_daily_backup, trigger="cron", hour=2, minute=0, args=(job_service,),
        id="daily-backup", replace_existing=True,
    )  # fmt: skip
    return scheduler


async def main() -> None:
    job_service = JobService(os.environ.get("REDIS_URL"))
    await job_service.initialize()
    scheduler = build_scheduler(job_service)
    scheduler.start()
    print("next backup at", scheduler.get_job("daily-backup").next_run_time)
    try:
        await asyncio.Event().wait()  # serve until interrupted
    finally:
        scheduler.shutdown(wait=False)
        await job_service.close()


if __name__ == "__main__":
    asyncio.run(main())
