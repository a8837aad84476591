"""The user guide's nightly backup, without APScheduler: `svc.schedule` runs it at 2:00.

    REDIS_URL=redis://localhost:6379/0 python examples/scheduled_backup.py

The twin of apscheduler_integration.py. There, one scheduler process submits the job and
every replica of the app that runs one submits it too (a job id made of the date keeps that
to one run). Here the schedule lives in Redis and every worker pool of the queue fires it,
none special: each tick runs once however many pools run and whatever their clocks say, and
a night missed while no pool ran is run once when one comes back (misfire="coalesce").
Calling `schedule()` at every start is safe: it updates the schedule and keeps its next tick.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import anyio

from streamjobs import JobDefinition, JobPriority, JobService, ScheduleInfo


async def process_backup(job: JobDefinition, progress_callback: Any) -> str:
    """The backup itself; a scheduled run's job id is sched:daily-backup:<tick ms>."""
    await progress_callback(1, 1, "backed up")
    return f"backup done ({job.id})"


async def schedule_daily_backup(job_service: JobService, tz: str = "UTC") -> ScheduleInfo:
    """Run `process_backup` every night at 2:00 in `tz`; returns the stored schedule."""
    return await job_service.schedule(
        "daily-backup", "process_backup", cron="0 2 * * *", tz=tz,
        priority=JobPriority.NORMAL, misfire="coalesce",
    )  # fmt: skip


async def main() -> None:
    job_service = JobService(os.environ.get("REDIS_URL"))
    job_service.register_handler("process_backup", process_backup)
    async with job_service:
        info = await schedule_daily_backup(job_service)
        print(
            f"{info.name}: {info.description}; next at {info.next_fire_times[0]:%Y-%m-%d %H:%M} UTC"
        )
        async with anyio.create_task_group() as tg:
            await tg.start(job_service.run_workers)  # the pool fires the schedule
            await anyio.sleep_forever()  # serve until interrupted


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main)
